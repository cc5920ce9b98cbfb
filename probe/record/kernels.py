"""Compiled kernels of the recorder (numba, compiled on first use and cached on disk).

- `lstm_cell_states`: the cell-state recurrence `c_t = f_t * c_{t-1} + i_t * g_t`. Element-wise
  and cheap (no matmul) but sequential in time: a Python loop over steps would dominate a
  recording, so it runs as one compiled loop per chunk.
- `topk_rows`: the k largest entries of every row in one pass (torch.topk per row costs more
  than the rest of a small model's recording).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _set_numba_cache_dir() -> None:
    """numba caches compiled code next to the source by default (read-only in a venv): use a user folder."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    d = Path.home() / ".cache" / "probe" / "numba"
    try:
        d.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(d)
    except OSError:
        pass


_compiled = None
_compiled_topk = None


def _numba():
    _set_numba_cache_dir()
    import numba  # imported on first use: it takes a while, and sets its cache folder from the environment
    return numba


def _topk_kernel():
    global _compiled_topk
    if _compiled_topk is None:
        numba = _numba()

        @numba.njit(cache=True, nogil=True)
        def topk(x, ids, vals):  # x (N, V); ids, vals (N, k): sorted descending, ties: lower index first
            N, V = x.shape
            k = ids.shape[1]
            for r in range(N):
                n = 0
                for j in range(V):
                    v = x[r, j]
                    if n < k:
                        p = n
                        n += 1
                    elif v > vals[r, k - 1]:
                        p = k - 1
                    else:
                        continue
                    while p > 0 and vals[r, p - 1] < v:
                        vals[r, p] = vals[r, p - 1]
                        ids[r, p] = ids[r, p - 1]
                        p -= 1
                    vals[r, p] = v
                    ids[r, p] = j

        _compiled_topk = topk
    return _compiled_topk


def topk_rows(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64, values) of the k largest entries of each row of x (N, V), largest first."""
    x = np.ascontiguousarray(x)
    ids = np.zeros((x.shape[0], k), dtype=np.int64)
    vals = np.zeros((x.shape[0], k), dtype=x.dtype)
    _topk_kernel()(x, ids, vals)
    return ids, vals


def _kernel():
    global _compiled
    if _compiled is None:
        numba = _numba()

        @numba.njit(cache=True, nogil=True)
        def lstm_c(acts, c0, out):  # acts (S, T, 4H) activated i f g o; c0 (S, H); out (S, T, H)
            S, T, H4 = acts.shape
            H = H4 // 4
            for s in range(S):
                for k in range(H):
                    out[s, 0, k] = acts[s, 0, H + k] * c0[s, k] + acts[s, 0, k] * acts[s, 0, 2 * H + k]
                for t in range(1, T):
                    for k in range(H):
                        out[s, t, k] = acts[s, t, H + k] * out[s, t - 1, k] + acts[s, t, k] * acts[s, t, 2 * H + k]

        _compiled = lstm_c
    return _compiled


def lstm_cell_states(acts: np.ndarray, c0: np.ndarray) -> np.ndarray:
    """Cell states (S, T, H) float32 from activated gates `acts` (S, T, 4H, order i f g o) and c0 (S, H)."""
    acts = np.ascontiguousarray(acts, dtype=np.float32)
    c0 = np.ascontiguousarray(c0, dtype=np.float32)
    S, T, H4 = acts.shape
    out = np.empty((S, T, H4 // 4), dtype=np.float32)
    if T == 0:
        return out
    _kernel()(acts, c0, out)
    return out
