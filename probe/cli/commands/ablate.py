"""probe ablate: hold units at a value over a text and measure what the model loses, against random units."""
from __future__ import annotations

import argparse
from pathlib import Path

from probe.cli.commands._concept_args import add_concept_arguments, concept_from_args
from probe.cli.commands.record import parse_range
from probe.cli.commands._sae_args import add_sae_argument
from probe.errors import ProbeError
from probe.files import write_atomic_text
from probe.cli.json_out import emit_json

NAME = "ablate"
HELP = "hold units at a value and measure the change of loss, inside and outside a concept, against random units"
DESCRIPTION = """Run the model over a text twice: as it is, and with the --unit(s) held at a value at
every step (--mode mean: each unit's mean over the text; zero; value=V). A held h
is what the next step and the layers above see; a held LSTM cell c is carried to
the next step (h follows from it). Gates cannot be held (they carry no state).

Reports the change of loss in bits per character, overall and, with --concept or
--pattern, inside and outside the concept, each with a 95% interval from a block
bootstrap over the text (contiguous --block characters). The null: the same
ablation of --random K random units of the same layer and kind (one batch, one
stream each); the target's rank among them and the empirical p-value (C+1)/(K+1).

Text: the checkpoint's validation split by default (--part), or TEXT_FILE, or
--text "..."; --range and --max-chars as in `probe record`.

examples:
  probe ablate trained_models/wiki --unit L2.c.502 --concept wiki-link --max-chars 50000
  probe ablate trained_models/wiki --unit L2.c.502 --mode zero --pattern 'https?://\\S+' --out ablation/
  probe ablate trained_models/wiki --sae saes/wiki-L2h --unit L2.h.f123 --concept wiki-link

--sae SAE_FOLDER: the --unit(s) are features of that sparse autoencoder (trained on
this model), removed instead of held: after every step the encoder reads the
site's state and each feature's decoder contribution z_f * W_dec[f] is
subtracted from it, so the next step and the layers above see the edited state.
The null: --random K random features of the same SAE, active somewhere on the text.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="run folder (uses best/) or checkpoint folder")
    p.add_argument("text_file", nargs="?", help="text file (plain, .bz2, .gz, .xz); default: the checkpoint's --part split")
    p.add_argument("--unit", "-u", dest="units", action="append", required=True, metavar="UNIT",
                   help="unit to hold, e.g. L2.c.502 (repeat to hold several together)")
    p.add_argument("--mode", default=None,
                   help="mean (default), zero, or value=V (not with --sae: features are removed)")
    add_sae_argument(p, "--unit(s) to remove (e.g. L2.h.f123)")
    add_concept_arguments(p, required=False)
    p.add_argument("--random", dest="n_random", type=int, default=20, metavar="K",
                   help="random units of the same layer and kind for the null (default 20; 0: none)")
    p.add_argument("--text", help="use this text instead of a file")
    p.add_argument("--part", choices=("train", "val", "test"), default="val",
                   help="split of the checkpoint's corpus when no text is given (default val)")
    p.add_argument("--range", dest="char_range", metavar="A:B", help="symbols A..B-1 of the text")
    p.add_argument("--max-chars", type=int, help="at most this many symbols")
    p.add_argument("--block", type=int, default=256, help="bootstrap block length in characters (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random units and the bootstrap (default 0)")
    p.add_argument("--top", type=int, default=10, help="changed characters to list (default 10)")
    p.add_argument("--json", metavar="FILE", help="write the result as JSON (- for stdout)")
    p.add_argument("--csv", metavar="FILE", help="write the table of held sets (target and random) as CSV")
    p.add_argument("--out", "-o", metavar="FOLDER",
                   help="a new folder for the per-character Δloss (.npy, .csv), the tables and a Δloss heatmap (.html)")


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unusable outputs before the (long) computation."""
    for flag, path in (("--json", args.json), ("--csv", args.csv)):
        if path and path != "-" and not Path(path).resolve().parent.is_dir():
            raise ProbeError(f"{flag}: no folder {Path(path).parent} to write {path} into")
    if args.out:
        out = Path(args.out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ProbeError(f"--out {out} exists and is not an empty folder")


def run(args: argparse.Namespace) -> int:
    from probe.analysis.ablate import ablate, save

    if args.text is not None and args.text_file:
        raise ProbeError("give either TEXT_FILE or --text, not both")
    if args.top < 0:
        raise ProbeError(f"--top must not be negative, not {args.top}")
    if args.sae and args.mode is not None:
        raise ProbeError("--mode holds units at a value; with --sae the features are removed (no --mode)")
    _check_outputs(args)
    concept = concept_from_args(args)
    text = args.text if args.text is not None else (Path(args.text_file) if args.text_file else None)
    res = ablate(args.checkpoint, args.units, text, mode=args.mode or "mean", concept=concept, n_random=args.n_random,
                 part=args.part, char_range=parse_range(args.char_range), max_chars=args.max_chars,
                 block=args.block, n_top=max(args.top, 20), seed=args.seed,
                 text_source="--text" if args.text is not None else None, sae=args.sae)
    if args.out:
        from probe.figures.delta_heatmap import delta_heatmap
        from probe.figures.export import figure_html
        what = "removed" if res.mode == "remove" else f"held ({res.mode})"
        fig = delta_heatmap(res.text, res.char_delta(), title=f"Δloss with {', '.join(res.units)} {what}")
        save(res, args.out, files={"delta-heatmap.html": figure_html(fig)})
    if args.csv:
        write_atomic_text(args.csv, res.table.to_csv(index=False))
    if args.json and emit_json(args.json, res.to_dict()):
        return 0
    print(format_result(res, args.top))
    return 0


def _ci(t, part: str) -> str:
    return f"{t[f'delta_{part}']:+.4f} [{t[f'lo_{part}']:+.4f}, {t[f'hi_{part}']:+.4f}]"


def format_result(res, top: int) -> str:
    t = res.table.iloc[0]
    if res.mode == "remove":
        sae = res.extra.get("sae", {})
        steps = sae.get("active_steps", {})
        removed = ", ".join(f"{u} (mean {v:.4g}, active on {steps.get(u, 0):,} steps)" for u, v in res.values.items())
        head = (f"removed {removed}"
                f" of the SAE {sae.get('name', '?')} on {sae.get('site', '?')}")
    else:
        head = f"held {', '.join(f'{u}={v:.4g}' for u, v in res.values.items())} ({res.mode})"
    lines = [f"{head} over {res.symbols:,} symbols in {res.seconds:.1f} s; "
             f"clean loss {res.base_bits:.4f} bits/char",
             f"Δloss bits/char (95% block-bootstrap interval, blocks of {res.block}):",
             f"  overall   {_ci(t, 'all')}"]
    if res.concept is not None:
        lines += [f"  inside    {_ci(t, 'in')}   ({res.concept}, {int(res.inside[1:].sum()):,} characters)",
                  f"  outside   {_ci(t, 'out')}"]
    if res.n_random:
        key = "delta_in" if res.concept is not None else "delta_all"
        null = res.table[key].iloc[1:]
        pool = ("features of the same SAE" + (" active on the text" if res.extra.get("sae", {}).get("null") == "active"
                                              else "") if res.mode == "remove" else "sets of the same layer and kind")
        lines.append(f"null: {res.n_random} random {pool}: {key} median {null.median():+.4f}, "
                     f"max {null.max():+.4f}; target rank {res.rank} of {res.n_random + 1}, p = {res.p_value:.3f}")
    if top and len(res.top):
        lines.append("characters whose probability changed most (p clean -> held):")
        for r in res.top.head(top).itertuples():
            ctx = (r.before + "[" + r.char + "]" + r.after).replace("\n", "\\n").replace("\t", "\\t")
            lines.append(f"  {r.position:>8}  {r.delta_bits:+7.3f} bits  {r.p_clean:.3f} -> {r.p_held:.3f}  {ctx}")
    if res.concept is None:
        lines.append("(give --concept or --pattern to split the effect inside and outside a concept)")
    return "\n".join(lines)
