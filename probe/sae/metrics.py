"""An SAE's held-out metrics, and loss recovered: the model run with a site replaced by its reconstruction.

Held out (`held_out_metrics`, over rows the SAE never trained on): the fraction of variance unexplained
FVU = sum |x - x_hat|^2 / sum |x - mean x|^2, the mean number of active features a row (L0), dead features
(never active on these rows) and dense ones (active on more than `dense_frac` of them).

Loss recovered (`loss_recovered`): the model runs over a text in three streams of one batch through the
hook walk (`probe.model.hooks`), the site stepped one symbol at a time in all three: clean (the state as
the model computes it), reconstructed (the state replaced by the SAE's reconstruction after every step: the
next step and the layers above see the reconstruction), and mean-ablated (the state replaced by its mean over
the text). bits/char = mean -log2 p(next symbol); recovered = (ablated - reconstructed) / (ablated - clean):
1 when the reconstruction costs nothing, 0 when it is no better than the mean. The clean stream runs the
same arithmetic as the other two, so an identity reconstruction recovers exactly 1.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from probe.errors import ProbeError
from probe.names import Site
from probe.sae.model import TopKSAE

LN2 = math.log(2.0)
CHUNK = 1024  # symbols per walk


def _finite(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


@dataclass
class HeldOutMetrics:
    """FVU, mean L0, dead and dense features over `rows` held-out rows; `freq`: each feature's firing rate."""

    rows: int
    fvu: float
    mse: float  # mean squared error per row (summed over features)
    mean_l0: float
    dead: int
    dense: int
    dense_frac: float
    freq: np.ndarray

    def to_dict(self) -> dict:
        return {"rows": self.rows, "fvu": _finite(self.fvu), "mse": _finite(self.mse), "mean_l0": self.mean_l0,
                "dead_features": self.dead, "dense_features": self.dense, "dense_threshold": self.dense_frac,
                "features": int(len(self.freq))}


@torch.no_grad()
def held_out_metrics(sae: TopKSAE, array, start: int = 0, stop: int | None = None, *, chunk: int = 8192,
                     dense_frac: float = 0.1) -> HeldOutMetrics:
    """The metrics of `sae` on rows [start, stop) of `array` (a recording's memory map or any (rows, d_in))."""
    stop = array.shape[0] if stop is None else stop
    n = stop - start
    if n < 1:
        raise ProbeError(f"no held-out rows ({start}:{stop})")
    counts = torch.zeros(sae.d_sae, dtype=torch.int64)
    sx = torch.zeros(sae.d_in, dtype=torch.float64)
    sxx = sse = l0 = 0.0
    for a in range(start, stop, chunk):
        x = torch.from_numpy(np.array(array[a:min(a + chunk, stop)], dtype=np.float32))
        vals, idx = sae.encode_topk(x)
        x_hat = sae.decode_topk(vals, idx)
        active = vals > 0
        counts += torch.bincount(idx[active], minlength=sae.d_sae)
        l0 += float(active.sum())
        sse += float((x - x_hat).double().square().sum())
        sx += x.double().sum(0)
        sxx += float(x.double().square().sum())
    total = sxx - float(sx.square().sum()) / n
    freq = (counts.double() / n).numpy()
    return HeldOutMetrics(rows=n, fvu=sse / total if total > 0 else float("nan"), mse=sse / n, mean_l0=l0 / n,
                          dead=int((counts == 0).sum()), dense=int((freq > dense_frac).sum()), dense_frac=dense_frac,
                          freq=freq)


@dataclass
class LossRecovered:
    """bits/char of the model clean, with the site reconstructed and with it mean-ablated, over `symbols`."""

    site: str
    symbols: int
    clean_bits: float
    recon_bits: float
    ablated_bits: float
    seconds: float

    @property
    def recovered(self) -> float:
        gap = self.ablated_bits - self.clean_bits
        return (self.ablated_bits - self.recon_bits) / gap if gap != 0 else float("nan")

    @property
    def diverged(self) -> bool:
        """The reconstructed run's loss is not finite: fed back step after step, the state grew without bound."""
        return not math.isfinite(self.recon_bits)

    def to_dict(self) -> dict:
        return {"site": self.site, "symbols": self.symbols, "clean_bits": _finite(self.clean_bits),
                "recon_bits": _finite(self.recon_bits), "ablated_bits": _finite(self.ablated_bits),
                "recovered": _finite(self.recovered + 0.0), "diverged": self.diverged,
                "seconds": round(self.seconds, 3)}


