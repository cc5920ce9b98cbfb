"""probe compare: per-character loss of two models (checkpoints or n-grams) on one text, and where each wins."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from probe.errors import ProbeError
from probe.files import atomic_folder, write_atomic_text

NAME = "compare"
HELP = "where one model beats another (or an n-gram): per-character Δloss, concepts, long-range closers"
DESCRIPTION = """Score two models on the same text, character by character, and show where each wins.

A and B are each a checkpoint (run or checkpoint folder) or ngram:N, an order-N
modified Kneser-Ney model fitted on the training split of the checkpoint given
(cached per corpus and order under ~/.cache/probe/ngram, or $PROBE_CACHE/ngram).
Text: TEXT_FILE, or by default the validation split (--part) of the first
checkpoint's corpus. The unit is the UTF-8 character: a byte model's loss for a
character is the sum of its bytes' losses, so byte and char models compare
(models with different vocabularies are refused when one reads characters of
the text as <unk>). The text's first character is not predicted and is left out.

Δ = bits(B) - bits(A) per character: > 0 where A wins. Reported:
  - Δ bits/char overall, inside and outside each built-in concept (or --concept
    NAME[,NAME] / --pattern REGEX), with 95% block-bootstrap intervals (blocks
    of 1,000 characters);
  - the characters, and the contexts (4 characters before + the character),
    where each side wins most (total Δ);
  - the long-range view (the paper's): for matched openers and closers -
    brackets () [] {}, double quotes on a line (" or &quot;), XML tags (the
    closer is the name and > after </), wiki links (the closer is ]]) - the mean
    probability each side gives the closer, by distance to its opener.
--out FOLDER writes the tables (CSV), compare.json and the figures (a Δloss
text heatmap of the 1,500-character window where A wins most, or --range, and
the long-range curves) as .html (and .png with --png).

examples:
  probe compare trained_models/wiki ngram:20
  probe compare trained_models/shakespeare ngram:7 --out cmp/ --json cmp.json
  probe compare runs/wiki-dropout0 runs/wiki-dropout02 --concept url,wiki-link
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="a checkpoint or ngram:N")
    p.add_argument("b", metavar="B", help="a checkpoint or ngram:N")
    p.add_argument("text_file", nargs="?", help="text to compare on (default: the first checkpoint's --part split)")
    p.add_argument("--part", choices=("train", "val", "test"), default="val",
                   help="split of the first checkpoint's corpus when no TEXT_FILE is given (default val)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--concept", "-c", metavar="NAME[,NAME]", help="built-in concepts to split by (default: "
                   "url, wiki-link, quote, xml-tag, comment, bracket-depth, indent)")
    g.add_argument("--pattern", "-p", metavar="REGEX", help="split by inside/outside matches of REGEX")
    p.add_argument("--flags", default="", help="regex flags for --pattern: i, m, s, x, a")
    p.add_argument("--out", "-o", metavar="FOLDER", help="write tables, compare.json and figures into FOLDER")
    p.add_argument("--json", metavar="PATH", help="write every table as JSON (- for stdout)")
    p.add_argument("--range", dest="heat_range", metavar="A:B", help="characters A..B-1 for the Δloss heatmap")
    p.add_argument("--png", action="store_true", help="also write the figures as .png (needs Chromium)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--top", type=int, default=10, help="rows of each ranking to print (default 10)")


def _concepts(args):
    from probe.analysis import concepts as cm

    if args.pattern is not None:
        if args.pattern == "":
            raise ProbeError("--pattern is empty")
        return [cm.from_regex(args.pattern, args.flags)]
    if args.flags:
        raise ProbeError("--flags goes with --pattern")
    if args.concept is not None:
        names = [c.strip() for c in args.concept.split(",") if c.strip()]
        if not names:
            raise ProbeError("--concept is empty")
        out = [cm.builtin(n) for n in names]
        for c in out:
            if c.label_type == "continuous":
                raise ProbeError(f"concept {c.name} is continuous: it has no inside and outside to compare")
        return out
    return None


def _range(text: str | None, n: int):
    if text is None:
        return None
    from probe.cli.commands.record import parse_range
    a, b = parse_range(text)
    a, b = a or 0, n if b is None else b
    if not 0 <= a < b <= n:
        raise ProbeError(f"--range {text} is not inside the text ({n:,} characters)")
    return a, b


