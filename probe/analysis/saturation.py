"""Gate saturation (Karpathy, Johnson & Fei-Fei 2015): how often each gate unit sits near its bounds.

For a sigmoid gate (LSTM i f o, GRU r z) a step is left-saturated below `low`
and right-saturated above `high`. Tanh "gates" (LSTM g, GRU n) run in [-1, 1]
and are mapped to [0, 1] by (x + 1) / 2 first, so the same thresholds apply.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from probe.errors import ProbeError
from probe.names import GATES, TANH_GATES, array_name, parse_array
from probe.record.recording import Recording


def gate_saturation(rec: Recording, *, low: float = 0.1, high: float = 0.9, layers: list[int] | None = None,
                    chunk_rows: int = 65536) -> pd.DataFrame:
    """One row per gate unit: layer, gate, index, left (fraction of steps < low), right (fraction > high)."""
    if not 0 <= low < high <= 1:
        raise ProbeError(f"need 0 <= low < high <= 1, not low={low}, high={high}")
    gates = [g for g in GATES[rec.cell] if g in rec.kinds]
    if not gates:
        raise ProbeError(f"the recording {rec.path} holds no gates ({rec.cell}, kinds "
                         f"{', '.join(rec.kinds)}): record an LSTM or GRU with gates to see saturation")
    layers = list(rec.layers) if layers is None else layers
    names = [array_name(l, g) for l in layers for g in gates]
    H = rec.hidden_size
    left = {n: np.zeros(H, np.int64) for n in names}
    right = {n: np.zeros(H, np.int64) for n in names}
    for _, _, block in rec.iter_chunks(names, chunk_rows):
        for n, x in block.items():
            if parse_array(n).kind in TANH_GATES:
                x = (x + 1.0) * 0.5
            left[n] += (x < low).sum(0)
            right[n] += (x > high).sum(0)
    frames = []
    for l in layers:
        for g in gates:
            n = array_name(l, g)
            frames.append(pd.DataFrame({"layer": l, "gate": g, "index": np.arange(H),
                                        "left": left[n] / rec.n_rows, "right": right[n] / rec.n_rows}))
    return pd.concat(frames, ignore_index=True)
