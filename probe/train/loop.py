"""The training loop: truncated BPTT over contiguous streams, eval, samples, checkpoints, resume.

Read top to bottom: `TrainConfig` holds every option; `train()` builds the data,
the model and the optimizer (or restores them with `--resume`), then loops.
"""
from __future__ import annotations

import copy
import math
import os
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from probe.model import checkpoint as ckpt
from probe.data import corpus
from probe.data.batches import StreamBatches, eval_streams
from probe.errors import ProbeError
from probe.runtime.heap import retain_freed_memory
from probe.model.charrnn import CharRNN, ModelConfig, state_from_tensors, state_tensors
from probe.model.sampling import sample_text
from probe.data.vocab import Vocab, decode_utf8

LN2 = math.log(2)


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
        positive = ("rnn_size", "num_layers", "embed_size", "seq_length", "batch_size", "eval_every")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ProbeError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise ProbeError(f"--learning-rate must be positive, not {self.learning_rate}")
        if self.grad_clip < 0 or self.weight_decay < 0 or self.max_iters < 0 or self.warmup_iters < 0:
            raise ProbeError("--grad-clip, --weight-decay, --max-iters and --warmup-iters must not be negative")
        if not self.max_epochs > 0:
            raise ProbeError(f"--max-epochs must be positive, not {self.max_epochs}")
        if self.vocab not in ("auto", "char", "byte"):
            raise ProbeError(f"--vocab must be auto, char or byte, not {self.vocab!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ProbeError(f"--lr-schedule must be cosine or constant, not {self.lr_schedule!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ProbeError(f"--device must be auto, cpu or cuda, not {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ProbeError("--device cuda asked for, but torch sees no CUDA device")
        parse_duration(self.max_time)
        self.model_config(1).validate()

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
        raise ProbeError(f"--max-time must look like 90s, 30m or 2h, not {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


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
    path = corpus.resolve(cfg.data)
    raw = corpus.read_bytes(path)
    if not raw:
        raise ProbeError(f"{cfg.data} is empty")
    kind = cfg.vocab
    if kind == "auto":
        kind = corpus.DEFAULT_VOCAB.get(cfg.data, "char")
    if vocab is None:
        vocab = Vocab.byte() if kind == "byte" else Vocab.from_text(decode_utf8(raw, str(cfg.data)), cfg.min_count)
    text = raw if vocab.kind == "byte" else decode_utf8(raw, str(cfg.data))
    ids = vocab.encode(text)
    split = corpus.Split.make(len(ids), cfg.val_frac, cfg.test_frac)
    source = {"corpus": corpus.portable_path(path), "sha256": corpus.sha256(raw), "bytes": len(raw),
              "symbols": len(ids), "unit": vocab.kind}
    return Data(vocab=vocab, ids=ids, split=split, source=source)


# --------------------------------------------------------------------------- helpers

def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warm-up, then cosine down to min_lr_frac (or constant)."""
    if cfg.warmup_iters and step < cfg.warmup_iters:
        return cfg.learning_rate * (step + 1) / cfg.warmup_iters
    if cfg.lr_schedule == "constant" or total <= cfg.warmup_iters:
        return cfg.learning_rate
    t = min(1.0, (step - cfg.warmup_iters) / max(1, total - cfg.warmup_iters))
    return cfg.learning_rate * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def evaluate(model: CharRNN, ids: np.ndarray, device: torch.device, bf16: bool, streams: int = 64,
             chunk: int = 500) -> float:
    """Mean loss in nats over the whole of `ids` (parallel streams, state carried across chunks)."""
    was = model.training
    model.eval()
    x, y = eval_streams(ids, streams)
    x, y = x.to(device), y.to(device)
    total, count, state = 0.0, 0, None
    for s in range(0, x.shape[1], chunk):
        with autocast(device, bf16):
            logits, state = model(x[:, s:s + chunk], state)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y[:, s:s + chunk].reshape(-1),
                               reduction="sum")
        total += float(loss)
        count += y[:, s:s + chunk].numel()
    model.train(was)
    return total / count


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


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW, fused (one kernel over all parameters) where torch has it for the device.

    On a 2-core CPU the fused step of a 5.5M-parameter model takes ~8 ms against
    ~58 ms for the default per-parameter loop: a fifth of a training step.
    """
    kw = dict(lr=cfg.learning_rate, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    try:
        return torch.optim.AdamW(model.parameters(), fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # an older torch or a device without the fused kernel
        return torch.optim.AdamW(model.parameters(), **kw)


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict, js: dict, device) -> None:
    """Load what `optimizer_tensors` saved; the kernel choice (fused, foreach) stays this optimizer's."""
    state: dict = {}
    for name, v in tensors.items():
        if name.startswith("opt."):
            _, idx, k = name.split(".", 2)
            state.setdefault(int(idx), {})[k] = v.to(device) if k != "step" else v
    for key, v in js.get("scalars", {}).items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    kernel = ("fused", "foreach", "capturable", "differentiable")
    groups = [dict(saved, **{k: now[k] for k in kernel if k in now})
              for saved, now in zip(js["param_groups"], opt.param_groups)]
    opt.load_state_dict({"state": state, "param_groups": groups})


def _rng_tensors(device: torch.device) -> dict:
    d = {"rng.cpu": torch.get_rng_state()}
    if device.type == "cuda":
        d["rng.cuda"] = torch.cuda.get_rng_state(device)
    return d


def _log(msg: str, rank: int = 0) -> None:
    if rank == 0:
        print(msg, file=sys.stderr, flush=True)


class _Progress:
    """tqdm bar on a terminal; a plain log line every so often otherwise (nohup logs stay readable)."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.enabled, self.total, self.bar = enabled, total, None
        self.last_line = self.t0 = time.time()
        self.first = start
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True, file=sys.stderr)

    def update(self, step: int, loss: float, cps: float, epoch: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"loss {loss:.3f} ({loss / LN2:.2f} bpc) {cps:,.0f} chars/s ep {epoch:.2f}",
                                     refresh=False)
        elif time.time() - self.last_line > 30 or step == self.total:
            self.last_line = time.time()
            rate = (step - self.first) / max(time.time() - self.t0, 1e-9)
            eta = (self.total - step) / max(rate, 1e-9)
            _log(f"step {step}/{self.total} epoch {epoch:.2f} loss {loss:.4f} ({loss / LN2:.3f} bpc) "
                 f"{cps:,.0f} chars/s ETA {eta / 60:.1f} min")

    def write(self, msg: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            _log(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- the loop

@dataclass
class TrainResult:
    out: Path
    step: int
    best_val_loss: float
    final_val_loss: float
    chars_per_s: float
    stopped: str


RESUME_OVERRIDABLE = ("max_epochs", "max_iters", "max_time", "device", "threads", "eval_every")


def train(cfg: TrainConfig, resume: str | None = None, stop_at: int | None = None,
          progress: bool = True, overrides: dict | None = None) -> TrainResult:
    """Train (or resume) a model; returns where the checkpoints are and the final numbers.

    `stop_at` stops early after that many iterations as if interrupted (the
    schedule still follows max_epochs/max_iters), saving `latest/`. On resume the recipe is the
    checkpoint's; only RESUME_OVERRIDABLE settings change: those in `overrides` when given (the CLI
    passes the options typed on the command line), else those of `cfg` that differ from the defaults. Under
    torchrun the process group this opens is closed again on the way out, after
    a barrier when every rank finished cleanly (rank 0 may still be saving).
    """
    retain_freed_memory()  # large per-step buffers are reused instead of page-faulted anew (probe/runtime/heap.py)
    opened = {"group": False}
    try:
        result = _train(cfg, resume, stop_at, progress, opened, overrides)
    except BaseException:
        _close_process_group(opened, barrier=False)
        raise
    _close_process_group(opened, barrier=True)
    return result


def _close_process_group(opened: dict, barrier: bool) -> None:
    """Destroy the process group `_train` opened; an exiting gloo rank left open can abort at shutdown."""
    if not opened["group"]:
        return
    import gc

    import torch.distributed as dist
    if dist.is_initialized():
        if barrier:
            dist.barrier()
        gc.collect()  # frees the DDP wrapper (its reducer holds the group), so gloo's threads stop here
        dist.destroy_process_group()
        gc.collect()
    opened["group"] = False


def _train(cfg: TrainConfig, resume: str | None, stop_at: int | None, progress: bool,
           opened: dict, overrides: dict | None = None) -> TrainResult:
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    resumed = None
    if resume:
        resumed = ckpt.load(resume, which="latest", with_trainer=True)
        saved = TrainConfig.from_json(resumed.meta["train_config"])
        # stop conditions, device and threads may change on resume; the recipe may not
        if overrides is None:
            overrides = {name: getattr(cfg, name) for name in RESUME_OVERRIDABLE
                         if getattr(cfg, name) != getattr(TrainConfig, name, None)}
        for name, value in overrides.items():
            if name in RESUME_OVERRIDABLE and value is not None:
                setattr(saved, name, value)
        saved.out = str(Path(resume) if (Path(resume) / "latest").exists() else Path(resume).parent)
        cfg = saved
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device, local_rank)
    if world > 1:
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            opened["group"] = True
    torch.manual_seed(cfg.seed)
    data = load_data(cfg, vocab=resumed.vocab if resumed else None)
    if resumed and data.source["sha256"] != resumed.meta["data"]["sha256"]:
        raise ProbeError(f"{cfg.data} changed since the checkpoint was written (sha256 differs)")
    train_ids, val_ids = data.part("train"), data.part("val")
    if len(val_ids) < 2:
        raise ProbeError(f"validation split of {cfg.data} is empty ({data.split.n} characters); raise --val-frac")
    batches = StreamBatches(train_ids, cfg.batch_size, cfg.seq_length, rank, world)
    total = cfg.max_iters or max(1, int(round(cfg.max_epochs * len(batches))))
    model = CharRNN(cfg.model_config(data.vocab.size)).to(device)
    opt = make_optimizer(model, cfg)
    step, lr_scale, metrics, samples, best_val, rollbacks = 0, 1.0, [], [], float("inf"), 0
    state = None
    if resumed:
        model.load_state_dict(resumed.model.state_dict())
        tt, tj = resumed.trainer_tensors, resumed.trainer_json
        restore_optimizer(opt, tt, tj["optimizer"], device)
        step, lr_scale, rollbacks = tj["step"], tj["lr_scale"], tj.get("rollbacks", 0)
        metrics, samples = resumed.meta.get("metrics", []), resumed.meta.get("samples", [])
        best_val = resumed.meta.get("best_val_loss", float("inf"))
        torch.set_rng_state(tt["rng.cpu"])
        if device.type == "cuda" and "rng.cuda" in tt:
            torch.cuda.set_rng_state(tt["rng.cuda"], device)
        if any(k.startswith("state.") for k in tt):
            st = {k[6:]: v for k, v in tt.items() if k.startswith("state.")}
            state = state_from_tensors(st, cfg.model, cfg.num_layers, device)
        _log(f"resuming {resume} at step {step}/{total}", rank)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    out = Path(cfg.out)
    if not resumed:  # every rank checks, so that none waits forever for a rank that refused
        if (out / "latest").exists() or (out / "best").exists():
            raise ProbeError(f"{out} already holds a run; use --resume {out} or another --out")
    if rank == 0:
        _log(f"{cfg.model} {cfg.num_layers}x{cfg.rnn_size}, {model.num_params():,} parameters, "
             f"vocab {data.vocab.kind} ({data.vocab.size}), train {len(train_ids):,} / val {len(val_ids):,} "
             f"symbols, {len(batches)} iterations an epoch, {total} in all, device {device}"
             f"{' bf16' if cfg.bf16 else ''}{f', {world} ranks' if world > 1 else ''}")

    def meta() -> dict:
        return {"model_config": model.cfg.to_json(), "train_config": asdict(cfg), "vocab": data.vocab.to_json(),
                "data": dict(data.source, split=data.split.to_json()), "step": step,
                "epoch": step / len(batches), "metrics": metrics, "samples": samples,
                "best_val_loss": best_val, "num_params": model.num_params(),
                "torch": torch.__version__, "device": str(device)}

    def save(which: list[str]) -> None:
        if rank != 0:
            return
        tensors = dict(_rng_tensors(device))
        opt_t, opt_j = optimizer_tensors(opt)
        tensors.update(opt_t)
        if state is not None:
            tensors.update({f"state.{k}": v for k, v in state_tensors(state).items()})
        tj = {"step": step, "lr_scale": lr_scale, "rollbacks": rollbacks, "optimizer": opt_j}
        for w in which:
            ckpt.save(out / w, model, meta(), tensors, tj)

    stop_reason = {"why": ""}

    def on_signal(signum, frame):  # finish the current step, save, exit
        stop_reason["why"] = signal.Signals(signum).name

    old_handlers = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old_handlers[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread
            pass

    budget = parse_duration(cfg.max_time)
    t_start = time.time()
    time_before = metrics[-1]["time"] if metrics and resumed else 0.0  # wall time of the earlier sessions
    bar = _Progress(total, step, progress and rank == 0)
    ema, snap, window_loss, window_n, window_t = None, None, 0.0, 0, time.time()
    chars_per_step = cfg.batch_size * cfg.seq_length * world
    last_val, cps = float("nan"), 0.0
    model.train()
    try:
        while step < total:
            i = step % len(batches)
            if i == 0:
                state = None  # a new epoch starts the streams over
            if snap is None or (step % 100 == 0 and snap["step"] != step):
                snap = {"step": step, "model": copy.deepcopy(model.state_dict()),
                        "opt": copy.deepcopy(opt.state_dict()), "state": state, "rng": torch.get_rng_state(),
                        "ema": ema}
            x, y = (t.to(device, non_blocking=True) for t in batches.get(i))
            lr = lr_at(cfg, step, total) * lr_scale
            for g in opt.param_groups:
                g["lr"] = lr
            t0 = time.time()
            with autocast(device, cfg.bf16):
                logits, new_state = net(x, state)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            lv = loss.detach()
            if world > 1:
                import torch.distributed as dist
                dist.all_reduce(lv)
                lv = lv / world
            lv = float(lv)
            spike = not math.isfinite(lv) or (
                ema is not None and step > cfg.warmup_iters and lv > ema + max(cfg.spike_nats, 0.5 * ema))
            if spike:
                rollbacks += 1
                if rollbacks > cfg.max_rollbacks:
                    raise ProbeError(f"training diverged {rollbacks} times (loss {lv:.3g} at step {step}); "
                                     f"stopped; the last good checkpoint is in {out}")
                lr_scale *= 0.5
                bar.write(f"loss {lv:.3g} at step {step} (running level {ema if ema else float('nan'):.3f}): "
                          f"rolled back to step {snap['step']}, learning rate x{lr_scale:g} "
                          f"(rollback {rollbacks}/{cfg.max_rollbacks})")
                model.load_state_dict(snap["model"])
                opt.load_state_dict(snap["opt"])
                state, step, ema = snap["state"], snap["step"], snap["ema"]
                torch.set_rng_state(snap["rng"])
                continue
            opt.step()
            state = CharRNN.detach(new_state)
            step += 1
            ema = lv if ema is None else 0.98 * ema + 0.02 * lv
            dt = time.time() - t0
            window_loss += lv
            window_n += 1
            cps = chars_per_step / max(dt, 1e-9) if cps == 0 else 0.9 * cps + 0.1 * chars_per_step / max(dt, 1e-9)
            bar.update(step, ema, cps, step / len(batches))
            timed_out = budget is not None and time.time() - t_start > budget
            stopping = stop_reason["why"] or timed_out or (stop_at is not None and step >= stop_at)
            if step % cfg.eval_every == 0 or step == total or stopping:
                elapsed = time.time() - window_t
                last_val = evaluate(model, val_ids, device, cfg.bf16)
                rec = {"step": step, "epoch": round(step / len(batches), 4),
                       "train_loss": window_loss / max(window_n, 1), "val_loss": last_val,
                       "val_bpc": last_val / LN2, "lr": lr, "chars_per_s": window_n * chars_per_step / max(elapsed, 1e-9),
                       "time": time.time() - t_start + time_before}
                metrics.append(rec)
                window_loss, window_n, window_t = 0.0, 0, time.time()
                if rank == 0:
                    prime = data.vocab.decode(val_ids[:1])
                    text = sample_text(model, data.vocab, prime, cfg.sample_length, temperature=1.0,
                                       seed=cfg.seed + step)
                    samples.append({"step": step, "temperature": 1.0, "prime": prime, "text": text})
                better = last_val < best_val
                best_val = min(best_val, last_val)
                bar.write(f"step {step}/{total} epoch {rec['epoch']:.2f}: train {rec['train_loss'] / LN2:.3f} "
                          f"val {last_val:.4f} nats = {last_val / LN2:.4f} bpc{' (best)' if better else ''}, "
                          f"lr {lr:.2e}, {rec['chars_per_s']:,.0f} chars/s")
                save(["latest", "best"] if better else ["latest"])
            if stopping:
                why = stop_reason["why"] or ("time budget" if timed_out else f"stop at {stop_at}")
                bar.write(f"stopped ({why}) at step {step}; resume with: probe train --resume {out}")
                return TrainResult(out, step, best_val, last_val, cps, why)
    finally:
        bar.close()
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
    _log(f"done: {step} iterations, best val {best_val:.4f} nats = {best_val / LN2:.4f} bits per "
         f"{data.vocab.kind}; checkpoints in {out}", rank)
    if world > 1:  # lets a user (and the test) see that every rank ends with the same weights
        import hashlib
        h = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())).hexdigest()
        print(f"rank {rank} weights sha256 {h}", file=sys.stderr, flush=True)
    return TrainResult(out, step, best_val, last_val, cps, "done")
