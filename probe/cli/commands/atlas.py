"""probe atlas: every unit's best explanation from a generated library of concepts, held out, with chance."""
from __future__ import annotations

import argparse

from probe.cli.commands._sae_args import add_sae_argument
from probe.errors import ProbeError
from probe.cli.json_out import emit_json

NAME = "atlas"
HELP = "explain every unit by its best concept from a generated library (held out, family-wise chance)"
DESCRIPTION = """Explain every recorded unit by its best candidate concept.

The candidates are generated from the recorded text: the built-in concepts, character
classes, the current / next / previous character, positions in the word, line and
sentence, inside each bracket, quote and markup pair, frequent n-gram contexts, and for
byte models the position inside a UTF-8 character. Each unit's candidates are ranked on
the first part of the text (--select-frac) and the best few scored on the rest (held
out): AUC for binary concepts, |Pearson r| for the others. A unit is explained when its
family-wise p-value (max statistic over all units x candidates, block-permuted labels)
is at most --alpha.

Writes atlas.csv, atlas.json, contexts.json and index.html (an offline page: sortable,
filterable, each unit's top contexts as a heatmap, a link to the dashboard on it) to
--out (default: RECORDING/atlas, which `probe neuron` and the dashboard read).

examples:
  probe atlas recordings/wiki-val
  probe atlas recordings/wiki-val --kinds c --layers 2 --out /tmp/atlas-L2c
  probe atlas recordings/wiki-val --ablate 10 --checkpoint trained_models/wiki
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="a recording folder (from `probe record`)")
    p.add_argument("--kinds", default=None, help="kinds to explain, e.g. h,c (default: all recorded)")
    p.add_argument("--layers", default=None, help="layers to explain, e.g. 0,2 (default: all)")
    p.add_argument("--out", default=None, help="output folder (default: RECORDING/atlas)")
    p.add_argument("--top", type=int, default=20, help="best units to print (default 20)")
    p.add_argument("--select-frac", type=float, default=0.5, help="fraction of rows used to rank (default 0.5)")
    p.add_argument("--n-perm", type=int, default=100, help="permutations for the chance level (default 100)")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise level for 'explained' (default 0.05)")
    p.add_argument("--contexts", dest="n_contexts", type=int, default=5, help="top contexts per unit (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations (default 0)")
    p.add_argument("--ablate", type=int, default=0, metavar="N",
                   help="also ablate the N best explained h/c units inside their concept (default 0: none)")
    p.add_argument("--checkpoint", help="the recorded model, for --ablate (default: the one named in the recording)")
    p.add_argument("--json", metavar="FILE", help="also write the summary and every unit as JSON (- for stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_sae_argument(p, "units explained (default --out: RECORDING/atlas-SAE_NAME)")


def parse_list(s: str | None, cast=str) -> list | None:
    if s is None:
        return None
    try:
        return [cast(v.strip()) for v in s.split(",") if v.strip()]
    except ValueError:
        raise ProbeError(f"bad list {s!r}: expected comma-separated values, e.g. 0,2") from None


def open_source(args: argparse.Namespace):
    """The recording the atlas describes (the one place that opens it: --sae can add features here)."""
    from probe.cli.commands._sae_args import open_source as open_units_or_features
    return open_units_or_features(args.recording, args)


def run(args: argparse.Namespace) -> int:
    from probe.analysis.atlas import add_ablation, build_atlas, default_folder
    from probe.checks import check_at_least
    check_at_least(top=(args.top, 0), ablate=(args.ablate, 0))
    rec = open_source(args)
    atlas = build_atlas(rec, kinds=parse_list(args.kinds), layers=parse_list(args.layers, int),
                        select_frac=args.select_frac, n_perm=args.n_perm, alpha=args.alpha,
                        n_contexts=args.n_contexts, seed=args.seed, progress=not args.quiet and args.json != "-")
    if args.ablate:
        atlas = add_ablation(atlas, rec, args.ablate, args.checkpoint, seed=args.seed)
    out = atlas.save(args.out or default_folder(rec))
    if args.json and emit_json(args.json, atlas.to_dict()):
        return 0
    print(format_summary(atlas, args.top))
    print(f"\nwritten: {out}/index.html (open it in a browser), atlas.csv, atlas.json")
    return 0


def format_summary(atlas, top: int) -> str:
    """Coverage per layer and kind, the threshold, and the best `top` units, as text."""
    m = atlas.meta
    t = atlas.table
    n_exp = int(t.explained.sum())
    lines = [f"atlas of {len(t):,} units of {m['recording']} against {m['n_candidates']} candidate concepts "
             f"({m['n_rows']:,} rows; ranked on rows {m['select_rows'][0]}:{m['select_rows'][1]}, "
             f"scored on {m['report_rows'][0]}:{m['report_rows'][1]}; {m['seconds']:.0f} s)",
             f"explained: family-wise p <= {m['alpha']} over all units x candidates ({m['n_perm']} block "
             f"permutations; studentised max-T threshold t > {m['threshold_t']:.2f}); "
             f"strongly: explained with AUC >= {m['strong_auc']:.2f} or |r| >= {m['strong_r']:.2f}",
             f"coverage: {n_exp:,} of {len(t):,} units explained ({100 * n_exp / max(1, len(t)):.1f}%), "
             f"{int(atlas.coverage.n_strong.sum()):,} strongly"]
    for c in atlas.coverage.itertuples():
        lines.append(f"  L{c.layer}.{c.kind}: {c.n_explained:>5} / {c.n_units:<5} {100 * c.fraction:5.1f}%   "
                     f"strongly {c.n_strong:>5} {100 * c.fraction_strong:5.1f}%")
    if top:
        lines.append(f"\nbest {min(top, len(t))} units (held-out score, chance, family-wise p):")
        abl = "abl_delta" in t.columns
        for r in t.head(top).itertuples():
            sign = "" if r.sign > 0 else " (-)"
            line = (f"  {r.unit:<12} {str(r.concept) + sign:<24} {r.metric:>3} {r.score:.3f}  chance {r.chance:.3f}"
                    f"  p {r.p_value:.3f}  next: {r.second_concept}")
            if abl and r.abl_delta == r.abl_delta:
                line += f"  ablation {r.abl_delta:+.3f} bits ({r.abl_where}, p {r.abl_p:.2f})"
            lines.append(line)
    return "\n".join(lines)
