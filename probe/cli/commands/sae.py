"""probe sae: train a top-k sparse autoencoder on one site of a recording and report its held-out metrics."""
from __future__ import annotations

import argparse

from probe.errors import ProbeError

from probe.cli.json_out import emit_json

NAME = "sae"
HELP = "train a top-k sparse autoencoder on a layer's h or c and report FVU, L0, dead features and loss recovered"
DESCRIPTION = """Train a top-k sparse autoencoder (Gao et al. 2024: z = TopK(ReLU(W_enc (x - b_dec) + b_enc)),
x_hat = W_dec z + b_dec, unit-norm decoder rows, AuxK loss for dead latents) on one site
(--site L2.h: a layer's h, or an LSTM's c) of a recording, and write it to --out in the
layout SAELens users know (sae_weights.safetensors, cfg.json, metrics.json; probe.json
says what it was trained on).

Rows: the recording's last --held-out fraction (default 0.1) is held out for the
metrics; the rest is trained on, in a seeded shuffled order. --stream CHECKPOINT trains
instead on that model's states over its training split, computed through the hook walk
and never stored (the recording's last rows stay the held-out set).

Metrics, held out: fraction of variance unexplained (FVU), mean L0, dead features (never
active) and dense ones (active on more than 10% of rows); loss recovered: the model run
over the held-out text with the site replaced by its reconstruction after every step,
bits/char clean, reconstructed and mean-ablated; recovered = (ablated - reconstructed) /
(ablated - clean). The model: --checkpoint, default the one the recording names.

Deterministic for a --seed; the folder is rewritten whole after every epoch, and
--resume continues an interrupted run from its last epoch to the same weights.

examples:
  probe sae recordings/wiki-val --site L2.h --out saes/wiki-L2h
  probe sae recordings/wiki-val --site L2.h --features 4096 --k 32 --epochs 20 --out saes/wiki-L2h
  probe sae recordings/wiki-val --site L2.h --stream trained_models/wiki --epochs 1 --out saes/wiki-L2h-stream
  probe sae recordings/wiki-val --site L2.h --epochs 30 --resume --out saes/wiki-L2h
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="RECORDING", help="a recording folder (from `probe record`)")
    p.add_argument("--site", required=True, help="the layer state to encode: L<layer>.h or L<layer>.c, e.g. L2.h")
    p.add_argument("--out", "-o", required=True, metavar="FOLDER", help="the SAE folder to write")
    p.add_argument("--features", dest="d_sae", type=int, default=4096, help="dictionary size (default 4096)")
    p.add_argument("--k", type=int, default=32, help="active features a row (default 32)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training rows (default 10)")
    p.add_argument("--batch-size", type=int, default=1024, help="rows a step (default 1024)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the row order (default 0)")
    p.add_argument("--held-out", type=float, default=0.1, help="fraction of the recording's rows, its last ones, "
                                                                "kept for the metrics (default 0.1)")
    p.add_argument("--k-aux", type=int, default=None, help="dead latents in the AuxK loss (default: units / 2)")
    p.add_argument("--dead-after", type=int, default=100_000,
                   help="training rows without firing after which a latent counts as dead (default 100000)")
    p.add_argument("--checkpoint", metavar="CK", help="the model for loss recovered (default: the recording's)")
    p.add_argument("--no-loss", dest="evaluate_loss", action="store_false",
                   help="skip loss recovered (no model needed)")
    p.add_argument("--stream", metavar="CK", help="train on this model's states over its training split, "
                                                  "streamed (the recording's model), instead of the recording's rows")
    p.add_argument("--stream-rows", dest="stream_max_rows", type=int, default=None,
                   help="with --stream: at most this many rows an epoch")
    p.add_argument("--resume", action="store_true", help="continue the training in --out from its last epoch")
    p.add_argument("--overwrite", action="store_true", help="replace an SAE already in --out")
    p.add_argument("--no-resume-state", dest="keep_trainer", action="store_false",
                   help="leave no resume state (trainer.*: Adam moments, twice the weights) in the finished folder")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON (- for stdout)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def format_result(res) -> str:
    m = res.metrics or {}
    lines = [f"SAE on {res.site} -> {res.path}: {res.sae.d_sae:,} features, k {res.sae.k}, {res.epochs} epoch(s), "
             f"{res.steps:,} steps, {res.seconds:.1f} s of training"
             + (f" (resumed after epoch {res.resumed_from})" if res.resumed_from else "")]
    if m:
        fvu = "n/a" if m.get("fvu") is None else f"{m['fvu']:.4f}"
        lines.append(f"held out ({m['rows']:,} rows): FVU {fvu}, mean L0 {m['mean_l0']:.1f}, "
                     f"dead features {m['dead_features']:,}, dense (> {m['dense_threshold']:.0%} of rows) "
                     f"{m['dense_features']:,}")
    lr = m.get("loss_recovered")
    if lr and lr.get("diverged"):
        lines.append(f"loss recovered over {lr['symbols']:,} held-out symbols: the reconstruction diverged (fed back "
                     f"step after step, the state grew without bound); clean {lr['clean_bits']:.4f}, mean-ablated "
                     f"{lr['ablated_bits']:.4f} bits/char")
    elif lr:
        rec = "n/a (mean-ablation costs nothing here)" if lr["recovered"] is None else f"{lr['recovered']:.3f}"
        lines.append(f"loss recovered over {lr['symbols']:,} held-out symbols: clean {lr['clean_bits']:.4f}, "
                     f"reconstructed {lr['recon_bits']:.4f}, mean-ablated {lr['ablated_bits']:.4f} bits/char; "
                     f"recovered {rec}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.json and args.json != "-":
        from pathlib import Path
        if not Path(args.json).resolve().parent.is_dir():
            raise ProbeError(f"--json: no folder {Path(args.json).parent} to write {args.json} into")
    from probe.sae.train import train_sae
    res = train_sae(args.source, args.site, d_sae=args.d_sae, k=args.k, epochs=args.epochs,
                    batch_size=args.batch_size, lr=args.lr, seed=args.seed, out=args.out, resume=args.resume,
                    overwrite=args.overwrite, progress=not args.quiet, stream=args.stream, held_out=args.held_out,
                    k_aux=args.k_aux, dead_after=args.dead_after, checkpoint=args.checkpoint,
                    evaluate_loss=args.evaluate_loss, stream_max_rows=args.stream_max_rows,
                    keep_trainer=args.keep_trainer)
    if args.json and emit_json(args.json, res.to_dict()):
        return 0
    print(format_result(res))
    return 0
