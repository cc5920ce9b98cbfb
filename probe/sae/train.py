"""Train a top-k SAE on one site of a recording (or on the model's states streamed over its training split).

    res = train_sae("recordings/wiki-val", "L2.h", out="saes/wiki-L2h", epochs=10, progress=True)
    res.metrics["fvu"], res.metrics["loss_recovered"]["recovered"]

Rows: the recording's last `held_out` fraction of rows is held out (never trained on: the metrics are computed
there), the rest are the training rows; with `stream=CHECKPOINT` the training rows are instead that model's
states over its training split (`probe.sae.data.StreamRows`), and the recording's last rows still the held-out.

Deterministic for a seed: the initial weights come from `seed`, each epoch's order from (seed, epoch), and the
step is exact arithmetic on one thread count. After every epoch the folder `out` is rewritten whole (weights,
config, the Adam state, the latents' last-fired counters: `probe.sae.io`), so an interrupted run resumed with
`resume=True` continues from its last finished epoch to the same weights as an uninterrupted one.

Optimiser: Adam (betas 0.9, 0.999, eps 6.25e-10 as in Gao et al.), learning rate `lr` held constant, then
decayed linearly to zero over the last `lr_decay` fraction of the steps. After each step the decoder's rows
are scaled back to unit norm (their gradients were projected to keep the norm first).
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from probe.checks import ParamError, check_int, check_number
from probe.errors import ProbeError
from probe.names import Site, parse_array
from probe.sae import io
from probe.sae.data import RecordingRows, StreamRows
from probe.sae.metrics import held_out_metrics, loss_recovered
from probe.sae.model import TopKSAE, geometric_median
from probe.sae.step import project_decoder_grad_, sae_grads

INIT_ROWS = 8192  # rows for the initial b_dec (geometric median) and the data's variance
ADAM = dict(betas=(0.9, 0.999), eps=6.25e-10)
# Settings a resumed run must share with the run it continues (epochs may grow).
RESUME_KEYS = ("d_in", "d_sae", "k", "seed", "batch_size", "lr", "k_aux", "aux_coef", "dead_after", "lr_decay",
               "held_out", "site")


@dataclass
class SAETrainResult:
    """A trained SAE, where it was written, and how it went (per-epoch history, held-out metrics)."""

    path: Path
    sae: TopKSAE
    site: Site
    epochs: int
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    metrics: dict | None = None
    resumed_from: int = 0  # epochs already done when this call started

    def to_dict(self) -> dict:
        return {"path": str(self.path), "site": self.site.label, "d_in": self.sae.d_in, "d_sae": self.sae.d_sae,
                "k": self.sae.k, "epochs": self.epochs, "steps": self.steps, "seconds": round(self.seconds, 2),
                "resumed_from": self.resumed_from, "history": self.history, "metrics": self.metrics}


def resolve_site(rec, site: Site | str) -> Site:
    """`site` ("L2.h" or a Site) checked against the recording: a layer's h or c that it holds."""
    if isinstance(site, Site):
        s = site
    else:
        m = re.fullmatch(r"L(\d+)\.([a-z])", str(site).strip())  # the label form, L0.f for a gate too
        s = Site(int(m.group(1)), m.group(2)) if m else parse_array(str(site))
    if s.kind not in ("h", "c"):
        raise ParamError("site", f"{s}: an SAE reads a layer's state, h or c (not a gate)")
    if not rec.has(s.array):
        have = ", ".join(rec.arrays_for([k for k in rec.kinds if k in ("h", "c")]))
        raise ParamError("site", f"{s} is not in recording {rec.path.name} (it holds {have})")
    return s


def _model_name(path: str | None) -> str | None:
    if not path:
        return None
    p = Path(path)
    return p.parent.name if p.name in ("best", "latest") else p.name


def _adam(params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    try:
        return torch.optim.Adam(params, lr=lr, fused=True, **ADAM)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, **ADAM)


def _lr_at(step: int, total: int, lr: float, decay: float) -> float:
    tail = decay * total
    return lr if tail <= 0 else lr * min(1.0, (total - step) / tail)


