"""The training recipe: `TrainConfig` holds every option; `recipe()` settles the one a run trains with
(on resume the checkpoint's own, only RESUME_OVERRIDABLE settings changed)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields

import torch

from probe.checks import ParamError, check_at_least, check_choice, check_number
from probe.errors import ProbeError
from probe.model import checkpoint as ckpt
from probe.model.charrnn import ModelConfig


@dataclass
class TrainConfig:
    data: str = "shakespeare"
    out: str = "runs/shakespeare"
    vocab: str = "auto"  # auto | char | byte
    min_count: int = 1  # char vocabulary: rarer characters map to <unk>
    val_frac: float = 0.05
    test_frac: float = 0.05
    model: str = "lstm"
    rnn_size: int = 512
    num_layers: int = 3
    embed_size: int = 64
    dropout: float = 0.1
    seq_length: int = 100
    batch_size: int = 64
    learning_rate: float = 2e-3
    lr_schedule: str = "cosine"  # cosine | constant
    warmup_iters: int = 100
    min_lr_frac: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    max_epochs: float = 10.0
    max_iters: int = 0  # 0: from max_epochs
    max_time: str = ""  # e.g. 90s, 30m, 2h: stop early (the schedule still follows max_epochs/iters)
    eval_every: int = 500
    sample_length: int = 200
    seed: int = 123
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False
    threads: int = 0  # 0: torch's default
    max_rollbacks: int = 5
    spike_nats: float = 1.0  # a loss this far above its running level (and 50% above it) is a spike

    def validate(self) -> None:
        check_at_least(rnn_size=(self.rnn_size, 1), num_layers=(self.num_layers, 1), embed_size=(self.embed_size, 1),
                       seq_length=(self.seq_length, 1), batch_size=(self.batch_size, 1),
                       eval_every=(self.eval_every, 1), max_iters=(self.max_iters, 0),
                       warmup_iters=(self.warmup_iters, 0))
        check_number("learning_rate", self.learning_rate, min=0, min_open=True)
        check_number("grad_clip", self.grad_clip, min=0)
        check_number("weight_decay", self.weight_decay, min=0)
        check_number("max_epochs", self.max_epochs, min=0, min_open=True)
        check_choice("vocab", self.vocab, ("auto", "char", "byte"))
        check_choice("lr_schedule", self.lr_schedule, ("cosine", "constant"))
        check_choice("device", self.device, ("auto", "cpu", "cuda"))
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ParamError("device", "cuda asked for, but torch sees no CUDA device")
        parse_duration(self.max_time)
        self.model_config(1).validate(batch=self.batch_size, seq=self.seq_length)  # and that it fits in memory

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, model=self.model, rnn_size=self.rnn_size,
                           num_layers=self.num_layers, embed_size=self.embed_size, dropout=self.dropout)

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def parse_duration(text: str) -> float | None:
    """'90s', '30m', '2h', '1.5h' or a plain number of seconds; '' means no limit."""
    if not text:
        return None
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if not m:
        raise ParamError("max_time", f"must look like 90s, 30m or 2h, not {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


RESUME_OVERRIDABLE = ("max_epochs", "max_iters", "max_time", "device", "threads", "eval_every")
RECIPE_KEYS = ("data", "model", "rnn_size", "num_layers", "embed_size", "batch_size", "seq_length")


def recipe(cfg: TrainConfig, resume: str | None, overrides: dict | None) -> tuple[TrainConfig, ckpt.ResumePoint | None]:
    """The configuration to train with and, with `resume`, the checkpoint to continue from.

    On resume the recipe is the checkpoint's; only RESUME_OVERRIDABLE settings change: those in
    `overrides` when given, else those of `cfg` that differ from the defaults.
    """
    point = None
    if resume:
        point = ckpt.find_resume(resume)
        saved = saved_recipe(point)
        if overrides is None:
            overrides = {name: getattr(cfg, name) for name in RESUME_OVERRIDABLE
                         if getattr(cfg, name) != getattr(TrainConfig, name, None)}
        for name, value in overrides.items():
            if name in RESUME_OVERRIDABLE and value is not None:
                setattr(saved, name, value)
        saved.out = str(point.run)  # new checkpoints go into the run folder, whatever path named it
        cfg = saved
    try:
        cfg.validate()
    except ParamError as e:
        if point is not None and e.param not in (overrides or {}):
            raise ProbeError(f"corrupted checkpoint {point.folder}: checkpoint.json: train_config.{e}") from None
        raise
    return cfg, point


def saved_recipe(point: ckpt.ResumePoint) -> TrainConfig:
    """The TrainConfig a checkpoint was trained with; its keys, types and model checked against the JSON."""
    where = f"corrupted checkpoint {point.folder}: checkpoint.json: train_config"
    tc, mc = point.meta.get("train_config"), point.meta["model_config"]
    if not isinstance(tc, dict):
        raise ProbeError(f"{where} is missing or not an object")
    missing = [k for k in RECIPE_KEYS if k not in tc]
    if missing:
        raise ProbeError(f"{where} lacks {missing[0]!r}")
    for f in fields(TrainConfig):
        if f.name in tc and not _same_type(tc[f.name], f.default):
            wanted = {bool: "true or false", int: "an integer", float: "a number"}.get(type(f.default), "a string")
            raise ProbeError(f"{where}.{f.name} is {json.dumps(tc[f.name])[:40]}, not {wanted}")
    for k in ("model", "rnn_size", "num_layers", "embed_size", "dropout"):
        if k in tc and k in mc and tc[k] != mc[k]:
            raise ProbeError(f"{where}.{k} is {tc[k]!r} but model_config.{k} is {mc[k]!r}")
    return TrainConfig.from_json(tc)


def _same_type(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))
