"""probe saturation: fraction of steps each gate unit spends left (< 0.1) or right (> 0.9) saturated."""
from __future__ import annotations

import argparse

from probe.files import atomic_write

NAME = "saturation"
HELP = "gate saturation per layer: fractions of steps below 0.1 and above 0.9 (Karpathy et al. 2015)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="a recording with gates")
    p.add_argument("--low", type=float, default=0.1, help="left-saturation threshold (default 0.1)")
    p.add_argument("--high", type=float, default=0.9, help="right-saturation threshold (default 0.9)")
    p.add_argument("--csv", metavar="FILE", help="write one row per gate unit as CSV")


def run(args: argparse.Namespace) -> int:
    from probe.record.recording import Recording
    from probe.analysis.saturation import gate_saturation

    rec = Recording.open(args.recording)
    df = gate_saturation(rec, low=args.low, high=args.high)
    if args.csv:
        with atomic_write(args.csv) as f:
            df.to_csv(f, index=False)
    print(f"gate saturation in {rec.path} ({rec.n_rows:,} steps): mean fraction of steps per unit, and units "
          f"saturated more than half the time (tanh gates g/n mapped to [0, 1])")
    print(f"{'layer':>5} {'gate':>4} {'left':>7} {'right':>7} {'units >50% left':>16} {'units >50% right':>17}")
    for (layer, gate), g in df.groupby(["layer", "gate"], sort=False):
        print(f"{layer:>5} {gate:>4} {g.left.mean():>7.3f} {g.right.mean():>7.3f} {int((g.left > 0.5).sum()):>16} "
              f"{int((g.right > 0.5).sum()):>17}")
    return 0