def _trainer_state(sae: TopKSAE, opt: torch.optim.Optimizer, since_fired: torch.Tensor, meta: dict
                   ) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"since_fired": since_fired.clone()}
    for name in io.PARAMS:
        st = opt.state.get(getattr(sae, name), {})
        for key in ("step", "exp_avg", "exp_avg_sq"):
            if key in st:
                v = st[key]
                tensors[f"adam.{name}.{key}"] = (v if torch.is_tensor(v) else torch.tensor(float(v))).clone()
    return tensors, meta


def _restore_optimizer(sae: TopKSAE, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    for name in io.PARAMS:
        p = getattr(sae, name)
        st = {key: tensors[f"adam.{name}.{key}"] for key in ("step", "exp_avg", "exp_avg_sq")
              if f"adam.{name}.{key}" in tensors}
        if st:
            opt.state[p] = st


def _check_out(out: Path, resume: bool, overwrite: bool) -> tuple[dict, dict] | None:
    """The resume state in `out` (resume=True), or None for a fresh run; refuses to replace what it should not."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise ParamError("out", f"{out} is a file, not an SAE folder")
    is_sae = (out / io.PROBE).exists()
    if not is_sae and any(out.iterdir()):
        raise ParamError("out", f"{out} exists and is not an SAE folder; refusing to replace it")
    if resume and is_sae:
        state = io.load_trainer(out)
        if state is None:
            raise ParamError("out", f"{out} holds no resume state (trainer.json): it cannot be resumed")
        return state
    if is_sae and not overwrite:
        raise ParamError("out", f"{out} already holds an SAE; pass {{resume=True}} to continue its training or "
                                f"{{overwrite=True}} to replace it", advice=True, others=("resume", "overwrite"))
    return None


def train_sae(source, site: Site | str, *, d_sae: int = 4096, k: int = 32, epochs: int = 10,
              batch_size: int = 1024, lr: float = 1e-3, seed: int = 0, out: str | Path, resume: bool = False,
              overwrite: bool = False, progress: bool = False, stream=None, held_out: float = 0.1,
              k_aux: int | None = None, aux_coef: float = 1 / 32, dead_after: int = 100_000,
              lr_decay: float = 0.2, checkpoint=None, evaluate_loss: bool = True, loss_symbols: int = 50_000,
              stream_streams: int = 16, stream_max_rows: int | None = None,
              keep_trainer: bool = True) -> SAETrainResult:
    """Train a TopKSAE (d_sae features, k active a row) on `site` ("L2.h") of the recording `source` and write
    it to the folder `out`; returns an SAETrainResult (its `metrics` as in metrics.json).

    stream: a checkpoint (the recording's model) to stream training rows from over its training split instead
    of the recording's rows (`stream_streams` segments side by side; `stream_max_rows` rows an epoch at most).
    held_out: fraction of the recording's rows (its last ones) kept for the metrics. k_aux (default d_in // 2),
    aux_coef, dead_after (rows without firing that make a latent dead): the AuxK loss. checkpoint: the model for
    loss recovered (default: the one the recording names); evaluate_loss=False skips it. loss_symbols: at most
    this many held-out symbols for loss recovered. keep_trainer=False: the finished folder keeps no resume state
    (trainer.*, twice the weights' size; the epochs' folders still have it, so an interrupted run resumes).
    """
    from probe.record.recording import Recording
    from probe.record.source import recording_checkpoint

    d_sae = check_int("d_sae", d_sae, min=1)
    k = check_int("k", k, min=1)
    if k > d_sae:
        raise ParamError("k", f"is {k}, more than the dictionary's {d_sae} features (d_sae)")
    epochs = check_int("epochs", epochs, min=1)
    batch_size = check_int("batch_size", batch_size, min=1)
    lr = check_number("lr", lr, min=0, min_open=True)
    seed = check_int("seed", seed, min=0)
    held_out = check_number("held_out", held_out, min=0, max=1, min_open=True, max_open=True)
    aux_coef = check_number("aux_coef", aux_coef, min=0)
    dead_after = check_int("dead_after", dead_after, min=1)
    lr_decay = check_number("lr_decay", lr_decay, min=0, max=1)
    loss_symbols = check_int("loss_symbols", loss_symbols, min=2)
    rec = source if hasattr(source, "meta") and hasattr(source, "array") else Recording.open(source)
    site = resolve_site(rec, site)
    d_in = rec.hidden_size
    k_aux = d_in // 2 if k_aux is None else check_int("k_aux", k_aux, min=0)
    out = Path(out)
    state = _check_out(out, resume, overwrite)

    n = rec.n_rows
    n_held = max(1, int(round(n * held_out)))
    n_train = n - n_held
    if n_train < 1:
        raise ProbeError(f"recording {rec.path.name} has {n} row(s): too few to hold out {held_out:g} and train")
    eval_ck = recording_checkpoint(rec, checkpoint) if evaluate_loss else None
    named = rec.meta.get("checkpoint") or {}
    src = {"weights_sha256": named.get("sha256"), "cell": rec.cell, "rnn_size": d_in, "num_layers": rec.num_layers,
           "model_name": _model_name(named.get("path")), "checkpoint": named.get("path"), "recording": str(rec.path),
           "text_sha256": (rec.meta.get("text") or {}).get("sha256"), "train_rows": [0, n_train],
           "held_out_rows": [n_train, n], "stream": None}
    if stream is not None:
        from probe.record.recorder import resolve_text
        sck = recording_checkpoint(rec, stream, param="stream")
        train_ids = resolve_text(sck, None, part="train").ids
        rows = StreamRows(sck.model, train_ids, site, streams=stream_streams, max_rows=stream_max_rows)
        src["train_rows"] = None
        src["stream"] = {"checkpoint": str(sck.path), "part": "train", "symbols": int(len(train_ids)),
                         "streams": rows.streams, "steps": rows.steps, "warmup": rows.warmup,
                         "rows_per_epoch": rows.n_rows}
    else:
        rows = RecordingRows(rec.array(site.array), 0, n_train)
    settings = {"d_in": d_in, "d_sae": d_sae, "k": k, "seed": seed, "batch_size": batch_size, "lr": lr,
                "k_aux": k_aux, "aux_coef": aux_coef, "dead_after": dead_after, "lr_decay": lr_decay,
                "held_out": held_out, "site": site.label}

    torch.manual_seed(seed)
    sae = TopKSAE(d_in, d_sae, k, seed=seed)
    opt = _adam(list(sae.parameters()), lr)
    since_fired = torch.zeros(d_sae, dtype=torch.int64)
    done, step, seconds, history = 0, 0, 0.0, []
    if state is not None:
        tensors, meta = state
        for key in RESUME_KEYS:
            if meta.get("settings", {}).get(key) != settings[key]:
                raise ParamError("resume", f"{out} was trained with {key}={meta.get('settings', {}).get(key)!r}, "
                                           f"not {settings[key]!r}: resume it with the same settings")
        if meta.get("source_key") != _source_key(src):
            raise ParamError("resume", f"{out} was trained on other rows (another recording, model or stream)")
        loaded = io.load_sae(out)
        with torch.no_grad():
            for name in io.PARAMS:
                getattr(sae, name).copy_(getattr(loaded.sae, name))
        _restore_optimizer(sae, opt, tensors)
        since_fired.copy_(tensors["since_fired"])
        variance = float(meta["variance"])
        done, step, seconds = int(meta["epochs_done"]), int(meta["step"]), float(meta["seconds"])
        history = list(meta.get("history", []))
    else:
        sample = rows.sample(INIT_ROWS, seed)
        variance = float(sample.double().var(0, unbiased=False).sum())
        if not variance > 0:
            raise ProbeError(f"the site {site}'s training rows do not vary: nothing to learn")
        with torch.no_grad():
            sae.b_dec.copy_(geometric_median(sample))
    resumed_from = done
    steps_per_epoch = math.ceil(rows.n_rows / batch_size)
    total = epochs * steps_per_epoch
    source_meta = dict(src)

    def trainer_meta(status: str) -> dict:
        return {"settings": settings, "source_key": _source_key(src), "variance": variance, "epochs_done": done,
                "epochs": epochs, "step": step, "seconds": seconds, "status": status, "history": history}

    def train_info(status: str) -> dict:
        return {"status": status, **settings, "epochs": epochs, "epochs_done": done, "steps": step,
                "rows_per_epoch": rows.n_rows, "steps_per_epoch": steps_per_epoch, "optimizer": "adam",
                "adam": {"betas": list(ADAM["betas"]), "eps": ADAM["eps"]}, "seconds": round(seconds, 2),
                "threads": torch.get_num_threads(), "history": history}

    bar = None
    if progress and done < epochs:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, initial=min(step, total), unit="step", desc=f"SAE {site}", dynamic_ncols=True)
    params = {name: getattr(sae, name) for name in io.PARAMS}
    h = None  # the held-out metrics of the last epoch
    try:
        while done < epochs:
            t0 = time.perf_counter()
            fvus, auxes = [], []
            for x in rows.batches(done, seed, batch_size):
                dead = since_fired >= dead_after
                g = sae_grads(sae, x, variance, dead if bool(dead.any()) else None, k_aux, aux_coef)
                project_decoder_grad_(sae, g.grads["W_dec"])
                for name, p in params.items():
                    p.grad = g.grads[name]
                for group in opt.param_groups:
                    group["lr"] = _lr_at(step, total, lr, lr_decay)
                opt.step()
                sae.normalize_decoder_()
                since_fired += x.shape[0]
                since_fired[g.fired] = 0
                step += 1
                fvus.append(g.fvu)
                auxes.append(g.aux)
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0:
                        bar.set_postfix(epoch=done + 1, fvu=f"{np.mean(fvus[-10:]):.4f}",
                                        dead=int((since_fired >= dead_after).sum()), refresh=False)
            sae.zero_grad(set_to_none=True)
            done += 1
            loop_seconds = time.perf_counter() - t0
            seconds += loop_seconds
            h = held_out_metrics(sae, rec.array(site.array), n_train, n)
            history.append({"epoch": done, "step": step, "train_fvu": float(np.mean(fvus)) if fvus else None,
                            "aux_loss": float(np.mean(auxes)) if auxes else None, "held_out_fvu": h.to_dict()["fvu"],
                            "mean_l0": h.mean_l0, "dead_held_out": h.dead,
                            "dead_train": int((since_fired >= dead_after).sum()),
                            "train_seconds": round(loop_seconds, 3), "seconds": round(time.perf_counter() - t0, 3)})
            if bar is not None:
                bar.set_postfix(epoch=done, held_out_fvu=f"{h.fvu:.4f}", dead=h.dead, refresh=True)
            io.save_sae(out, sae, site=site, source=source_meta, train_info=train_info("training"),
                        trainer=_trainer_state(sae, opt, since_fired, trainer_meta("training")))
    finally:
        if bar is not None:
            bar.close()
    sae.eval()
    final = io.load_sae(out) if (out / io.METRICS).exists() and resumed_from >= epochs else None
    if final is not None and (final.train or {}).get("status") == "done":
        return SAETrainResult(path=out, sae=final.sae, site=site, epochs=done, steps=step, seconds=seconds,
                              history=history, metrics=final.metrics, resumed_from=resumed_from)
    if h is None:
        h = held_out_metrics(sae, rec.array(site.array), n_train, n)
    metrics = h.to_dict()
    if eval_ck is not None:
        ids = np.asarray(rec.array("ids")[n_train:min(n, n_train + loss_symbols)])
        metrics["loss_recovered"] = loss_recovered(eval_ck.model, ids, site, sae).to_dict() if len(ids) >= 2 else None
    sparsity = torch.from_numpy(np.log10(h.freq + 1e-10))
    io.save_sae(out, sae, site=site, source=source_meta, train_info=train_info("done"), metrics=metrics,
                sparsity=sparsity,
                trainer=_trainer_state(sae, opt, since_fired, trainer_meta("done")) if keep_trainer else None)
    return SAETrainResult(path=out, sae=sae, site=site, epochs=done, steps=step, seconds=seconds, history=history,
                          metrics=metrics, resumed_from=resumed_from)


def _source_key(src: dict) -> dict:
    """What identifies the training and held-out rows (a resumed run must read the same)."""
    return {k: src.get(k) for k in ("weights_sha256", "text_sha256", "train_rows", "held_out_rows")} | {
        "stream": None if src.get("stream") is None else {k: v for k, v in src["stream"].items() if k != "checkpoint"}}
