"""probe sae-compare: for each concept, the best unit of a site beside the best feature of its SAE."""
from __future__ import annotations

import argparse
import html
import json

from probe.cli.commands._sae_args import add_sae_argument
from probe.errors import ProbeError
from probe.files import write_atomic_text
from probe.cli.json_out import emit_json

NAME = "sae-compare"
HELP = "for each concept, the best unit of a site beside the best feature of its sparse autoencoder"
DESCRIPTION = """Are the features of a sparse autoencoder better detectors of the built-in concepts
than the units of the site it was trained on? For each concept (default: every
built-in one present in the text) find-neurons is run twice with the same split
(--select-frac), the same permutations (--n-perm, --seed) and the same statistic
(held-out AUC or |Pearson r|): once over the site's units, once over the SAE's
features. Each side's chance level is the best score of its own family under the
permuted concept (a bigger dictionary has a higher chance level); margin = score
- chance; the winner is the side with the larger margin.

Then the features no concept explains (no family-wise p <= --alpha for any
concept), the most variable first, with their top contexts.

examples:
  probe sae-compare recordings/wiki-val --sae saes/wiki-L2h
  probe sae-compare recordings/wiki-val --sae saes/wiki-L2h --concepts url,wiki-link --json out.json
  probe sae-compare recordings/wiki-val --sae saes/wiki-L2h --out analyses/sae-compare-wiki-L2h

--out FOLDER writes concepts.csv, unexplained.csv, features.csv (every feature's
frequency, variance, closest concept), sae-compare.json and sae-compare.html: one
offline page with the units-vs-features figure and a text heatmap of each
unexplained feature (plotly.js inlined once).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="a recording folder holding the SAE's site")
    add_sae_argument(p, "units compared with the site's")
    p.add_argument("--concepts", default=None,
                   help="comma-separated concept names or regexes (default: every built-in concept)")
    p.add_argument("--select-frac", type=float, default=0.5, help="fraction of rows used to rank (default 0.5)")
    p.add_argument("--n-perm", type=int, default=100, help="permutations for the chance level (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations (default 0)")
    p.add_argument("--alpha", type=float, default=0.05, help="a feature is explained at p <= ALPHA (default 0.05)")
    p.add_argument("--unexplained", type=int, default=10, metavar="N",
                   help="unexplained features to list (default 10)")
    p.add_argument("--contexts", type=int, default=3, metavar="N", help="top contexts per feature (default 3)")
    p.add_argument("--json", metavar="FILE", help="write the tables as JSON (- for stdout)")
    p.add_argument("--csv", metavar="FILE", help="write the per-concept table as CSV")
    p.add_argument("--out", metavar="FOLDER", help="write the tables, a figure and heatmaps into this new folder")


def _show(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def format_comparison(res) -> str:
    lines = [f"{'concept':<18} {'metric':>7}  {'best unit':<12} {'score':>6} {'chance':>6} {'p':>6}  "
             f"{'best feature':<14} {'score':>6} {'chance':>6} {'p':>6}  winner"]
    for r in res.table.itertuples():
        lines.append(f"{r.concept[:18]:<18} {r.metric:>7}  {r.best_unit:<12} {r.unit_score:>6.3f} "
                     f"{r.unit_chance:>6.3f} {r.unit_p:>6.3f}  {r.best_feature:<14} {r.feature_score:>6.3f} {r.feature_chance:>6.3f} "
                     f"{r.feature_p:>6.3f}  {r.winner}")
    return "\n".join(lines)


def save_folder(res, frec, folder: str) -> None:
    """The tables, the units-vs-features figure and the unexplained features' heatmaps, written atomically."""
    from probe.figures.export import figure_html
    from probe.figures.sae_plots import feature_heatmaps, units_vs_features_figure
    from probe.files import atomic_folder
    with atomic_folder(folder) as tmp:
        res.table.to_csv(tmp / "concepts.csv", index=False)
        res.unexplained.to_csv(tmp / "unexplained.csv", index=False)
        res.feature_stats.to_csv(tmp / "features.csv", index=False)
        (tmp / "sae-compare.json").write_text(json.dumps(res.to_dict(), indent=1, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
        title = f"best unit of {res.site} vs best feature of the SAE {res.sae}, per concept (held out)"
        figures = [units_vs_features_figure(res.table, title)] + [fig for _, fig in feature_heatmaps(frec, res.unexplained)]
        divs = [figure_html(fig, full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
        page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
                f"<body>\n" + "\n".join(divs) + "\n</body></html>\n")
        (tmp / "sae-compare.html").write_text(page, encoding="utf-8")

def run(args: argparse.Namespace) -> int:
    from probe.analysis.sae_compare import compare_units_features
    from probe.sae.features import open_features

    if not args.sae:
        raise ProbeError("--sae SAE_FOLDER is required: the sparse autoencoder whose features to compare")
    concepts = None
    if args.concepts is not None:
        concepts = [c.strip() for c in args.concepts.split(",") if c.strip()]
        if not concepts:
            raise ProbeError("--concepts names no concept")
    if args.out:
        from pathlib import Path
        out = Path(args.out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ProbeError(f"--out {out} exists and is not an empty folder")
    frec = open_features(args.recording, args.sae)
    res = compare_units_features(frec, concepts, select_frac=args.select_frac, n_perm=args.n_perm, seed=args.seed,
                                 alpha=args.alpha, n_unexplained=args.unexplained, n_contexts=args.contexts)
    if args.out:
        save_folder(res, frec, args.out)
    if args.csv:
        write_atomic_text(args.csv, res.table.to_csv(index=False))
    if args.json and emit_json(args.json, res.to_dict()):
        return 0
    s = res.summary()
    print(f"{s['n_units']} units of {res.site} against the {s['n_features']:,} features of the SAE {res.sae} in "
          f"{frec.path}: ranked on rows {s['select_rows'][0]:,}:{s['select_rows'][1]:,}, scored on held-out rows "
          f"{s['report_rows'][0]:,}:{s['report_rows'][1]:,}, chance = the best of each family under {res.n_perm} "
          f"block permutations")
    print(format_comparison(res))
    print(f"features win {s['features_win']} of {s['concepts']} concepts (by margin over their own chance), units "
          f"{s['units_win']}")
    for name, why in res.skipped.items():
        print(f"skipped {name}: {why}")
    print(f"\n{s['live_features']:,} features active on the text, {s['explained_features']:,} explained by a concept "
          f"(p <= {args.alpha:g}); the most variable of the others:")
    for r in res.unexplained.itertuples():
        print(f"  {r.feature:<14} active on {r.frequency:6.1%} of rows, variance {r.variance:.4g}, closest "
              f"{r.best_concept or '-'} (margin {r.best_margin:+.3f}); closest unit {r.closest_unit} "
              f"(|r| {r.closest_unit_r:.2f})")
        for c in r.top_contexts:
            print(f"      {_show(c)[-90:]}")
    return 0
