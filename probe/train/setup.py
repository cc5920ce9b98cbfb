"""Setting up a training run: ranks and device, data, model, optimizer, and the state a resume restores.

`setup()` returns a `Session`, everything the loop in loop.py works with. The optimizer's state
goes to and from checkpoints as safetensors tensors plus JSON (`optimizer_tensors`, `restore_optimizer`).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from probe.data import corpus
from probe.data.batches import StreamBatches
from probe.data.vocab import Vocab, decode_utf8
from probe.checks import ParamError
from probe.errors import ProbeError
from probe.model import checkpoint as ckpt
from probe.model.charrnn import CharRNN, State, state_from_tensors
from probe.names import array_name
from probe.train.precision import check_bf16
from probe.train.config import TrainConfig


def log(msg: str, rank: int = 0) -> None:
    """A line on stderr, from rank 0 only."""
    if rank == 0:
        print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data

@dataclass
class Data:
    vocab: Vocab
    ids: np.ndarray
    split: corpus.Split
    source: dict

    def part(self, name: str) -> np.ndarray:
        a, b = self.split.range(name)
        return self.ids[a:b]


def load_data(cfg: TrainConfig, vocab: Vocab | None = None) -> Data:
    """The corpus of `cfg.data` as ids (in `vocab`, or a new vocabulary), with its split and provenance."""
    path = corpus.resolve(cfg.data)
    raw = corpus.read_bytes(path)
    if not raw:
        raise ProbeError(f"{cfg.data} is empty")
    kind = cfg.vocab
    if kind == "auto":
        kind = corpus.DEFAULT_VOCAB.get(cfg.data, "char")
    if vocab is None:
        vocab = Vocab.byte() if kind == "byte" else Vocab.from_text(decode_utf8(raw, str(cfg.data)), cfg.min_count)
    text = raw if vocab.encoding == "byte" else decode_utf8(raw, str(cfg.data))
    ids = vocab.encode(text)
    split = corpus.Split.make(len(ids), cfg.val_frac, cfg.test_frac)
    source = {"corpus": corpus.portable_path(path), "sha256": corpus.sha256(raw), "bytes": len(raw),
              "symbols": len(ids), "unit": vocab.encoding}
    return Data(vocab=vocab, ids=ids, split=split, source=source)


# --------------------------------------------------------------------------- device and optimizer

def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW, fused (one kernel over all parameters) where torch has it for the device (on a 2-core CPU a
    fifth of a training step less than the default per-parameter loop)."""
    kw = dict(lr=cfg.learning_rate, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    try:
        return torch.optim.AdamW(model.parameters(), fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # an older torch or a device without the fused kernel
        return torch.optim.AdamW(model.parameters(), **kw)


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split an optimizer state_dict into safetensors-able tensors and JSON."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v.detach().cpu().clone()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict, js: dict, device) -> None:
    """Load what `optimizer_tensors` saved; the kernel choice (fused, foreach) stays this optimizer's.

    State that does not fit this optimizer's parameters (count, shapes) is refused with a ProbeError.
    """
    params = [p for g in opt.param_groups for p in g["params"]]
    state: dict = {}
    for name, v in tensors.items():
        if name.startswith("opt."):
            _, idx, k = name.split(".", 2)
            if not idx.isdigit() or int(idx) >= len(params):
                raise ProbeError(f"optimizer tensor {name} names no parameter of the model ({len(params)})")
            if k in ("exp_avg", "exp_avg_sq") and v.shape != params[int(idx)].shape:
                raise ProbeError(f"optimizer tensor {name} has shape {tuple(v.shape)}, its parameter "
                                 f"{tuple(params[int(idx)].shape)}")
            state.setdefault(int(idx), {})[k] = v.to(device) if k != "step" else v
    for key, v in js.get("scalars", {}).items():
        idx, _, k = key.partition(".")
        if not idx.isdigit() or int(idx) >= len(params):
            raise ProbeError(f"optimizer scalar {key} names no parameter of the model ({len(params)})")
        state.setdefault(int(idx), {})[k] = v
    saved = js["param_groups"]
    if len(saved) != len(opt.param_groups) or any(
            len(s.get("params", ())) != len(n["params"]) for s, n in zip(saved, opt.param_groups)):
        raise ProbeError("optimizer parameter groups do not match the model's parameters")
    kernel = ("fused", "foreach", "capturable", "differentiable")
    groups = [dict(s, **{k: now[k] for k in kernel if k in now}) for s, now in zip(saved, opt.param_groups)]
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ProbeError(f"optimizer state does not load: {str(e).splitlines()[0][:200]}") from None


def rng_tensors(device: torch.device) -> dict:
    d = {"rng.cpu": torch.get_rng_state()}
    if device.type == "cuda":
        d["rng.cuda"] = torch.cuda.get_rng_state(device)
    return d


# --------------------------------------------------------------------------- the session

@dataclass
class Session:
    """What the loop works with: the recipe, where it runs, the data, the model, and the state a checkpoint
    holds (step, learning-rate scale, rollbacks, history, carried hidden state)."""
    cfg: TrainConfig
    out: Path
    device: torch.device
    rank: int
    world: int
    data: Data
    train_ids: np.ndarray
    val_ids: np.ndarray
    batches: StreamBatches
    total: int
    model: CharRNN
    net: torch.nn.Module  # the model, wrapped for DistributedDataParallel under several ranks
    opt: torch.optim.Optimizer
    step: int = 0
    lr_scale: float = 1.0
    rollbacks: int = 0
    metrics: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    best_val: float = float("inf")
    state: State | None = None
    time_before: float = 0.0  # wall time of the earlier sessions of a resumed run

    @property
    def chars_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.seq_length * self.world

    def epoch(self) -> float:
        return self.step / len(self.batches)


def setup(cfg: TrainConfig, point: ckpt.ResumePoint | None, opened: dict) -> Session:
    """Ranks, device and process group; the run folder (recovered when resuming); data, model, optimizer;
    the resumed state. `opened["group"]` is set when this opened a process group."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", 0)))
    if cfg.bf16:  # before anything is written: an opaque oneDNN error on the first step otherwise
        check_bf16(device, cfg.model)
    if world > 1:
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            opened["group"] = True
    out = point.run if point else Path(cfg.out)
    resumed = ckpt.load(point.folder, with_trainer=True) if point else None  # every rank reads it
    if not point:
        check_fresh_run(out, rank)
    torch.manual_seed(cfg.seed)
    data = load_data(cfg, vocab=resumed.vocab if resumed else None)
    if resumed and data.source["sha256"] != resumed.meta["data"]["sha256"]:
        raise ProbeError(f"{cfg.data} changed since the checkpoint was written (sha256 differs)")
    train_ids, val_ids = data.part("train"), data.part("val")
    if len(val_ids) < 2:
        raise ParamError("val_frac", f"validation split of {cfg.data} is empty ({data.split.n} characters); "
                         "raise {val_frac}", advice=True)
    batches = StreamBatches(train_ids, cfg.batch_size, cfg.seq_length, rank, world)
    total = cfg.max_iters or max(1, int(round(cfg.max_epochs * len(batches))))
    model = CharRNN(cfg.model_config(data.vocab.size)).to(device)
    s = Session(cfg=cfg, out=out, device=device, rank=rank, world=world, data=data, train_ids=train_ids,
                val_ids=val_ids, batches=batches, total=total, model=model, net=model,
                opt=make_optimizer(model, cfg))
    if resumed:
        restore(s, resumed)
        settle_resumed_run(point, rank, world)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        s.net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    log(f"{cfg.model} {cfg.num_layers}x{cfg.rnn_size}, {model.num_params():,} parameters, "
        f"vocab {data.vocab.encoding} ({data.vocab.size}), train {len(train_ids):,} / val {len(val_ids):,} "
        f"symbols, {len(batches)} iterations an epoch, {total} in all, device {device}"
        f"{' bf16' if cfg.bf16 else ''}{f', {world} ranks' if world > 1 else ''}", rank)
    return s


def check_fresh_run(out: Path, rank: int) -> None:
    """Refuse a folder that holds a run (every rank checks, so that none waits for one that refused);
    rank 0 deletes what killed saves of stopped processes left there."""
    if ckpt.holds_run(out):
        raise ParamError("out", f"{out} already holds a run; use {{resume={out}}} or another {{out}}", advice=True,
                         others=("resume",))
    if rank == 0:
        ckpt.clean_leftovers(out)


def settle_resumed_run(point: ckpt.ResumePoint, rank: int, world: int) -> None:
    """Say where the run resumes from; then (rank 0, once every rank has read its checkpoint) put the run's
    newest complete checkpoint back at latest/ and delete temporary folders of stopped processes."""
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
    if rank != 0:
        return
    log(point.describe())
    if not point.named:
        for note in ckpt.recover(point.run):
            log(f"{point.run}: {note}")


def restore(s: Session, resumed: ckpt.Checkpoint) -> None:
    """Weights, optimizer, RNG, carried state and history of a resumed run into the session."""
    cfg, tt, tj, meta = s.cfg, resumed.trainer_tensors, resumed.trainer_json, resumed.meta
    s.model.load_state_dict(resumed.model.state_dict())
    try:
        restore_optimizer(s.opt, tt, tj["optimizer"], s.device)
        torch.set_rng_state(tt["rng.cpu"])
    except (ProbeError, RuntimeError) as e:
        raise ProbeError(f"corrupted checkpoint {resumed.path}: trainer state: {e}") from None
    if s.device.type == "cuda" and "rng.cuda" in tt:
        torch.cuda.set_rng_state(tt["rng.cuda"], s.device)
    if any(k.startswith("state.") for k in tt):
        s.state = carried_state(resumed.path, {k[6:]: v for k, v in tt.items() if k.startswith("state.")},
                                cfg, s.batches.x.shape[0], s.device)
    s.step, s.lr_scale, s.rollbacks = tj["step"], tj["lr_scale"], tj.get("rollbacks", 0)
    s.metrics, s.samples = meta.get("metrics", []), meta.get("samples", [])
    s.best_val = meta.get("best_val_loss", float("inf"))
    last = s.metrics[-1] if s.metrics else {}
    if not isinstance(last, dict) or not isinstance(last.get("time", 0.0), (int, float)):
        raise ProbeError(f"corrupted checkpoint {resumed.path}: checkpoint.json: metrics hold a bad entry")
    s.time_before = float(last.get("time", 0.0))


def carried_state(path: Path, tensors: dict, cfg: TrainConfig, streams: int, device) -> State:
    """The hidden state carried across batches, checked against the model and the batch."""
    want = (1, streams, cfg.rnn_size)
    names = [array_name(i, k) for i in range(cfg.num_layers) for k in (("h", "c") if cfg.model == "lstm" else ("h",))]
    for name in names:
        t = tensors.get(name)
        if t is None or tuple(t.shape) != want:
            got = "missing" if t is None else f"of shape {tuple(t.shape)}"
            raise ProbeError(f"corrupted checkpoint {path}: trainer.safetensors: state.{name} is {got}, "
                             f"not of shape {want}")
    return state_from_tensors(tensors, cfg.model, cfg.num_layers, device)
