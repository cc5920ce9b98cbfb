"""probe errors: the error breakdown of Karpathy, Johnson & Fei-Fei (2015) for one model."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from probe.errors import ProbeError

NAME = "errors"
HELP = "break a model's errors down by the oracle that would fix them (Karpathy, Johnson & Fei-Fei 2015)"
DESCRIPTION = """The error analysis of Karpathy, Johnson & Fei-Fei (2015), "Visualizing and
Understanding Recurrent Networks" (arXiv 1506.02078), section "Error analysis:
breaking down the failure cases", with the paper's classes and thresholds.

An error is a character the model gives probability < 0.5 (a byte model: the
product of its bytes' probabilities). Oracles remove errors in the paper's
order; each error counts in the first class that removes it:

  n-gram k-gram       (k = 1..9, the paper's orders) an order-k modified Kneser-Ney
                      model fitted on the model's training split gives p >= 0.5
                      (byte models: orders count bytes)
  memory n            (n = 100, 500, 1000, 5000, the paper's) the character is in a
                      word, not its first character, and the whole word occurs as a
                      substring of the n characters before the word
  word seen <= t x    (t = 0..5, the paper's) the character is in a word seen at
                      most t times in the training split
  word model          the character follows a space, a newline or a quote (' ", or
                      &quot;, the escape XML text such as the wiki dump uses)
  punctuation         the character is punctuation (Unicode category P)
  boost b             (b = 0.1, 0.2, 0.3, 0.4; our steps) p >= 0.5 - b: adding b
                      to the character's probability would reach 0.5
  remaining           p < 0.1, none of the above (what a boost of 0.5 removes)

A word is a maximal run of Unicode word characters (letters, digits, _).
Text: TEXT_FILE, or the checkpoint's own --part split (default val).
--out FOLDER writes errors.csv, errors.json and errors.html (a bar chart).

examples:
  probe errors trained_models/shakespeare
  probe errors trained_models/wiki --out analyses/wiki/errors --json -
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="run folder (uses best/) or checkpoint folder")
    p.add_argument("text_file", nargs="?", help="text to analyse (default: the checkpoint's --part split)")
    p.add_argument("--part", choices=("train", "val", "test"), default="val", help="split (default val)")
    p.add_argument("--out", "-o", metavar="FOLDER", help="write errors.csv, errors.json and the figure")
    p.add_argument("--json", metavar="PATH", help="write the breakdown as JSON (- for stdout)")
    p.add_argument("--png", action="store_true", help="also write the figure as .png (needs Chromium)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")


def run(args: argparse.Namespace) -> int:
    from probe.cli.commands.compare import check_json, check_out, write_json_atomic
    from probe.files import atomic_folder

    out = check_out(args.out, args.overwrite)
    json_path = check_json(args.json)
    text = None
    if args.text_file:
        text = Path(args.text_file)
        if not text.is_file():
            raise ProbeError(f"no such text file: {args.text_file}")
    from probe.analysis.error_classes import breakdown, group_table

    b = breakdown(args.checkpoint, text, part=args.part)
    print(f"checkpoint {b.checkpoint}\ntext: {b.text}; {b.n_chars:,} characters predicted, "
          f"{b.n_errors:,} errors (p < 0.5): {b.error_rate:.1%}\n")
    t = b.table.drop(columns="definition")
    print(t.to_string(index=False, formatters={"share": "{:.1%}".format, "cumulative_share": "{:.1%}".format}))
    g = group_table(b).drop(columns="definition")
    print("\nby group:\n" + g.to_string(index=False, formatters={"share": "{:.1%}".format}))
    result = b.to_dict()
    if out is not None:
        from probe.figures.delta_plots import error_breakdown_figure
        from probe.figures.export import write_figures

        with atomic_folder(out) as tmp:
            b.table.to_csv(tmp / "errors.csv", index=False)
            write_json_atomic(tmp / "errors.json", result)
            fig = error_breakdown_figure(b.table, title=f"errors of {b.checkpoint} ({b.n_errors:,}, "
                                                        f"{b.error_rate:.1%} of characters) by oracle")
            write_figures([(fig, tmp / "errors.html")] + ([(fig, tmp / "errors.png")] if args.png else []))
        print(f"\nwrote {out}/")
    if args.json == "-":
        print(json.dumps(result, indent=1, ensure_ascii=False, default=float))
    elif json_path is not None:
        write_json_atomic(json_path, result)
        print(f"wrote {json_path}")
    return 0
