"""probe train: train a character-level LSTM/GRU/RNN (char-rnn's options, modern defaults)."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields

from probe.errors import ProbeError

NAME = "train"
HELP = "train a character-level LSTM, GRU or vanilla RNN language model"
DESCRIPTION = """Train a character-level language model on a text file or a bundled corpus
(`wiki`, `shakespeare`). Checkpoints go to OUT/latest and OUT/best. `--resume OUT` continues from
the newest complete checkpoint in OUT whatever moment a kill hit (it says which one it took).

examples:
  probe train --data shakespeare --out runs/shakespeare --rnn-size 256 --num-layers 2
  probe train --data wiki --out runs/wiki --bf16 --max-time 2h
  probe train --resume runs/wiki --max-epochs 20
  torchrun --nproc_per_node 2 -m probe train --data wiki --out runs/wiki-ddp
"""

HELPS = {
    "data": "text file (plain, .bz2, .gz, .xz) or bundled corpus name: wiki, shakespeare",
    "out": "run folder for checkpoints (latest/ and best/)",
    "vocab": "char (code points), byte (256 symbols, any file) or auto (byte for wiki, else char)",
    "min_count": "char vocabulary: characters seen fewer times map to <unk>",
    "model": "lstm, gru or rnn",
    "rnn_size": "hidden units per layer",
    "num_layers": "stacked recurrent layers",
    "embed_size": "input embedding size",
    "dropout": "dropout on each layer's output",
    "seq_length": "characters per truncated-BPTT window",
    "batch_size": "parallel streams",
    "learning_rate": "AdamW peak learning rate",
    "lr_schedule": "cosine (to min-lr-frac over the run) or constant, after a linear warm-up",
    "grad_clip": "clip the gradient norm to this (0: off)",
    "max_epochs": "passes over the training split (sets the schedule's length)",
    "max_iters": "iterations instead of epochs (0: from max-epochs)",
    "max_time": "stop early after this long (90s, 30m, 2h), saving a resumable checkpoint",
    "eval_every": "validate on the whole validation split, sample and checkpoint every N iterations",
    "device": "auto (cuda if present), cpu or cuda",
    "bf16": "bfloat16 autocast (faster on CPUs with native bf16)",
    "threads": "torch threads (0: torch's default)",
    "max_rollbacks": "divergence: roll back and halve the learning rate at most this many times",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from probe.train.config import TrainConfig  # torch: only `probe train` pays for it

    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=HELPS.get(f.name))
        else:
            typ = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            p.add_argument(flag, type=typ, default=f.default, help=(HELPS.get(f.name, "") + f" (default {f.default!r})").strip())
    p.add_argument("--resume", metavar="RUN", help="continue a run from its newest complete checkpoint, inside RUN "
                   "(also after a kill in the middle of a save; the recipe is the checkpoint's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def typed_options(argv: list[str]) -> set[str]:
    """TrainConfig fields given on the command line (`--eval-every 500`, `--eval-every=500`, `--no-bf16`)."""
    from probe.train.config import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    given = set()
    for a in argv:
        if a.startswith("--"):
            name = a[2:].split("=", 1)[0].replace("-", "_")
            name = name[3:] if name.startswith("no_") and name[3:] in names else name
            if name in names:
                given.add(name)
    return given


def run(args: argparse.Namespace) -> int:
    from probe.train.config import RESUME_OVERRIDABLE, TrainConfig
    from probe.train.loop import train

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    typed = typed_options(getattr(args, "_argv", None) or sys.argv[1:])
    args.overrides = {n: getattr(cfg, n) for n in RESUME_OVERRIDABLE if n in typed} if args.resume else None
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        return _run_as_rank(cfg, args)
    result = train(cfg, resume=args.resume, progress=not args.quiet, overrides=args.overrides)
    return 130 if result.stopped in ("SIGINT",) else 0


def _run_as_rank(cfg, args: argparse.Namespace) -> int:
    """One torchrun rank: train, then leave without the interpreter's teardown.

    DistributedDataParallel keeps the gloo process group (and its worker threads)
    alive past `destroy_process_group`; torn down during interpreter finalization,
    those threads abort the process now and then ("terminate called without an
    active exception", SIGABRT), failing a run whose checkpoints are complete. The
    checkpoints are written and renamed by then, so the rank flushes its output
    and exits at once with its own status.
    """
    from probe.train.loop import train

    try:
        result = train(cfg, resume=args.resume, progress=not args.quiet, overrides=args.overrides)
        code = 130 if result.stopped in ("SIGINT",) else 0
    except ProbeError as e:
        print(f"probe train: error: {e}", file=sys.stderr)
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
