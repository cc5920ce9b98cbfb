"""probe evaluate: loss of a checkpoint on a whole split of its own corpus."""
from __future__ import annotations

import argparse
import json

from probe.errors import ProbeError

NAME = "evaluate"
PARTS = ("train", "val", "test")  # = probe.train.evaluate.PARTS (tests/test_startup.py checks)
HELP = "loss in nats and bits per character of a model on its test (or val/train) split"
DESCRIPTION = """Measure a checkpoint on a split of the corpus it was trained on (read from the
checkpoint, checked against its sha256). The default is exact: one stream, state
carried over the whole split. --streams N is faster and slightly pessimistic
(each stream starts from a zero state). Byte-level models also report bits per
UTF-8 character, the unit in which compressors and char models compare.

examples:
  probe evaluate runs/wiki
  probe evaluate trained_models/shakespeare --part val --json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="run folder (uses best/) or checkpoint folder")
    p.add_argument("--part", default="test", choices=PARTS, help="which split (default test)")
    p.add_argument("--streams", type=int, default=1, help="parallel streams (default 1: exact)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on CPUs with bf16)")
    p.add_argument("--max-chars", type=int, default=None, help="only the split's first N symbols (a quick look)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from probe.train.evaluate import evaluate_split

    if args.streams < 1:
        raise ProbeError(f"--streams must be at least 1, not {args.streams}")
    r = evaluate_split(args.checkpoint, args.part, streams=args.streams, bf16=args.bf16, max_chars=args.max_chars)
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    lines = [
        f"checkpoint      {r['checkpoint']}",
        f"split           {r['part']} of {r['corpus']} ({r['n_symbols']:,} {r['vocab']} symbols predicted"
        + (", truncated by --max-chars" if r["truncated"] else "") + ")",
        f"loss            {r['loss_nats']:.4f} nats/{r['vocab']}",
        f"{'bits/' + r['vocab']:<16}{r['bits_per_symbol']:.4f}",
    ]
    if r["vocab"] == "byte":
        lines.append(f"bits/char       {r['bits_per_char']:.4f}  ({r['n_chars']:,} UTF-8 characters)")
    if r["n_unk"]:
        lines.append(f"note            {r['n_unk']:,} symbols are <unk> (characters outside the vocabulary)")
    mode = "exact, one stream" if r["streams"] == 1 else f"{r['streams']} streams, each from a zero state"
    lines.append(f"mode            {mode}{', bf16' if r['bf16'] else ''}; {r['seconds']:.1f} s")
    print("\n".join(lines))
    return 0
