"""How far a recording made in parallel streams is from one exact pass, over every row it holds.

`record(streams=N)` cuts the text into N contiguous streams of L rows; stream k > 0 starts at row
k*L from a state warmed up on the few symbols before it, not from the exact state there (the state
after one pass over rows 0..k*L-1). Long-memory units carry that error through the whole stream,
and a later boundary can be much worse than the first (a counter misses everything before it).

The reference is one exact pass, at every row of every stream k > 0, for h and tanh(c) of every
layer and unit, both sides rounded as the recording stores them. Its start states come from a
parallel-in-time (Parareal-style) fixed-point iteration instead of a slow one-stream pass:

- the guess for stream k's exact start is the recording's own final state of stream k-1;
- one iteration re-runs the streams from their guesses, side by side, comparing every row with the
  recording as it goes; stream k-1's new final state is stream k's next guess;
- stream 1's start is exact (stream 0 starts at row 0), so each iteration makes at least one more
  start exact; once the guesses stop moving (within `TOLERANCE`), every start is exact and the rows
  of that iteration are the reference. A model that forgets within one stream converges at once.
- after `MAX_ITERATIONS` iterations a plain one-stream pass from the last exact start finds the
  remaining starts (a long-memory model), and one more side-by-side run compares their rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

MAX_ITERATIONS = 4  # side-by-side iterations before a one-stream pass finds the remaining exact starts
TOLERANCE = 1e-5  # a start state has converged when no h moves more, nor any c relative to 1 + |c|

State = list  # per layer: (h, c) tensors (1, S, H) for an LSTM, else h (1, S, H)


def pick(state: State, streams: list[int]) -> State:
    """The states of some streams (indices into the batch)."""
    idx = torch.as_tensor(streams, dtype=torch.long)
    return [tuple(t.index_select(1, idx.to(t.device)) for t in s) if isinstance(s, tuple)
            else s.index_select(1, idx.to(s.device)) for s in state]


def join(states: list[State]) -> State:
    """Several streams' states as one batch."""
    return [tuple(torch.cat(parts, dim=1) for parts in zip(*layer)) if isinstance(layer[0], tuple)
            else torch.cat(layer, dim=1) for layer in zip(*states)]


def state_gap(a: State, b: State) -> float:
    """Largest |difference| of two states: h absolute, c relative to 1 + |c|."""
    gap = 0.0
    for x, y in zip(a, b):
        hx, hy = (x[0], y[0]) if isinstance(x, tuple) else (x, y)
        gap = max(gap, float((hx - hy).abs().max()))
        if isinstance(x, tuple):
            gap = max(gap, float(((x[1] - y[1]).abs() / (1 + y[1].abs())).max()))
    return gap


@dataclass
class StreamGap:
    """|difference| between one stream's recorded rows and the exact ones, per kind (h, tanh_c)."""

    max_abs: float = 0.0
    row: int = -1
    unit: str = ""
    kinds: dict = field(default_factory=dict)  # kind -> [max, sum, count]

    def add(self, kind: str, name: str, row0: int, d: np.ndarray) -> None:
        if not d.size:
            return
        k = self.kinds.setdefault(kind, [0.0, 0.0, 0])
        flat = int(d.argmax())
        top = float(d.flat[flat])
        k[0], k[1], k[2] = max(k[0], top), k[1] + float(d.sum(dtype=np.float64)), k[2] + d.size
        if top > self.max_abs or self.row < 0:
            r, u = divmod(flat, d.shape[1])
            self.max_abs, self.row, self.unit = top, row0 + r, f"{name}.{u}"


def _compare(gap: StreamGap, name: str, exact: np.ndarray, recorded: np.ndarray, row0: int) -> None:
    e = exact.astype(recorded.dtype, copy=False).astype(np.float32, copy=False)  # rounded as the recording rounds
    r = np.asarray(recorded, dtype=np.float32)
    if name.endswith(".c"):
        gap.add("tanh_c", name, row0, np.abs(np.tanh(e) - np.tanh(r)))
    else:
        gap.add("h", name, row0, np.abs(e - r))


