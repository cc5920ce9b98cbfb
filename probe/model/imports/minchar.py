"""Karpathy's min-char-rnn: a vanilla RNN in numpy, saved as .npz (Wxh, Whh, Why, bh, by) with its characters.

min-char-rnn computes, for a one-hot x of the vocabulary (V) and a hidden state h (H):

    h = tanh(Wxh x + Whh h + bh)        y = Why h + by        p = softmax(y)

with Wxh (H, V), Whh (H, H), Why (V, H), bh (H, 1), by (V, 1). That is PyTorch's tanh `nn.RNN` with
weight_ih = Wxh, weight_hh = Whh, bias_ih = bh, bias_hh = 0, read by a one-hot input (an identity
embedding in probe) and a linear read-out (Why, by): imported exactly. Its vocabulary is the list
`chars` it was trained with (`chars = list(set(data))`: the order is the one that run had), given as
a JSON file or stored in the .npz as a string array (`chars`).
"""
from __future__ import annotations

import numpy as np
import torch

from probe.errors import ProbeError
from probe.model.imports.roles import LayerWeights, Weights, check_shapes

KEYS = ("Wxh", "Whh", "Why", "bh", "by")
IGNORED = tuple("m" + k for k in KEYS)  # Adagrad's memories, saved beside the weights by some scripts
VOCAB_KEYS = ("chars", "vocab", "ix_to_char", "itos")


def is_min_char_rnn(tensors: dict) -> bool:
    """Whether a file's arrays are min-char-rnn's (all five of Wxh, Whh, Why, bh, by)."""
    return all(k in tensors for k in KEYS)


def min_char_weights(arrays: dict[str, torch.Tensor]) -> Weights:
    """The roles of min-char-rnn's arrays (checked: shapes, nothing else left over)."""
    extra = [k for k in arrays if k not in KEYS + IGNORED]
    if extra:
        raise ProbeError(f"{extra[0]} is not one of min-char-rnn's arrays ({', '.join(KEYS)}); rename it with "
                         "--map NEW=OLD if it is one of them")
    a = {k: arrays[k] for k in KEYS}
    for k, t in a.items():
        if t.dim() not in (1, 2):
            raise ProbeError(f"{k} has {t.dim()} dimensions; min-char-rnn's arrays are matrices and column vectors")
    bh, by = (_column(k, a[k]) for k in ("bh", "by"))
    layer = LayerWeights(w_ih=a["Wxh"], w_hh=a["Whh"], b_ih=bh, b_hh=None,
                         keys={"weight_ih": "Wxh", "weight_hh": "Whh", "bias_ih": "bh"})
    w = Weights(cell="rnn", layers=[layer], embed=None, head_w=a["Why"], head_b=by, head_keys=("Why", "by"))
    if a["Wxh"].dim() != 2 or a["Whh"].dim() != 2 or a["Why"].dim() != 2:
        bad = next(k for k in ("Wxh", "Whh", "Why") if a[k].dim() != 2)
        raise ProbeError(f"{bad} has shape {tuple(a[bad].shape)}, not a matrix")
    if a["Whh"].shape[0] != a["Whh"].shape[1]:
        raise ProbeError(f"Whh has shape {tuple(a['Whh'].shape)}: min-char-rnn's Whh is (H, H)")
    check_shapes(w, "rnn")
    return w


def _column(key: str, t: torch.Tensor) -> torch.Tensor:
    """A bias kept as a column (n, 1) or a vector (n,), as a vector."""
    if t.dim() == 2:
        if t.shape[1] != 1:
            raise ProbeError(f"{key} has shape {tuple(t.shape)}, not a column (n, 1)")
        return t[:, 0]
    return t


class MinCharReference:
    """min-char-rnn's own forward pass, in numpy float64 from the file's arrays (the original, to check against)."""

    name = "min-char-rnn's own equations (numpy, float64)"

    def __init__(self, arrays: dict[str, torch.Tensor]):
        self.a = {k: arrays[k].double().numpy() for k in KEYS}
        self.a["bh"] = self.a["bh"].reshape(-1, 1)
        self.a["by"] = self.a["by"].reshape(-1, 1)

    def bits(self, ids: np.ndarray) -> np.ndarray:
        """Loss in bits of each next symbol ids[t+1] given ids[:t+1], from a zero state."""
        Wxh, Whh, Why, bh, by = (self.a[k] for k in KEYS)
        h = np.zeros((Whh.shape[0], 1))
        out = np.empty(len(ids) - 1)
        for t in range(len(ids) - 1):
            x = np.zeros((Wxh.shape[1], 1))
            x[ids[t]] = 1
            h = np.tanh(Wxh @ x + Whh @ h + bh)
            y = Why @ h + by
            y = y - y.max()
            p = np.exp(y) / np.sum(np.exp(y))
            out[t] = -np.log2(p[ids[t + 1], 0])
        return out
