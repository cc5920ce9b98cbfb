"""probe find-neurons: rank every unit against a concept, with held-out scores and a chance level."""
from __future__ import annotations

import argparse
import math
import sys

from probe.cli.commands._concept_args import add_concept_arguments, concept_from_args, parse_list
from probe.cli.commands._sae_args import add_sae_argument, open_source
from probe.checks import check_int
from probe.errors import ProbeError
from probe.files import atomic_write
from probe.cli.json_out import emit_json

NAME = "find-neurons"
HELP = "find units that track a concept (regex or built-in), with honest statistics"
DESCRIPTION = """Score every recorded unit against a concept.

Units are ranked on the first part of the text (--select-frac) and their scores
are reported on the rest (held out). Binary concepts: ROC AUC, direction-free
(max(AUC, 1-AUC), the sign says which way); continuous ones: |Pearson r|.
The chance level is the best held-out score among all units when the concept
is circularly shifted and block-permuted; p-values are corrected for the
number of units (family-wise, max statistic) and never 0.

examples:
  probe find-neurons recordings/wiki-val --pattern '\\[\\[.*?\\]\\]'
  probe find-neurons recordings/wiki-val --concept column --kinds c --layers 0
  probe find-neurons recordings/wiki-val --concept wiki-link --ablate 5
  probe find-neurons recordings/wiki-val --concept wiki-link --sae saes/wiki-L2h

--sae SAE_FOLDER: search the features of that sparse autoencoder (L2.h.f123...)
instead of the units, computed from the recorded states by its encoder, with
the same split, statistics and chance level.

--ablate N: the top N units (h and c; gates cannot be held) are also held at
their mean over the first --ablate-chars characters of the recording, and the
change of loss inside and outside the concept (bits/char, 95% block-bootstrap
interval) and the rank and p-value among --random K random units of the same
layer and kind join the table (columns abl_*): "tracks it" beside "is used for
it". Needs the model: --checkpoint, or the one named in the recording.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="a recording folder (from `probe record`)")
    add_concept_arguments(p)
    add_sae_argument(p, "units searched")
    p.add_argument("--kinds", default=None, help="state kinds to search, e.g. h,c or f,i (default: all recorded)")
    p.add_argument("--layers", default=None, help="layers to search, e.g. 0,2 (default: all)")
    p.add_argument("--top", type=int, default=20, help="rows of the table to print (default 20)")
    p.add_argument("--select-frac", type=float, default=0.5, help="fraction of rows used to rank units (default 0.5)")
    p.add_argument("--n-perm", type=int, default=100, help="permutations for the chance level (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations (default 0)")
    p.add_argument("--json", metavar="FILE", help="write all units and the summary as JSON (- for stdout)")
    p.add_argument("--csv", metavar="FILE", help="write the table of all units as CSV")
    p.add_argument("--ablate", type=int, default=0, metavar="N",
                   help="also ablate the top N units (binary concepts; default 0: no ablation)")
    p.add_argument("--checkpoint", help="the recorded model, for --ablate (default: the one named in the recording)")
    p.add_argument("--ablate-chars", type=int, default=20_000, metavar="N",
                   help="characters of the recording to ablate on (default 20000)")
    p.add_argument("--random", dest="n_random", type=int, default=20, metavar="K",
                   help="random units for the ablation's null (default 20)")


def _fmt_p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def format_table(res, top: int, ablated: int = 0) -> str:
    t = res.table.head(top)
    binary = res.metric == "auc"
    score_name = "AUC" if binary else "|r|"
    lines = [f"{'rank':>4}  {'unit':<12} {score_name + ' held-out':>13} {'sign':>4} {'select':>7} {'p':>8}  "
             + (f"{'mean in':>9} {'mean out':>9}  {'d':>6}" if binary else f"{'spearman':>9} {'MI bits':>8}")
             + (f"  {'Δloss in [95% CI]':>26} {'Δ out':>7}  {'abl p':>6}" if ablated else "")]
    for r in t.itertuples():
        star = "*" if r.p_value <= 0.05 else " "
        row = (f"{r.rank:>4}  {r.unit:<12} {r.score:>13.3f} {'+' if r.sign > 0 else '-':>4} {r.select_score:>7.3f} "
               f"{_fmt_p(r.p_value):>7}{star}  ")
        row += (f"{r.mean_in:>9.3f} {r.mean_out:>9.3f}  {r.cohen_d:>6.2f}" if binary
                else f"{r.spearman:>9.3f} {r.mi:>8.3f}")
        if "abl_in" in t and not math.isnan(r.abl_in):
            row += f"  {r.abl_in:+.4f} [{r.abl_in_lo:+.4f}, {r.abl_in_hi:+.4f}] {r.abl_out:+.4f}  {_fmt_p(r.abl_p):>6}"
        elif "abl_in" in t and r.rank <= ablated:
            row += "  (a gate: cannot be held)"
        lines.append(row)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from probe.analysis.neurons import find_neurons
    check_int("top", args.top, min=1)
    check_int("ablate", args.ablate, min=0)
    if args.ablate and args.sae:
        raise ProbeError("--ablate holds units; to remove features use "
                         "`probe ablate CHECKPOINT --sae SAE --unit L2.h.f123`")
    concept = concept_from_args(args)
    rec = open_source(args.recording, args)
    ck = None
    if args.ablate:
        from probe.record.source import recording_checkpoint
        check_int("ablate_chars", args.ablate_chars, min=2)
        check_int("n_random", args.n_random, min=0)
        if concept.label_type != "binary":
            raise ProbeError(f"--ablate needs a binary concept (inside and outside); {concept.name} is "
                             f"{concept.label_type}")
        ck = recording_checkpoint(rec, args.checkpoint, param="checkpoint")
    res = find_neurons(rec, concept, kinds=parse_list(args.kinds, "kinds"), layers=parse_list(args.layers, "layers", int),
                       select_frac=args.select_frac, n_perm=args.n_perm, seed=args.seed)
    if args.ablate:
        from probe.analysis.ablate import add_ablation
        res = add_ablation(res, rec, args.ablate, ck, max_chars=args.ablate_chars, n_random=args.n_random,
                           seed=args.seed)
    if args.csv:
        with atomic_write(args.csv) as f:
            res.table.to_csv(f, index=False)
    if args.json and emit_json(args.json, res.to_dict()):
        return 0
    s = res.summary()
    score_name = "AUC" if res.metric == "auc" else "|Pearson r|"
    n_sig = int((res.table.p_value <= 0.05).sum())
    print(f"concept {concept.name} ({concept.label_type}) in {rec.path}: {res.n_units:,} units "
          f"({', '.join(sorted(set(res.table.kind)))}; layers {', '.join(map(str, sorted(set(res.table.layer))))})")
    print(f"ranked on rows {s['select_rows'][0]:,}:{s['select_rows'][1]:,}, scored on held-out rows "
          f"{s['report_rows'][0]:,}:{s['report_rows'][1]:,}")
    print(f"chance level: best {score_name} of any unit under {res.n_perm} block permutations of the concept: "
          f"{res.chance:.3f} on average, {s['chance_95']:.3f} at 95%")
    print(f"{n_sig} unit(s) with family-wise p <= 0.05 (marked *; smallest possible p {1 / (res.n_perm + 1):.3f})\n")
    if args.ablate:
        print(f"ablation of the top {args.ablate}: each held at its mean over the first {args.ablate_chars:,} "
              f"characters; Δloss in bits/char inside and outside {concept.name} (95% block-bootstrap interval), "
              f"p among {args.n_random} random units of the same layer and kind\n")
    print(format_table(res, args.top, args.ablate))
    if not np.isfinite(res.table.score).all():
        print("\nnote: some units gave no score (constant activations)", file=sys.stderr)
    return 0