def reconstruct_hook(sae: TopKSAE | Callable[[torch.Tensor], torch.Tensor], rows=None):
    """A step hook (`probe.model.hooks.StepHook`) that replaces the state by `sae`'s reconstruction in place:
    every row of the batch, or only `rows` (an int, slice or index list). `sae` may be any function of
    (rows, H) -> (rows, H) instead of an SAE."""
    fn = sae.reconstruct if isinstance(sae, TopKSAE) else sae
    sel = slice(None) if rows is None else ([rows] if isinstance(rows, int) else rows)

    def hook(state: torch.Tensor, t: int) -> torch.Tensor:
        state[sel] = fn(state[sel])
        return state
    return hook


def _check_site(model, site: Site) -> None:
    if site.kind not in ("h", "c") or (site.kind == "c" and model.cfg.model != "lstm"):
        raise ProbeError(f"site {site}: only a layer's h (or an LSTM's c) can be replaced step by step")
    if not 0 <= site.layer < model.cfg.num_layers:
        raise ProbeError(f"site {site}: the model has layers L0..L{model.cfg.num_layers - 1}")


@torch.no_grad()
def site_mean(model, ids: torch.Tensor, site: Site) -> torch.Tensor:
    """The mean of the site's state over the text `ids` (n,), one stream from a zero state."""
    from probe.model.hooks import run_with_hooks
    total = torch.zeros(model.cfg.rnn_size, dtype=torch.float64)
    state = None
    for a in range(0, len(ids), CHUNK):
        w = run_with_hooks(model, ids[a:a + CHUNK].view(1, -1), state, cache=[site.array], stop=site.layer + 1,
                           head=False)
        total += w.cache[site.array][0].double().sum(0)
        state = w.state
    return (total / len(ids)).float()


@torch.no_grad()
def loss_recovered(model, ids, site: Site, reconstruct: TopKSAE | Callable[[torch.Tensor], torch.Tensor],
                   *, mean: torch.Tensor | None = None) -> LossRecovered:
    """Run `model` over the symbol ids (n,) clean, with `site`'s state replaced by `reconstruct` after every
    step, and with it replaced by its mean over the text (`mean`, computed when None); see the module."""
    from probe.model.hooks import run_with_hooks
    t0 = time.perf_counter()
    _check_site(model, site)
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    n = len(ids)
    if n < 2:
        raise ProbeError(f"the text has {n} symbol(s): loss recovered needs at least 2 (one prediction)")
    mean = site_mean(model, ids, site) if mean is None else mean.float()
    recon = reconstruct_hook(reconstruct, rows=[1])

    def hook(state: torch.Tensor, t: int) -> torch.Tensor:
        recon(state, t)
        state[2] = mean
        return state

    sums = torch.zeros(3, dtype=torch.float64)
    state = None
    for a in range(0, n - 1, CHUNK):
        b = min(a + CHUNK, n - 1)
        w = run_with_hooks(model, ids[a:b].view(1, -1), state, step_hooks={site.array: hook}, streams=3)
        state = w.state
        logp = torch.log_softmax(w.logits.float(), dim=-1)
        target = ids[a + 1:b + 1].view(1, -1, 1).expand(3, -1, 1)
        sums += -logp.gather(-1, target).squeeze(-1).double().sum(1) / LN2
    bits = (sums / (n - 1)).tolist()
    return LossRecovered(site=site.label, symbols=n, clean_bits=bits[0], recon_bits=bits[1], ablated_bits=bits[2],
                         seconds=time.perf_counter() - t0)