@torch.no_grad()
def run_and_compare(engine, ids: np.ndarray, L: int, streams: list[int], start: State,
                    recorded: dict[str, np.ndarray], chunk_size: int) -> tuple[State, dict[int, StreamGap]]:
    """Run `streams` (stream k: rows k*L .. k*L+L-1) side by side from `start`, comparing every row's h and
    c with `recorded` (name -> recorded array); returns their final states and each one's gap."""
    n, S = len(ids), len(streams)
    device = next(engine.model.parameters()).device
    row0 = torch.as_tensor([k * L for k in streams]).unsqueeze(1)
    gaps = {k: StreamGap() for k in streams}
    state = start
    c_carry = [s[1][0].detach().cpu().numpy().copy() if isinstance(s, tuple) else None for s in state]
    T = max(1, int(chunk_size) // S)
    for t0 in range(0, L, T):
        Tc = min(T, L - t0)
        rows = (row0 + torch.arange(t0, t0 + Tc).unsqueeze(0)).numpy()
        x = torch.from_numpy(np.take(ids, np.minimum(rows, n - 1)).astype(np.int64)).to(device)
        seqs, new_state, kept = engine.forward(x, state)
        blocks: dict[str, np.ndarray] = {}

        def keep(name: str, block) -> None:
            if name in recorded:
                blocks[name] = block.detach().float().cpu().numpy() if isinstance(block, torch.Tensor) else block
        engine.post(seqs, state, c_carry, None, keep, kept)
        for s, k in enumerate(streams):
            r0 = k * L + t0
            m = min(Tc, n - r0)
            if m > 0:
                for name, block in blocks.items():
                    _compare(gaps[k], name, block[s, :m], recorded[name][r0:r0 + m], r0)
        state = new_state
    return state, gaps


@torch.no_grad()
def _one_stream_starts(engine, ids: np.ndarray, L: int, first: int, last: int, start: State,
                       chunk_size: int) -> dict[int, State]:
    """Exact starts of streams first+1..last by one pass over their rows from stream `first`'s exact start."""
    device = next(engine.model.parameters()).device
    starts, state = {}, start
    for k in range(first, last):
        for a in range(k * L, (k + 1) * L, int(chunk_size)):
            b = min(a + int(chunk_size), (k + 1) * L)
            state = engine.advance(torch.from_numpy(ids[a:b].astype(np.int64)).view(1, -1).to(device), state)
        starts[k + 1] = state
    return starts


def measure(engine, ids: np.ndarray, L: int, finals: State, recorded: dict[str, np.ndarray], *, warmup: int,
            chunk_size: int, log: Callable[[str], None] | None = None) -> dict:
    """The deviation of a recording in streams of L rows from one exact pass (see the module's docstring).

    engine: a recorder engine that emits h and c only; finals: the recording's final state of every stream
    (batch = streams); recorded: name -> the recorded h and c arrays (memory-mapped).
    """
    n = len(ids)
    N = -(-n // L)
    guess = {k: pick(finals, [k - 1]) for k in range(1, N)}  # guess[1] is exact: stream 0 starts at row 0
    done: dict[int, StreamGap] = {}
    exact, iterations, one_stream_rows = 1, 0, 0
    while exact < N and iterations < MAX_ITERATIONS:
        todo = list(range(exact, N))
        iterations += 1
        out, gaps = run_and_compare(engine, ids, L, todo, join([guess[k] for k in todo]), recorded, chunk_size)
        moved = {k + 1: pick(out, [i]) for i, k in enumerate(todo) if k + 1 < N}
        done[exact] = gaps[exact]  # its start was exact
        k = exact + 1
        while k < N and state_gap(moved[k], guess[k]) <= TOLERANCE:  # its guess was exact already
            done[k] = gaps[k]
            k += 1
        guess.update(moved)
        exact = k
    if exact < N:  # long memory: one stream from the last exact start, then the rest side by side
        one_stream_rows = (N - 1 - exact) * L
        guess.update(_one_stream_starts(engine, ids, L, exact, N - 1, guess[exact], chunk_size))
        todo = list(range(exact, N))
        _, gaps = run_and_compare(engine, ids, L, todo, join([guess[k] for k in todo]), recorded, chunk_size)
        done.update(gaps)
    return summarize(done, L, n, warmup, iterations, one_stream_rows)


def summarize(gaps: dict[int, StreamGap], L: int, n: int, warmup: int, iterations: int,
              one_stream_rows: int) -> dict:
    """meta.json's "deviation" of a streamed recording from the streams' gaps."""
    worst = max(gaps, key=lambda k: gaps[k].max_abs)
    kinds: dict[str, list] = {}
    for g in gaps.values():
        for kind, (mx, total, count) in g.kinds.items():
            acc = kinds.setdefault(kind, [0.0, 0.0, 0])
            acc[0], acc[1], acc[2] = max(acc[0], mx), acc[1] + total, acc[2] + count
    result = {
        "exact": False,
        "method": (f"every row of streams 1..{len(gaps)} (rows {L}:{n}, all recorded rows after the first stream "
                   f"boundary) vs one exact pass, h and tanh(c) of every layer and unit, both stored alike; "
                   f"streams start after a {warmup}-symbol warm-up"),
        "rows": int(n - L), "warmup": int(warmup),
        "boundary_row": int(worst * L),  # the stream boundary where the worst difference was found
        "worst": {"boundary_row": int(worst * L), "row": int(gaps[worst].row), "unit": gaps[worst].unit},
        "boundaries": [{"row": int(k * L), "max_abs": float(gaps[k].max_abs)} for k in sorted(gaps)],
        "reference": {"iterations": int(iterations), "one_stream_rows": int(one_stream_rows),
                      "tolerance": TOLERANCE,
                      "how": "exact start states by parallel-in-time iteration from the recording's own stream "
                             "ends (one-stream pass after it stops converging)"},
    }
    for kind, (mx, total, count) in kinds.items():
        result[kind] = {"mean_abs": total / max(count, 1), "max_abs": mx}
    total = sum(v[1] for v in kinds.values())
    count = sum(v[2] for v in kinds.values())
    result["mean_abs"] = total / max(count, 1)
    result["max_abs"] = max((v[0] for v in kinds.values()), default=0.0)
    return result


def summary_line(meta: dict) -> str:
    """One line on how exact a recording is, from its meta.json (older recordings included)."""
    dev = meta.get("deviation") if isinstance(meta.get("deviation"), dict) else {}
    if dev.get("exact") or meta.get("streams") in (None, 1):
        return "exact (one stream)"
    try:
        text = (f"{meta.get('streams')} streams, warm-up {meta.get('warmup')}: NOT exact, deviation from one pass "
                f"mean {float(dev['mean_abs']):.4f} max {float(dev['max_abs']):.3f} (h, tanh c)")
    except (KeyError, TypeError, ValueError):
        return f"{meta.get('streams')} streams: NOT exact, deviation not recorded"
    worst = dev.get("worst")
    if isinstance(worst, dict) and "boundaries" in dev:
        try:
            return (f"{text} over every row after the first boundary; worst at row {int(worst['row']):,} "
                    f"({worst.get('unit')}), in the stream from row {int(worst['boundary_row']):,}")
        except (KeyError, TypeError, ValueError):
            return f"{text} over every row after the first boundary"
    return f"{text}, measured at the first stream boundary only (an older recording: may understate it)"
