"""probe heatmap: one unit's activations over a passage, drawn as colored text (the post's figure)."""
from __future__ import annotations

import argparse

from probe.cli.commands._sae_args import add_sae_argument, open_source
from probe.errors import ProbeError

NAME = "heatmap"
HELP = "draw one unit over a passage as colored text (.html, .png, .svg, .pdf)"
DESCRIPTION = """Draw one unit's activation over a passage of the recorded text: each character's
background is colored blue (low) to green (high); with --topk the model's five
most likely next characters are drawn in rows under each character, colored by
probability. Newlines show as ↵, tabs as →, spaces as a faint ·.

examples:
  probe heatmap recordings/wiki-val --unit L1.c.123 --range 0:2000 --out l1c123.png
  probe heatmap recordings/wiki-val --unit L0.f.12 --topk --range 500:900 --out f12.html
  probe heatmap recordings/wiki-val --sae saes/wiki-L2h --unit L2.h.f123 --out f123.html"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="a recording folder (from probe record)")
    p.add_argument("--unit", required=True, help="unit to draw, e.g. L1.c.123 (state) or L0.f.12 (gate), or with "
                                                 "--sae a feature, e.g. L2.h.f123")
    add_sae_argument(p, "units to draw")
    p.add_argument("--range", dest="rows", default="0:2000",
                   help="rows START:STOP to draw (characters; bytes for byte models), default 0:2000")
    p.add_argument("--topk", action="store_true", help="add the model's top-5 next-character guesses")
    p.add_argument("--width", type=int, default=100, help="characters per line before wrapping (default 100)")
    p.add_argument("--title", default=None, help="figure title (default: the unit and the range)")
    p.add_argument("--out", required=True, help="output file: .html (offline, self-contained), .png, .svg or .pdf")


def parse_range(spec: str, n_rows: int) -> tuple[int, int]:
    """'START:STOP' (either may be empty) -> (start, stop); STOP defaults to the end, clipped only if omitted."""
    parts = spec.split(":")
    if len(parts) != 2:
        raise ProbeError(f"--range must look like START:STOP (e.g. 0:2000), not {spec!r}")
    try:
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else n_rows
    except ValueError:
        raise ProbeError(f"--range must hold integers, like 0:2000, not {spec!r}") from None
    return start, stop


def run(args: argparse.Namespace) -> int:
    from probe.figures.export import find_chrome, format_of, write_figure
    from probe.figures import text_heatmap

    fmt = format_of(args.out)  # bad extension: fail before any work
    if args.width < 1:
        raise ProbeError(f"--width must be at least 1, not {args.width}")
    if fmt != "html":
        find_chrome()
    rec = open_source(args.recording, args)
    if args.topk and not rec.has("topk_ids"):
        raise ProbeError(f"{args.recording} holds no top-k predictions (recorded with --topk 0); drop --topk")
    explicit = args.rows != "0:2000"
    start, stop = parse_range(args.rows, rec.n_rows)
    if not explicit:
        stop = min(stop, rec.n_rows)  # the default range shrinks to a short recording
    title = args.title or f"{rec.check_unit(args.unit)} over rows {start:,}:{stop:,} of {rec.path.name}"
    fig = text_heatmap(rec, args.unit, start, stop, topk=args.topk, width=args.width, title=title)
    path = write_figure(fig, args.out)
    print(f"wrote {path}")
    return 0