def write_json_atomic(path: Path, obj) -> None:
    """`obj` as JSON at `path`, whole or not at all."""
    write_atomic_text(path, json.dumps(obj, indent=1, ensure_ascii=False, default=float))


def check_out(out: str | None, overwrite: bool) -> Path | None:
    if out is None:
        return None
    p = Path(out)
    if p.exists() and not overwrite:
        raise ProbeError(f"{p} already exists; pass --overwrite to replace it")
    if not p.parent.resolve().is_dir():
        raise ProbeError(f"cannot write {p}: folder {p.parent} does not exist")
    return p


def check_json(path: str | None) -> Path | None:
    if path is None or path == "-":
        return None
    p = Path(path)
    if not p.parent.resolve().is_dir():
        raise ProbeError(f"cannot write {p}: folder {p.parent} does not exist")
    return p


def _fmt(df, cols, top):
    return df.head(top)[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")


def run(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise ProbeError(f"--top must be at least 0, not {args.top}")
    out = check_out(args.out, args.overwrite)
    json_path = check_json(args.json)
    text = None
    if args.text_file:
        text = Path(args.text_file)
        if not text.is_file():
            raise ProbeError(f"no such text file: {args.text_file}")
    concepts = _concepts(args)
    from probe.analysis.compare import compare

    cmp = compare(args.a, args.b, text, part=args.part, concepts=concepts)
    heat = _range(args.heat_range, len(cmp.text.chars)) or cmp.best_window()
    s = cmp.summary
    print(f"A = {cmp.a}\nB = {cmp.b}\ntext: {cmp.text.source}; {cmp.note}")
    print("Δ = bits(B) - bits(A) per character: > 0 where A wins; 95% block-bootstrap interval\n")
    print(s.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    cols = ["char", "n", "delta_bits_total", "delta_bits_mean"]
    show = cmp.by_char.assign(char=cmp.by_char["char"].map(repr))
    print(f"\ncharacters where A wins most (total Δ bits):\n{_fmt(show, cols, args.top)}")
    print(f"\ncharacters where B wins most:\n{_fmt(show.iloc[::-1], cols, args.top)}")
    ctx = cmp.contexts.assign(context=cmp.contexts.context.map(repr), char=cmp.contexts["char"].map(repr))
    ccols = ["context", "char", "n", "delta_bits_total", "delta_bits_mean"]
    print(f"\ncontexts where A wins most:\n{_fmt(ctx, ccols, args.top)}")
    print(f"\ncontexts where B wins most:\n{_fmt(ctx.iloc[::-1], ccols, args.top)}")
    lr = cmp.long_range
    if len(lr):
        print("\nprobability of the closer by distance to its opener (all kinds; per kind in long_range.csv):")
        print(lr[lr.kind == "all"].drop(columns="kind").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    else:
        print("\nno matched openers and closers in the text: no long-range view")
    result = cmp.to_dict()
    if out is not None:
        _write_folder(cmp, out, heat, args.png, result)
        print(f"\nwrote {out}/")
    if args.json == "-":
        print(json.dumps(result, indent=1, ensure_ascii=False, default=float))
    elif json_path is not None:
        write_json_atomic(json_path, result)
        print(f"wrote {json_path}")
    return 0


def _write_folder(cmp, out: Path, heat, png: bool, result: dict) -> None:
    from probe.figures.delta_plots import delta_heatmap, long_range_figure
    from probe.figures.export import write_figures

    with atomic_folder(out) as tmp:
        cmp.summary.to_csv(tmp / "summary.csv", index=False)
        cmp.by_char.to_csv(tmp / "by_char.csv", index=False)
        cmp.contexts.to_csv(tmp / "contexts.csv", index=False)
        cmp.long_range.to_csv(tmp / "long_range.csv", index=False)
        write_json_atomic(tmp / "compare.json", result)
        figs = {"delta_heatmap": delta_heatmap(cmp.text.chars, cmp.delta, *heat, a="A", b="B")}
        if len(cmp.long_range):
            figs["long_range"] = long_range_figure(cmp.long_range, a=f"A {cmp.a}", b=f"B {cmp.b}")
        paths = []
        for name, fig in figs.items():
            paths.append((fig, tmp / f"{name}.html"))
            if png:
                paths.append((fig, tmp / f"{name}.png"))
        write_figures(paths)
