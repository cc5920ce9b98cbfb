"""One training step of a TopKSAE with its gradients computed by hand, sparse wherever the code is.

Only the encoder's forward matmul is dense (rows x d_in x d_sae). The decoder is a gather-and-sum over the
k kept latents (`embedding_bag`); the backward pass touches only the kept latents: the gradients of their
values are a sampled product (`torch.sparse.sampled_addmm`), and those of W_dec and W_enc one sparse-dense
product each (the code transposed to CSR, latent by latent). A dense autograd step costs five matmuls of the
encoder's size; this one costs one, plus work of size rows x k x d_in.

The loss (Gao et al. 2024): the squared error of the reconstruction over the data's total variance (so a
batch's loss is its fraction of variance unexplained) plus `aux_coef` times the AuxK loss: the dead latents'
(not fired in the last `dead_after` training rows) top `k_aux` pre-activations reconstruct the residual
x - x_hat, their squared error over the residual's. The residual is a constant there: AuxK moves only the
dead latents (and b_dec through the encoder's input).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from probe.sae.model import TopKSAE


@dataclass
class StepGrads:
    """What `sae_grads` computed: the gradients, the batch's losses and the latents that fired."""

    grads: dict[str, torch.Tensor]
    fvu: float  # the reconstruction loss: this batch's squared error over (rows x the data's variance)
    aux: float  # the AuxK loss (0 without dead latents)
    fired: torch.Tensor  # (d_sae,) bool: latents with a positive value in some row


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the two products used here are tested
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _row_csr(idx: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """The pattern of a code (rows, k) as a CSR (rows, n) with zero values (for sampled products)."""
    rows, k = idx.shape
    crow = torch.arange(0, rows * k + 1, k, dtype=torch.int64)
    return _csr(crow, idx.reshape(-1), torch.zeros(rows * k, dtype=dtype), (rows, n))


class _Transposed:
    """A code (rows, k) transposed: CSR (n, rows), latent by latent, for the products code^T @ dense."""

    def __init__(self, idx: torch.Tensor, n: int):
        rows, k = idx.shape
        flat = idx.reshape(-1)
        self.order = torch.argsort(flat, stable=True)
        self.col = torch.div(self.order, k, rounding_mode="floor")
        self.crow = torch.zeros(n + 1, dtype=torch.int64)
        torch.cumsum(torch.bincount(flat, minlength=n), 0, out=self.crow[1:])
        self.shape = (n, rows)
        self.flat = flat

    def matmul(self, values: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """code^T @ dense (n, d) with the code's values `values` (rows, k)."""
        return _csr(self.crow, self.col, values.reshape(-1)[self.order], self.shape) @ dense


def _value_grads(idx: torch.Tensor, grad_out: torch.Tensor, w_dec: torch.Tensor) -> torch.Tensor:
    """d loss / d vals (rows, k) = <W_dec[idx[r, j]], grad_out[r]>: a sampled product."""
    pattern = _row_csr(idx, w_dec.shape[0], w_dec.dtype)
    s = torch.sparse.sampled_addmm(pattern, grad_out, w_dec.t(), beta=0.0)
    return s.values().view(idx.shape)


@torch.no_grad()
def sae_grads(sae: TopKSAE, x: torch.Tensor, variance: float, dead: torch.Tensor | None = None,
              k_aux: int = 0, aux_coef: float = 1 / 32) -> StepGrads:
    """The loss gradients of every parameter of `sae` on the batch x (rows, d_in), by hand (see the module).

    variance: the data's total variance (sum over features), the loss's scale. dead: (d_sae,) bool mask of
    the dead latents (None or none: no AuxK loss).
    """
    W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
    n, rows = sae.d_sae, x.shape[0]
    xc = x - b_dec
    pre = torch.addmm(b_enc, xc, W_enc)
    vals, idx = pre.topk(sae.k, dim=1, sorted=False)
    vals.relu_()
    x_hat = F.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum").add_(b_dec)
    e = x_hat.neg_().add_(x)  # the residual x - x_hat, in x_hat's buffer
    sse = float(e.square().sum())
    scale = 1.0 / (rows * variance)
    g = e.mul(-2.0 * scale)  # d loss / d x_hat
    fired = torch.zeros(n, dtype=torch.bool)
    fired[idx[vals > 0]] = True

    t = _Transposed(idx, n)
    g_vals = _value_grads(idx, g, W_dec)
    g_pre = g_vals.mul_(vals > 0)
    grad_W_dec = t.matmul(vals, g)
    grad_W_encT = t.matmul(g_pre, xc)
    grad_b_enc = torch.bincount(t.flat, weights=g_pre.reshape(-1), minlength=n).to(b_enc.dtype)

    aux = 0.0
    if dead is not None and k_aux > 0 and sse > 0:
        dead_idx = torch.nonzero(dead).view(-1)
        ka = min(int(k_aux), len(dead_idx))
        if ka:
            va, ia = pre.index_select(1, dead_idx).topk(ka, dim=1, sorted=False)
            ia = dead_idx[ia]
            va.relu_()
            r = e - F.embedding_bag(ia, W_dec, per_sample_weights=va, mode="sum")
            aux = float(r.square().sum()) / sse
            ga = r.mul_(-2.0 * aux_coef / sse)  # d (aux_coef aux) / d e_hat
            ta = _Transposed(ia, n)
            ga_pre = _value_grads(ia, ga, W_dec).mul_(va > 0)
            grad_W_dec += ta.matmul(va, ga)
            grad_W_encT += ta.matmul(ga_pre, xc)
            grad_b_enc += torch.bincount(ta.flat, weights=ga_pre.reshape(-1), minlength=n).to(b_enc.dtype)

    grad_b_dec = g.sum(0) - W_enc @ grad_b_enc
    return StepGrads(grads={"W_enc": grad_W_encT.t().contiguous(), "b_enc": grad_b_enc, "W_dec": grad_W_dec,
                            "b_dec": grad_b_dec},
                     fvu=sse * scale, aux=aux, fired=fired)


@torch.no_grad()
def project_decoder_grad_(sae: TopKSAE, grad_w_dec: torch.Tensor) -> None:
    """Remove from each decoder row's gradient its component along the (unit) row, in place."""
    W = sae.W_dec
    grad_w_dec -= (grad_w_dec * W).sum(1, keepdim=True) * W
