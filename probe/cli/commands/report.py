"""probe report: one self-contained offline HTML report of a recording, with PNG/SVG figures and CSV tables."""
from __future__ import annotations

import argparse

from probe.errors import ProbeError
from probe.cli.commands._concept_args import add_regex_timeout_argument, regex_timeout
from probe.cli.commands._sae_args import add_sae_argument, open_source

NAME = "report"
HELP = "write an offline HTML report (figures as PNG/SVG, tables as CSV) for a recording"
DESCRIPTION = """Write a report folder for a recording: index.html (self-contained, works offline),
figures/*.png and *.svg, tables/*.csv. It holds the model card and training curve,
the loss on the recorded text, and for each concept the top units with held-out
scores and chance level, their text heatmaps on a passage where the concept
occurs, the linear probes and sparse-probe curve; then gate saturation and an
embedding of the last layer.

--baseline ngram:N (or a checkpoint) adds a section comparing the recorded model
with that baseline on the recorded text, as `probe compare` does: Δ bits per
character overall and inside/outside concepts with block-bootstrap intervals,
where each side wins, a Δloss text heatmap and the closers' probability by
distance to their openers; and the model's error breakdown (`probe errors`).
The model's loss is read from the recording; an n-gram is fitted on the
training split of the recording's checkpoint and cached (~/.cache/probe/ngram,
or $PROBE_CACHE/ngram), as are the breakdown's n-gram oracles (orders 1-9):
the first report on a corpus spends the fits (minutes for the shipped wiki
model's 5.5 MB training split), later ones load them. Off by default.

examples:
  probe report recordings/wiki-val --concepts url,wiki-link,column --out analyses/wiki-report
  probe report recordings/wiki-val --concepts wiki-link --baseline ngram:7 --out report/
  probe report recordings/wiki-val --concepts url,wiki-link --ablate 3 --out report/
  probe report recordings/wiki-val --sae saes/wiki-L2h --concepts url,wiki-link --out report-L2h/

--sae SAE_FOLDER: the concept sections rank, list and draw the features of that
sparse autoencoder (L2.h.f123...) instead of the units; the model card, loss,
baseline and embedding sections are the recording's as without it.

--ablate N holds each binary concept's top N units (h and c) at their mean over
the first --ablate-chars characters, one at a time, against 20 random units of
the same layer and kind (as `probe find-neurons --ablate`): "tracks it" (held-out
score) beside "is used for it" (Δ bits/char inside and outside, p). Off by default:
it runs the model once per layer and kind with 20+N streams."""


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
    p.add_argument("--baseline", metavar="ngram:N|CHECKPOINT", default=None,
                   help="add a section: the recorded model against this baseline, and its error breakdown "
                        "(default: off)")
    p.add_argument("--ablate", type=int, default=0, metavar="N",
                   help="for each binary concept, also hold its top N units at their mean and show the change of "
                        "loss beside the held-out score (default 0: off; needs the recorded model)")
    p.add_argument("--ablate-chars", type=int, default=20_000, metavar="N",
                   help="characters of the recording to ablate on (default 20000)")
    p.add_argument("--checkpoint", default=None,
                   help="the recorded model, for --ablate (default: the checkpoint named in the recording)")
    add_sae_argument(p, "units of the concept sections")
    add_regex_timeout_argument(p)


def run(args: argparse.Namespace) -> int:
    from probe.report import build_report
    concepts = [c.strip() for c in args.concepts.split(",") if c.strip()]
    if args.sae and args.ablate:
        raise ProbeError("--ablate holds units; to remove features use "
                         "`probe ablate CHECKPOINT --sae SAE --unit L2.h.f123`")
    out = build_report(open_source(args.recording, args) if args.sae else args.recording, concepts, args.out, top=args.top, heat_units=args.heat_units,
                       passage=args.passage, width=args.width, embedding=args.embedding, embed_n=args.embed_n,
                       images=not args.no_images, overwrite=args.overwrite, seed=args.seed,
                       regex_timeout=regex_timeout(args), baseline=args.baseline, ablate=args.ablate,
                       ablate_chars=args.ablate_chars, checkpoint=args.checkpoint)
    print(f"wrote {out}/index.html")
    return 0
