"""probe report: one self-contained offline HTML report of a recording, with PNG/SVG figures and CSV tables."""
from __future__ import annotations

import argparse

NAME = "report"
HELP = "write an offline HTML report (figures as PNG/SVG, tables as CSV) for a recording"
DESCRIPTION = """Write a report folder for a recording: index.html (self-contained, works offline),
figures/*.png and *.svg, tables/*.csv. It holds the model card and training curve,
the loss on the recorded text, and for each concept the top units with held-out
scores and chance level, their text heatmaps on a passage where the concept
occurs, the linear probes and sparse-probe curve; then gate saturation and an
embedding of the last layer.

example:
  probe report recordings/wiki-val --concepts url,wiki-link,column --out analyses/wiki-report"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="a recording folder (from probe record)")
    p.add_argument("--concepts", default="", help="comma-separated concept names or regexes (e.g. url,wiki-link,column)")
    p.add_argument("--out", required=True, help="report folder to write")
    p.add_argument("--top", type=int, default=10, help="units listed per concept (default 10)")
    p.add_argument("--heat-units", type=int, default=3, help="units drawn as text heatmaps per concept (default 3)")
    p.add_argument("--passage", type=int, default=600, help="rows in each text heatmap (default 600)")
    p.add_argument("--width", type=int, default=100, help="characters per line in text heatmaps (default 100)")
    p.add_argument("--embedding", choices=["pca", "umap", "none"], default="pca", help="embedding method (default pca)")
    p.add_argument("--embed-n", type=int, default=3000, help="rows in the embedding (default 3000)")
    p.add_argument("--no-images", action="store_true", help="skip the PNG/SVG files (HTML and CSV only)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")


def run(args: argparse.Namespace) -> int:
    from probe.report import build_report
    concepts = [c.strip() for c in args.concepts.split(",") if c.strip()]
    out = build_report(args.recording, concepts, args.out, top=args.top, heat_units=args.heat_units,
                       passage=args.passage, width=args.width, embedding=args.embedding, embed_n=args.embed_n,
                       images=not args.no_images, overwrite=args.overwrite, seed=args.seed)
    print(f"wrote {out}/index.html")
    return 0
