"""Contiguous parallel streams for truncated BPTT: batch i holds characters i*T..(i+1)*T of every stream."""
from __future__ import annotations

import numpy as np
import torch

from probe.checks import ParamError
from probe.errors import ProbeError


class StreamBatches:
    """Cuts `ids` into `streams` contiguous rows; yields (x, y) windows of `seq_length`, y shifted by one.

    With a world of several ranks, the text is cut into streams*world rows and
    this rank takes its own `streams` of them.
    """

    def __init__(self, ids: np.ndarray, streams: int, seq_length: int, rank: int = 0, world: int = 1,
                 what: str = "training text"):
        total = streams * world
        L = (len(ids) - 1) // total
        if L < seq_length:
            raise ParamError(
                "batch_size", f"{what} too short: {len(ids)} characters make fewer than one batch of "
                f"{total} streams x {seq_length} characters; lower {{batch_size}} or {{seq_length}}",
                advice=True, others=("seq_length",))
        t = torch.from_numpy(np.ascontiguousarray(ids[: total * L + 1], dtype=np.int64))
        self.x = t[: total * L].view(total, L)[rank * streams:(rank + 1) * streams]
        self.y = t[1: total * L + 1].view(total, L)[rank * streams:(rank + 1) * streams]
        self.seq_length = seq_length
        self.per_epoch = L // seq_length

    def __len__(self) -> int:
        return self.per_epoch

    def get(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch i of an epoch (0 <= i < len(self))."""
        s = slice(i * self.seq_length, (i + 1) * self.seq_length)
        return self.x[:, s], self.y[:, s]


def eval_streams(ids: np.ndarray, streams: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole of `ids` as `streams` rows (fewer if the text is short), for evaluation."""
    streams = max(1, min(streams, (len(ids) - 1) // 64 or 1))
    L = (len(ids) - 1) // streams
    if L < 1:
        raise ParamError("val_frac", "validation text is empty: raise {val_frac} or use a longer text", advice=True)
    t = torch.from_numpy(np.ascontiguousarray(ids[: streams * L + 1], dtype=np.int64))
    return t[: streams * L].view(streams, L), t[1: streams * L + 1].view(streams, L)
