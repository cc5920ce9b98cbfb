"""The training loop: truncated BPTT over contiguous streams, eval, samples, checkpoints, resume.

Read top to bottom: `_train()` settles the recipe (config.py: `TrainConfig`, a resumed run keeps its
own), sets up (setup.py: data, model, optimizer, the resumed state), then is the loop itself, one short
comment per block; the helpers of the loop follow it.
"""
from __future__ import annotations

import copy
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from probe.model import checkpoint as ckpt
from probe.data.batches import eval_streams
from probe.errors import ProbeError
from probe.runtime.threads import refresh_threads
from probe.model.charrnn import CharRNN, state_tensors
from probe.model.sampling import sample_text
from probe.train.config import (  # noqa: F401 (re-exported: callers import the config from here)
    RESUME_OVERRIDABLE, TrainConfig, parse_duration, recipe)
from probe.train.setup import (  # noqa: F401 (some re-exported: tests and benchmarks import them from here)
    Data, Session, load_data, log, make_optimizer, optimizer_tensors, pick_device, restore_optimizer,
    rng_tensors, setup)

LN2 = math.log(2)


# --------------------------------------------------------------------------- the loop

@dataclass
class TrainResult:
    out: Path
    step: int
    best_val_loss: float
    final_val_loss: float
    chars_per_s: float
    stopped: str


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
    # setup: the recipe (a resumed run keeps its own), ranks and device, data, model, optimizer, resumed state
    cfg, point = recipe(cfg, resume, overrides)
    s = setup(cfg, point, opened)
    model, opt, batches = s.model, s.opt, s.batches
    budget = parse_duration(cfg.max_time)
    t_start = time.time()
    window = Window()  # training loss and time since the last evaluation
    ema, snap, cps, last_val = None, None, 0.0, float("nan")
    model.train()
    with StopSignals() as stop, _Progress(s.total, s.step, progress and s.rank == 0) as bar:
        while s.step < s.total:
            # a new epoch starts every stream over
            i = s.step % len(batches)
            if i == 0:
                s.state = None
            # every 100 steps, a snapshot to roll back to should the loss spike
            if snap is None or (s.step % 100 == 0 and snap.step != s.step):
                snap = Snapshot.take(s, ema)
            # CPU threads follow the cores other processes leave free (checked every 2 s at most)
            refresh_threads()
            # this step's learning rate; forward and backward over one window of every stream
            x, y = (t.to(s.device, non_blocking=True) for t in batches.get(i))
            lr = lr_at(cfg, s.step, s.total) * s.lr_scale
            for g in opt.param_groups:
                g["lr"] = lr
            t0 = time.time()
            with autocast(s.device, cfg.bf16):
                logits, new_state = s.net(x, s.state)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            lv = mean_over_ranks(loss, s.world)
            # a loss that is not finite or spikes: back to the snapshot, at half the learning rate
            if is_spike(lv, ema, s.step, cfg):
                roll_back(s, snap, lv, ema, bar)
                ema = snap.ema
                continue
            # the update; the hidden state carries over to the next window
            opt.step()
            s.state = CharRNN.detach(new_state)
            s.step += 1
            ema = lv if ema is None else 0.98 * ema + 0.02 * lv
            # progress: running loss and speed
            rate = s.chars_per_step / max(time.time() - t0, 1e-9)
            cps = rate if cps == 0 else 0.9 * cps + 0.1 * rate
            window.add(lv)
            bar.update(s.step, ema, cps, s.epoch())
            # evaluate, sample and save every eval_every steps, at the end, and when stopping
            timed_out = budget is not None and time.time() - t_start > budget
            stopping = stop.why or timed_out or (stop_at is not None and s.step >= stop_at)
            if s.step % cfg.eval_every == 0 or s.step == s.total or stopping:
                last_val = evaluate_and_save(s, window, lr, t_start, bar)
            if stopping:
                why = stop.why or ("time budget" if timed_out else f"stop at {stop_at}")
                bar.write(f"stopped ({why}) at step {s.step}; resume with: probe train --resume {s.out}")
                return TrainResult(s.out, s.step, s.best_val, last_val, cps, why)
    report_done(s)
    return TrainResult(s.out, s.step, s.best_val, last_val, cps, "done")


# --------------------------------------------------------------------------- helpers of the loop

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


def mean_over_ranks(loss: torch.Tensor, world: int) -> float:
    """The step's loss, averaged over the ranks."""
    lv = loss.detach()
    if world > 1:
        import torch.distributed as dist
        dist.all_reduce(lv)
        lv = lv / world
    return float(lv)


def is_spike(lv: float, ema: float | None, step: int, cfg: TrainConfig) -> bool:
    """Not finite, or (after the warm-up) spike_nats and 50% above the running level."""
    return not math.isfinite(lv) or (
        ema is not None and step > cfg.warmup_iters and lv > ema + max(cfg.spike_nats, 0.5 * ema))


@dataclass
class Snapshot:
    """What a rollback returns to: weights, optimizer, carried state, RNG and loss level at `step`."""
    step: int
    model: dict
    opt: dict
    state: object
    rng: torch.Tensor
    ema: float | None

    @classmethod
    def take(cls, s: Session, ema: float | None) -> "Snapshot":
        return cls(s.step, copy.deepcopy(s.model.state_dict()), copy.deepcopy(s.opt.state_dict()), s.state,
                   torch.get_rng_state(), ema)


