"""probe fit-probe: linear probes per layer and state kind, with baselines and a sparse curve."""
from __future__ import annotations

import argparse

from probe.cli.commands._concept_args import add_concept_arguments, concept_from_args, parse_list

from probe.cli.json_out import emit_json

NAME = "fit-probe"
HELP = "fit linear probes for a concept, beside majority, best-unit, untrained and control baselines"
DESCRIPTION = """Fit a linear probe for a concept on every layer and state kind.

Logistic regression (binary; integer concepts as capped categories) or ridge
(continuous), trained on the first --train-frac of the rows and scored on the
rest. Baselines: majority class (or mean), the single best unit, the same probe
on an untrained model of the same shape (--untrained auto records one, or give
a recording), and a control task (Hewitt & Liang: random labels per character
type); selectivity = probe - control. The sparse curve: best 1, 2, 4, ... units.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="a recording folder")
    add_concept_arguments(p)
    p.add_argument("--kinds", default=None, help="state kinds, e.g. h,c (default: h and c)")
    p.add_argument("--layers", default=None, help="layers, e.g. 0,2 (default: all)")
    p.add_argument("--untrained", default=None, metavar="REC|auto",
                   help="untrained-model baseline: a recording of it, or auto to record one (cached)")
    p.add_argument("--seed", type=int, default=0, help="seed of the control task (default 0)")
    p.add_argument("--control-k", type=int, default=1, help="control task types: the last K characters (default 1)")
    p.add_argument("--max-train", type=int, default=10000, help="rows sampled from the train block (default 10000)")
    p.add_argument("--no-sparse", action="store_true", help="skip the sparse curve")
    p.add_argument("--json", metavar="FILE", help="write the table and the sparse curve as JSON (- for stdout)")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from probe.analysis.probes import fit_probes
    from probe.record.recording import Recording

    concept = concept_from_args(args)
    rec = Recording.open(args.recording)
    rep = fit_probes(rec, concept, kinds=parse_list(args.kinds, "kinds"), layers=parse_list(args.layers, "layers", int),
                     untrained=args.untrained, seed=args.seed, control_k=args.control_k, max_train=args.max_train,
                     sparse=not args.no_sparse)
    if args.json and emit_json(args.json, rep.to_dict()):
        return 0
    metric = rep.table.metric.iloc[0]
    print(f"concept {concept.name} ({rep.task}); {metric} on held-out rows {rep.test_rows[0]:,}:{rep.test_rows[1]:,} "
          f"({rep.n_test:,} sampled), probes trained on rows 0:{rep.train_rows[1]:,} ({rep.n_train:,} sampled)")
    for note in rep.notes:
        print(f"note: {note}")
    print()
    print(f"{'layer':>5} {'kind':>4} {'probe':>7} {'majority':>8} {'best unit':>9} {'':<11} {'untrained':>9} "
          f"{'control':>7} {'selectivity':>11}")
    for r in rep.table.itertuples():
        unt = f"{r.untrained:>9.3f}" if np.isfinite(r.untrained) else f"{'-':>9}"
        print(f"{r.layer:>5} {r.kind:>4} {r.probe:>7.3f} {r.majority:>8.3f} {r.best_unit:>9.3f} {r.best_unit_name:<11} "
              f"{unt} {r.control:>7.3f} {r.selectivity:>11.3f}")
    if len(rep.sparse):
        print(f"\nsparse probe ({metric} with the best k units, ranked on the train block):")
        for (layer, kind), g in rep.sparse.groupby(["layer", "kind"], sort=False):
            print(f"  L{layer}.{kind}: " + "  ".join(f"{k}:{s:.3f}" for k, s in zip(g.k, g.score)))
    if not rep.table.untrained.notna().any() and args.untrained is None:
        print("\n(untrained-model baseline: add --untrained auto, or --untrained RECORDING)")
    return 0
