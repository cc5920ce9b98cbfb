"""probe export: a lean, shippable copy of a checkpoint (weights only, float16 by default)."""
from __future__ import annotations

import argparse


NAME = "export"
HELP = "copy a checkpoint for shipping: weights only (float16 by default), no optimizer state"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="run folder (uses best/) or checkpoint folder")
    p.add_argument("--out", required=True, help="destination folder (replaced atomically)")
    p.add_argument("--which", choices=["best", "latest"], default="best", help="from a run folder (default best)")
    p.add_argument("--float32", action="store_true", help="keep float32 weights")


def run(args: argparse.Namespace) -> int:
    from probe.model import checkpoint

    dest = checkpoint.export(args.checkpoint, args.out, half=not args.float32, which=args.which)
    ck = checkpoint.load(dest)
    print(f"exported {ck.meta['exported_from']['path']} (step {ck.meta['step']}) to {dest} "
          f"({ck.meta['exported_from']['dtype']})")
    return 0
