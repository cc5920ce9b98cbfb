"""probe sample: generate text from a checkpoint, streamed as it comes, optionally with units clamped."""
from __future__ import annotations

import argparse
import sys

from probe.errors import ProbeError

NAME = "sample"
HELP = "generate text from a trained model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="run folder (uses best/) or checkpoint folder")
    p.add_argument("--prime", default="", help="text to start from (default: a newline)")
    p.add_argument("--temperature", "-t", type=float, default=1.0, help="softmax temperature (default 1.0)")
    p.add_argument("--length", "-n", type=int, default=500, help="characters to generate (default 500)")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same text (default 0)")
    p.add_argument("--argmax", action="store_true", help="always take the most likely character")
    p.add_argument("--no-prime-echo", action="store_true", help="do not print the prime first")
    p.add_argument("--clamp", dest="holds", action="append", default=[], metavar="UNIT=VALUE",
                   help="hold a unit at a value at every step, e.g. L1.c.7=0.9 (repeatable; h, or an LSTM's c: "
                        "a held c is carried and h follows from it)")


def run(args: argparse.Namespace) -> int:
    from probe.model import checkpoint
    from probe.model.intervene import hold_hooks, parse_hold
    from probe.model.sampling import generate

    if args.length < 0:
        raise ProbeError(f"--length must not be negative, not {args.length}")
    if not args.argmax and not args.temperature > 0:
        raise ProbeError(f"--temperature must be positive, not {args.temperature} (or use --argmax)")
    holds = [parse_hold(h) for h in args.holds]
    ck = checkpoint.load(args.checkpoint)
    hold_hooks(ck.model, holds)  # bad units fail here, before anything is printed
    unknown = ck.vocab.unknown(args.prime)
    if unknown:
        shown = ", ".join(repr(c) for c, _ in unknown.most_common(5))
        print(f"probe sample: note: {sum(unknown.values())} prime characters are not in the model's "
              f"vocabulary ({shown}); they are read as <unk>", file=sys.stderr)
    out = sys.stdout.buffer
    if not args.no_prime_echo:
        out.write(args.prime.encode("utf-8"))
    pending = b""
    for i in generate(ck.model, ck.vocab, args.prime, args.length, temperature=args.temperature,
                      seed=args.seed, argmax=args.argmax, holds=holds):
        pending += ck.vocab.decode_bytes([i])
        try:  # write whole UTF-8 characters only (byte models can emit a partial one)
            pending.decode("utf-8")
            out.write(pending)
            out.flush()
            pending = b""
        except UnicodeDecodeError:
            if len(pending) >= 4:
                out.write(pending.decode("utf-8", errors="replace").encode("utf-8"))
                pending = b""
    out.write(pending.decode("utf-8", errors="replace").encode("utf-8") + b"\n")
    out.flush()
    return 0
