"""Where an SAE's training rows come from: a recording's site array, or the model itself, streamed.

Both sources give `batches(epoch, seed, batch_size)`: float32 (rows, d_in) tensors in an order that depends
only on (seed, epoch) (`numpy.random.default_rng([seed, epoch])`), so a resumed run sees the same batches as
an uninterrupted one without any saved RNG state.

- `RecordingRows`: rows [start, stop) of one memory-mapped array, read in blocks of `block_rows`. When they fit
  in `budget_bytes` (in the array's own dtype: 280 MB for 274k float16 rows of 512) they are read once and
  every epoch is one permutation of all of them; otherwise each epoch shuffles the blocks, takes as many as fit,
  and shuffles the rows of those.
- `StreamRows`: the states of one site computed by the model over its training split through the hook walk,
  never stored: the split cut into `streams` contiguous segments run side by side, `steps` symbols a walk, the
  first `warmup` steps of each segment skipped (a zero state is not a state the model is in); the rows go
  through a shuffle buffer of `buffer_rows`.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

from probe.checks import check_int
from probe.errors import ProbeError
from probe.names import Site


def _batches_from(blocks: Iterator[np.ndarray], rng: np.random.Generator, batch_size: int,
                  buffer_rows: int) -> Iterator[torch.Tensor]:
    """Shuffle-buffer `blocks` (arrays of rows): fill to `buffer_rows`, permute, emit whole batches, carry the rest."""
    pending: list[np.ndarray] = []
    size = 0
    carry: np.ndarray | None = None

    def flush(final: bool) -> Iterator[torch.Tensor]:
        nonlocal carry
        buf = np.concatenate(([carry] if carry is not None else []) + pending)
        buf = buf[rng.permutation(len(buf))]
        whole = len(buf) if final else len(buf) - len(buf) % batch_size
        for a in range(0, whole, batch_size):
            yield torch.from_numpy(np.asarray(buf[a:a + batch_size], dtype=np.float32))
        carry = None if final or whole == len(buf) else buf[whole:]

    for block in blocks:
        pending.append(block)
        size += len(block)
        if size >= buffer_rows:
            yield from flush(False)
            pending, size = [], 0
    if pending or carry is not None:
        yield from flush(True)


class RecordingRows:
    """Rows [start, stop) of `array` (a memory map or any row-sliceable array) in shuffled batches."""

    def __init__(self, array, start: int, stop: int, *, block_rows: int = 8192, budget_bytes: int = 1 << 30):
        self.array, self.start, self.stop = array, int(start), int(stop)
        if not 0 <= self.start < self.stop <= array.shape[0]:
            raise ProbeError(f"rows {start}:{stop} are not a range of the array's {array.shape[0]:,} rows")
        self.block_rows = check_int("block_rows", block_rows, min=1)
        self.d_in = int(array.shape[1])
        row_bytes = self.d_in * np.dtype(array.dtype).itemsize
        self.window_rows = max(self.block_rows, int(budget_bytes) // row_bytes // self.block_rows * self.block_rows)
        self._cache: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return self.stop - self.start

    def _read(self, a: int, b: int) -> np.ndarray:
        return np.asarray(self.array[self.start + a:self.start + b])

    def _all(self) -> np.ndarray:
        if self._cache is None:
            cache = np.empty((self.n_rows, self.d_in), dtype=self.array.dtype)
            for a in range(0, self.n_rows, self.block_rows):
                b = min(a + self.block_rows, self.n_rows)
                cache[a:b] = self._read(a, b)
            self._cache = cache
        return self._cache

    def batches(self, epoch: int, seed: int, batch_size: int) -> Iterator[torch.Tensor]:
        rng = np.random.default_rng([seed, epoch])
        if self.n_rows <= self.window_rows:  # one permutation of every row, gathered a batch at a time
            rows, perm = self._all(), rng.permutation(self.n_rows)
            for a in range(0, self.n_rows, batch_size):
                yield torch.from_numpy(np.asarray(rows[perm[a:a + batch_size]], dtype=np.float32))
            return
        n_blocks = math.ceil(self.n_rows / self.block_rows)
        order = rng.permutation(n_blocks)
        blocks = (self._read(b * self.block_rows, min((b + 1) * self.block_rows, self.n_rows)) for b in order)
        yield from _batches_from(blocks, rng, batch_size, self.window_rows)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """Up to `n` rows drawn without replacement (float32), for the initial b_dec and the data's variance."""
        rng = np.random.default_rng([seed, 2**31 - 1])
        rows = np.sort(rng.choice(self.n_rows, size=min(n, self.n_rows), replace=False))
        src = self._cache if self._cache is not None else self.array
        off = 0 if self._cache is not None else self.start
        return torch.from_numpy(np.asarray(src[rows + off], dtype=np.float32))


class StreamRows:
    """A site's states streamed from the model over a text's symbols (`ids`), without storing them."""

    def __init__(self, model, ids: np.ndarray, site: Site, *, streams: int = 16, steps: int = 256,
                 warmup: int = 100, max_rows: int | None = None, buffer_rows: int = 65536):
        self.model, self.site = model, site
        self.streams = check_int("streams", streams, min=1)
        self.steps = check_int("steps", steps, min=1)
        self.warmup = check_int("warmup", warmup, min=0)
        self.buffer_rows = check_int("buffer_rows", buffer_rows, min=1)
        self.seg = len(ids) // self.streams
        if self.seg <= self.warmup:
            raise ProbeError(f"the text to stream has {len(ids):,} symbols: too few for {self.streams} streams "
                             f"that each skip their first {self.warmup}")
        self.ids = torch.as_tensor(np.asarray(ids[:self.seg * self.streams], dtype=np.int64)).view(self.streams, -1)
        self.max_rows = None if max_rows is None else check_int("max_rows", max_rows, min=1)
        self.d_in = int(model.cfg.rnn_size)

    @property
    def n_rows(self) -> int:
        n = self.streams * (self.seg - self.warmup)
        return n if self.max_rows is None else min(n, self.max_rows)

    def blocks(self) -> Iterator[np.ndarray]:
        """The site's rows in the walk's order, (rows, H) float32 blocks, at most `n_rows` in all."""
        from probe.model.hooks import run_with_hooks
        name, left, state = self.site.array, self.n_rows, None
        for t0 in range(0, self.seg, self.steps):
            w = run_with_hooks(self.model, self.ids[:, t0:t0 + self.steps], state, cache=[name],
                               stop=self.site.layer + 1, head=False)
            state = w.state
            skip = max(0, self.warmup - t0)
            out = w.cache[name][:, skip:]
            if out.shape[1] == 0:
                continue
            block = out.reshape(-1, out.shape[-1]).numpy()[:left]
            left -= len(block)
            yield block
            if left <= 0:
                return

    def batches(self, epoch: int, seed: int, batch_size: int) -> Iterator[torch.Tensor]:
        rng = np.random.default_rng([seed, epoch])
        yield from _batches_from(self.blocks(), rng, batch_size, self.buffer_rows)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """The first `n` rows of the stream (float32)."""
        out, have = [], 0
        for block in self.blocks():
            out.append(block[:n - have])
            have += len(out[-1])
            if have >= n:
                break
        return torch.from_numpy(np.concatenate(out).astype(np.float32, copy=False))