def roll_back(s: Session, snap: Snapshot, lv: float, ema: float | None, bar: "_Progress") -> None:
    """Back to `snap` with half the learning rate; a ProbeError after max_rollbacks of them."""
    s.rollbacks += 1
    if s.rollbacks > s.cfg.max_rollbacks:
        raise ProbeError(f"training diverged {s.rollbacks} times (loss {lv:.3g} at step {s.step}); "
                         f"stopped; the last good checkpoint is in {s.out}")
    s.lr_scale *= 0.5
    bar.write(f"loss {lv:.3g} at step {s.step} (running level {ema if ema else float('nan'):.3f}): "
              f"rolled back to step {snap.step}, learning rate x{s.lr_scale:g} "
              f"(rollback {s.rollbacks}/{s.cfg.max_rollbacks})")
    s.model.load_state_dict(snap.model)
    s.opt.load_state_dict(snap.opt)
    s.state, s.step = snap.state, snap.step
    torch.set_rng_state(snap.rng)


@dataclass
class Window:
    """Training loss and wall time since the last evaluation."""
    loss: float = 0.0
    n: int = 0
    t: float = field(default_factory=time.time)

    def add(self, lv: float) -> None:
        self.loss += lv
        self.n += 1

    def reset(self) -> None:
        self.loss, self.n, self.t = 0.0, 0, time.time()


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


def evaluate_and_save(s: Session, window: Window, lr: float, t_start: float, bar: "_Progress") -> float:
    """Validate on the whole validation split, log a metrics line, sample, save latest/ (best/ when better)."""
    elapsed = time.time() - window.t
    val = evaluate(s.model, s.val_ids, s.device, s.cfg.bf16)
    rec = {"step": s.step, "epoch": round(s.epoch(), 4), "train_loss": window.loss / max(window.n, 1),
           "val_loss": val, "val_bpc": val / LN2, "lr": lr,
           "chars_per_s": window.n * s.chars_per_step / max(elapsed, 1e-9),
           "time": time.time() - t_start + s.time_before}
    s.metrics.append(rec)
    window.reset()
    if s.rank == 0:
        prime = s.data.vocab.decode(s.val_ids[:1])
        text = sample_text(s.model, s.data.vocab, prime, s.cfg.sample_length, temperature=1.0,
                           seed=s.cfg.seed + s.step)
        s.samples.append({"step": s.step, "temperature": 1.0, "prime": prime, "text": text})
    better = val < s.best_val
    s.best_val = min(s.best_val, val)
    bar.write(f"step {s.step}/{s.total} epoch {rec['epoch']:.2f}: train {rec['train_loss'] / LN2:.3f} "
              f"val {val:.4f} nats = {val / LN2:.4f} bpc{' (best)' if better else ''}, "
              f"lr {lr:.2e}, {rec['chars_per_s']:,.0f} chars/s")
    save_checkpoints(s, ["latest", "best"] if better else ["latest"])
    return val


def save_checkpoints(s: Session, which: list[str]) -> None:
    """Rank 0 writes the run's state to each of `which` (latest/, best/) inside the run folder."""
    if s.rank != 0:
        return
    tensors = dict(rng_tensors(s.device))
    opt_t, opt_j = optimizer_tensors(s.opt)
    tensors.update(opt_t)
    if s.state is not None:
        tensors.update({f"state.{k}": v for k, v in state_tensors(s.state).items()})
    tj = {"step": s.step, "lr_scale": s.lr_scale, "rollbacks": s.rollbacks, "optimizer": opt_j}
    for w in which:
        ckpt.save(s.out / w, s.model, checkpoint_meta(s), tensors, tj)


def checkpoint_meta(s: Session) -> dict:
    """checkpoint.json's content (checkpoint.save adds the format, the file hashes and the time)."""
    return {"model_config": s.model.cfg.to_json(), "train_config": asdict(s.cfg), "vocab": s.data.vocab.to_json(),
            "data": dict(s.data.source, split=s.data.split.to_json()), "step": s.step,
            "epoch": s.epoch(), "metrics": s.metrics, "samples": s.samples,
            "best_val_loss": s.best_val, "num_params": s.model.num_params(),
            "torch": torch.__version__, "device": str(s.device)}


def report_done(s: Session) -> None:
    log(f"done: {s.step} iterations, best val {s.best_val:.4f} nats = {s.best_val / LN2:.4f} bits per "
        f"{s.data.vocab.encoding}; checkpoints in {s.out}", s.rank)
    if s.world > 1:  # lets a user (and the test) see that every rank ends with the same weights
        import hashlib
        h = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in s.model.parameters())).hexdigest()
        print(f"rank {s.rank} weights sha256 {h}", file=sys.stderr, flush=True)


class StopSignals:
    """While inside: SIGINT and SIGTERM only set `why`, so the loop finishes its step, saves and returns."""

    def __init__(self):
        self.why, self._old = "", {}

    def __enter__(self) -> "StopSignals":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread
                pass
        return self

    def _on_signal(self, signum, frame) -> None:
        self.why = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)


class _Progress:
    """tqdm bar on a terminal; a plain log line every so often otherwise (nohup logs stay readable)."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.enabled, self.total, self.bar = enabled, total, None
        self.last_line = self.t0 = time.time()
        self.first = start
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True, file=sys.stderr)

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
            log(f"step {step}/{self.total} epoch {epoch:.2f} loss {loss:.4f} ({loss / LN2:.3f} bpc) "
                f"{cps:,.0f} chars/s ETA {eta / 60:.1f} min")

    def write(self, msg: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            log(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
