"""The top-k sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

    z     = TopK(ReLU((x - b_dec) @ W_enc + b_enc))     (rows, d_sae): at most k non-zeros a row
    x_hat = z @ W_dec + b_dec                           (rows, d_in)

The decoder's rows (one direction per feature) have unit norm: `normalize_decoder_` after every optimizer
step, and the training step projects out the gradient's component along each row first. At initialisation
W_enc = W_dec^T (random unit directions) and b_dec is set by the trainer to the geometric median of the data.

`encode_topk`/`decode_topk` are the sparse forms (values and indices of the k kept latents; the decoder a
gather-and-sum, `embedding_bag`), `encode`/`decode` the dense forms of the interface.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from probe.checks import ParamError, check_int


class TopKSAE(nn.Module):
    """A top-k SAE with parameters W_enc (d_in, d_sae), b_enc (d_sae,), W_dec (d_sae, d_in), b_dec (d_in,)."""

    def __init__(self, d_in: int, d_sae: int, k: int, *, seed: int = 0):
        super().__init__()
        self.d_in = check_int("d_in", d_in, min=1)
        self.d_sae = check_int("d_sae", d_sae, min=1)
        self.k = check_int("k", k, min=1)
        if self.k > self.d_sae:
            raise ParamError("k", f"is {self.k}, more than the {self.d_sae} features of the dictionary")
        g = torch.Generator().manual_seed(check_int("seed", seed))
        w_dec = torch.randn(self.d_sae, self.d_in, generator=g)
        w_dec /= w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.t().contiguous())
        self.b_enc = nn.Parameter(torch.zeros(self.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(self.d_in))

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_sae={self.d_sae}, k={self.k}"

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_in:
            raise ParamError("x", f"has {x.shape[-1]} features per row; this SAE reads {self.d_in}")
        return x.reshape(-1, self.d_in).to(self.W_enc.dtype)

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """(x - b_dec) @ W_enc + b_enc for rows x (rows, d_in) -> (rows, d_sae)."""
        x = self._rows(x)
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    def encode_topk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The k kept latents of each row: values (rows, k) >= 0 (a latent whose ReLU is 0 has value 0) and
        feature indices (rows, k) int64, in no particular order."""
        vals, idx = self.pre_acts(x).topk(self.k, dim=1, sorted=False)
        return vals.relu_() if not vals.requires_grad else vals.relu(), idx

    def decode_topk(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """x_hat (rows, d_in) from the sparse code: sum_j vals[:, j] W_dec[idx[:, j]] + b_dec."""
        out = F.embedding_bag(idx, self.W_dec, per_sample_weights=vals, mode="sum")
        return out + self.b_dec

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z (..., d_sae): dense, non-negative, at most k non-zeros a row."""
        vals, idx = self.encode_topk(x)
        z = vals.new_zeros(vals.shape[0], self.d_sae).scatter(1, idx, vals)
        return z.reshape(*x.shape[:-1], self.d_sae)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """x_hat = z @ W_dec + b_dec for a dense code z (..., d_sae)."""
        flat = z.reshape(-1, self.d_sae).to(self.W_dec.dtype)
        return torch.addmm(self.b_dec, flat, self.W_dec).reshape(*z.shape[:-1], self.d_in)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_hat, z), both shaped like x's leading dimensions."""
        vals, idx = self.encode_topk(x)
        x_hat = self.decode_topk(vals, idx).reshape(*x.shape[:-1], self.d_in)
        z = vals.new_zeros(vals.shape[0], self.d_sae).scatter(1, idx, vals).reshape(*x.shape[:-1], self.d_sae)
        return x_hat, z

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x_hat for rows x (..., d_in), through the sparse decoder."""
        vals, idx = self.encode_topk(x)
        return self.decode_topk(vals, idx).reshape(*x.shape[:-1], self.d_in)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Scale every decoder row to unit norm (in place)."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def geometric_median(x: torch.Tensor, iters: int = 100, tol: float = 1e-7) -> torch.Tensor:
    """The point minimising the sum of Euclidean distances to the rows of x (Weiszfeld's iterations, float64)."""
    x = x.double()
    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=1).clamp_min(1e-9)
        new = (w[:, None] * x).sum(0) / w.sum()
        moved = (new - m).norm()
        m = new
        if moved <= tol * (1 + m.norm()):
            break
    return m.float()
