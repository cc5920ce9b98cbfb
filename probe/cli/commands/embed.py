"""probe embed: a 2-D PCA or UMAP map of one layer's states, labelled by a concept."""
from __future__ import annotations

import argparse

from probe.cli.commands._concept_args import add_concept_arguments, concept_from_args
from probe.files import atomic_write

NAME = "embed"
HELP = "2-D PCA or UMAP of a layer's hidden states (seeded subsample), colored by a concept"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="a recording folder")
    p.add_argument("--layer", type=int, required=True, help="the layer to embed")
    p.add_argument("--kind", default="h", help="state kind (default h)")
    p.add_argument("--method", default="pca", choices=["pca", "umap"], help="pca (default) or umap")
    add_concept_arguments(p, required=False)
    p.add_argument("--n", type=int, default=5000, help="rows to sample (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="sampling and UMAP seed (default 0)")
    p.add_argument("--csv", metavar="FILE", help="write x, y, row, char, label as CSV")


def run(args: argparse.Namespace) -> int:
    from probe.analysis.embedding import embed_states
    from probe.record.recording import Recording

    concept = concept_from_args(args)
    rec = Recording.open(args.recording)
    df = embed_states(rec, layer=args.layer, kind=args.kind, method=args.method, concept=concept, n=args.n,
                      seed=args.seed)
    if args.csv:
        with atomic_write(args.csv) as f:
            df.to_csv(f, index=False)
    print(f"{args.method} of L{args.layer}.{args.kind} in {rec.path}: {len(df):,} rows (seed {args.seed})"
          + (f", written to {args.csv}" if args.csv else ""))
    if concept is not None:
        for value, g in df.groupby("label"):
            print(f"  {concept.name}={value:g}: {len(g):,} points, centre ({g.x.mean():.3f}, {g.y.mean():.3f})")
    if not args.csv:
        print("(pass --csv FILE to save the coordinates)")
    return 0
