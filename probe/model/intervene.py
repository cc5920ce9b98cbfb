"""Holding units at chosen values: the one intervention behind ablation, clamped generation and the dashboard.

Holding `L1.h.7` at v sets that hidden unit to v after every step, both in what the next layer and the
read-out see and in the state carried to the next step. Holding an LSTM cell `L1.c.7` at v sets the carried
cell state after every step: that step's h was already computed from the cell as it was, and from the next
step on h is computed from the held cell (c_t = f_t * v + i_t * g_t, h_t = o_t * tanh(c_t)), then c is set to
v again. Gates cannot be held: a gate is not carried from step to step but recomputed at every step from the
input and the previous h, so there is no state to hold; hold the h or c that it feeds instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from probe.checks import ParamError
from probe.errors import ProbeError
from probe.model.charrnn import CharRNN
from probe.model.hooks import StepHook
from probe.names import array_name, parse_unit

WHY_NO_GATES = ("gates cannot be held: a gate carries nothing from one step to the next (it is recomputed "
                "at every step from the input and the previous h), so there is no state to hold; "
                "hold the unit's h, or its c in an LSTM")


@dataclass(frozen=True)
class Hold:
    """Hold `unit` (`L1.c.7`) at `value` after every step: a number, or one number per step of the walk.

    stream: the one stream of a batch to hold it in (None: every stream).
    """

    unit: str
    value: float | Sequence[float] | np.ndarray | torch.Tensor
    stream: int | None = None


def split_unit(name: str, param: str = "unit") -> tuple[int, str, int]:
    """`L1.c.7` -> (1, 'c', 7); a ParamError naming `param` for anything else."""
    try:
        u = parse_unit(str(name))
    except ProbeError:
        raise ParamError(param, f"{str(name)[:40]!r} is not a unit name: expected L<layer>.<kind>.<index>, "
                                f"e.g. L1.c.123") from None
    return u.layer, u.kind, u.index


def parse_hold(text: str, param: str = "holds") -> Hold:
    """`L1.c.7=0.9` -> Hold('L1.c.7', 0.9)."""
    name, sep, value = str(text).partition("=")
    if not sep:
        raise ParamError(param, f"takes UNIT=VALUE, e.g. L1.c.7=0.9, not {str(text)[:40]!r}")
    try:
        v = float(value)
    except ValueError:
        raise ParamError(param, f"{str(text)[:40]!r}: the value is not a number") from None
    if not math.isfinite(v):
        raise ParamError(param, f"{str(text)[:40]!r}: the value must be a finite number")
    split_unit(name, param)
    return Hold(name.strip(), v)


def check_unit(model: CharRNN, unit: str, param: str = "unit") -> tuple[int, str, int]:
    """(layer, kind, index) of a unit that can be held in `model`, else a ParamError naming `param`."""
    cfg = model.cfg
    unit = str(unit)  # a name, or a Unit
    layer, kind, index = split_unit(unit, param)
    states = ("h", "c") if cfg.model == "lstm" else ("h",)
    if kind not in states:
        if kind == "c":
            raise ParamError(param, f"{unit}: a {cfg.model.upper()} has no cell state c; hold h")
        raise ParamError(param, f"{unit}: {WHY_NO_GATES}")
    if not 0 <= layer < cfg.num_layers or not 0 <= index < cfg.rnn_size:
        raise ParamError(param, f"{unit}: no unit {unit} in a {cfg.num_layers}x{cfg.rnn_size} model "
                                f"(layers L0-L{cfg.num_layers - 1}, units 0-{cfg.rnn_size - 1})")
    return layer, kind, index


def _values(hold: Hold, param: str) -> torch.Tensor:
    v = hold.value
    if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
        if not math.isfinite(float(v)):
            raise ParamError(param, f"{hold.unit}: the value must be a finite number, not {v}")
        return torch.tensor(float(v))
    try:
        t = torch.as_tensor(np.asarray(v, dtype=np.float32))
    except (TypeError, ValueError):
        raise ParamError(param, f"{hold.unit}: the value must be a number or numbers, "
                                f"not {type(v).__name__}") from None
    if t.dim() != 1 or not torch.isfinite(t).all():
        raise ParamError(param, f"{hold.unit}: the values must be one finite number per step")
    return t


def hold_hooks(model: CharRNN, holds: Iterable[Hold], streams: int = 1, steps: int | None = None,
               param: str = "holds") -> dict[str, StepHook]:
    """Step hooks (for `run_with_hooks`) that apply `holds` in a walk of `streams` rows and `steps` steps."""
    groups: dict[str, list] = {}
    for hold in holds:
        if not isinstance(hold, Hold):
            raise ParamError(param, f"must hold Hold(unit, value) items, not {type(hold).__name__}")
        layer, kind, index = check_unit(model, hold.unit, param)
        vals = _values(hold, param)
        if vals.dim() == 1 and steps is not None and len(vals) != steps:
            raise ParamError(param, f"{hold.unit}: {len(vals)} values but the walk has {steps} steps")
        if hold.stream is not None and not 0 <= int(hold.stream) < streams:
            raise ParamError(param, f"{hold.unit}: stream {hold.stream} is not one of the {streams} streams")
        rows = range(streams) if hold.stream is None else [int(hold.stream)]
        groups.setdefault(array_name(layer, kind), []).extend((r, index, vals) for r in rows)
    return {name: _hook(entries) for name, entries in groups.items()}


def _hook(entries: list) -> StepHook:
    rows = torch.tensor([r for r, _, _ in entries])
    cols = torch.tensor([i for _, i, _ in entries])
    per_step = any(v.dim() == 1 for _, _, v in entries)
    if per_step:
        n = max(len(v) for _, _, v in entries if v.dim() == 1)
        table = torch.stack([v if v.dim() == 1 else v.expand(n) for _, _, v in entries], dim=1)  # (T, N)
    else:
        table = torch.stack([v for _, _, v in entries])  # (N,)

    def hook(state: torch.Tensor, t: int) -> torch.Tensor:
        state[rows, cols] = (table[t] if per_step else table).to(state.dtype)
        return state

    return hook
