"""probe hypothesis: the units that best separate a span of the text from the rows around it (brush to hypothesis)."""
from __future__ import annotations

import argparse

from probe.cli.commands._concept_args import parse_list
from probe.errors import ProbeError

from probe.cli.json_out import emit_json

NAME = "hypothesis"
MAX_SPAN = 500  # = probe.analysis.hypothesis.MAX_SPAN (tests/test_startup.py checks)
HELP = "rank the units that separate a span of the text from its surroundings, and find the pattern elsewhere"
DESCRIPTION = f"""Take a span of rows (a word, a quoted phrase, a line: at most {MAX_SPAN} rows), rank every unit by how
differently it behaves inside the span and in the rows just around it (in standard deviations), then list the
other places where the best units do the same together (the dashboard's Brush tab, as in LSTMVis).

examples:
  probe hypothesis recordings/wiki-val --range 1200:1215
  probe hypothesis recordings/wiki-val --range 1200:1215 --kinds c --layers 1,2 --top 10 --json span.json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="a recording folder (from `probe record`)")
    p.add_argument("--range", dest="rows", required=True, metavar="START:STOP",
                   help=f"the span: rows START to STOP-1 (at most {MAX_SPAN} rows)")
    p.add_argument("--layers", default=None, help="layers to rank, e.g. 0,2 (default: all)")
    p.add_argument("--kinds", default=None, help="unit kinds to rank, e.g. h,c (default: all recorded)")
    p.add_argument("--top", dest="n_units", type=int, default=15, metavar="N", help="units to list (default 15)")
    p.add_argument("--pattern-units", type=int, default=3, metavar="N",
                   help="how many of the top units define the pattern searched elsewhere (default 3; 0: no search)")
    p.add_argument("--matches", dest="max_matches", type=int, default=20, metavar="N",
                   help="places to list (default 20)")
    p.add_argument("--margin", type=int, default=None, metavar="ROWS",
                   help="rows on each side compared with the span (default: the span's length, at least 3)")
    p.add_argument("--json", metavar="FILE", help="write the result as JSON (- for stdout)")


def parse_span(spec: str) -> tuple[int, int]:
    """'START:STOP' -> (start, stop)."""
    parts = spec.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = int(parts[0]), int(parts[1])
        if not 0 <= start < stop:
            raise ValueError
        return start, stop
    except ValueError:
        raise ProbeError(f"--range must be START:STOP with 0 <= START < STOP (e.g. 1200:1215), not {spec!r}") \
            from None


def show(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def run(args: argparse.Namespace) -> int:
    from probe.analysis.hypothesis import brush
    from probe.record.recording import Recording

    start, stop = parse_span(args.rows)
    rec = Recording.open(args.recording)
    res = brush(rec, start, stop, layers=parse_list(args.layers, "layers", int), kinds=parse_list(args.kinds, "kinds"),
                n_units=args.n_units, pattern_units=args.pattern_units, max_matches=args.max_matches,
                margin=args.margin)
    if args.json and emit_json(args.json, res.to_dict()):
        return 0
    print(f"rows {res.start}:{res.stop} of {rec.path.name} \u00ab{show(res.text)}\u00bb, "
          f"against {res.margin} rows on each side")
    print(f"{'unit':<12} {'score':>7} {'sign':>4} {'inside':>9} {'outside':>9} {'separation':>10}")
    for u in res.units.itertuples(index=False):
        print(f"{u.unit:<12} {u.score:>+7.2f} {'on' if u.sign > 0 else 'off':>4} {u.inside:>9.3f} "
              f"{u.outside:>9.3f} {u.separation:>10.3f}")
    print("(score: mean inside minus mean around, in standard deviations; separation > 0: no overlap)")
    if res.pattern_units:
        print(f"\nthe pattern of {', '.join(res.pattern_units)} recurs at {res.n_matches:,} other places"
              + (f"; the first {len(res.matches)}:" if res.matches else ""))
        for m in res.matches:
            print(f"  row {m['start']:>9,}  {show(m['before'])[-30:]:>30}\u00ab{show(m['match'])}\u00bb"
                  f"{show(m['after'])[:30]}")
    return 0
