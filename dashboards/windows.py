"""Windows of a recording as compact payloads for the browser.

The server never loads a recording whole: a window is a slice of rows read
from the memory-mapped arrays of one layer and kind. Its activations travel
once per window as base64 float16 (rows x H, row-major) with a per-unit color
range, and the browser recolors the text itself when the unit changes.
"""
from __future__ import annotations

import base64
import hashlib

import numpy as np

from dashboards.inputs import as_choice, as_int
from probe.errors import ProbeError
from probe.figures.colors import ACTIVATION_SCALE, PROBABILITY_SCALE, symmetric_range
from probe.record.recording import Recording, Unit, array_name

WINDOW_ROWS = 2000
FEATURE_COLUMNS = 128  # features sent per window: the most active in it (others: fetched when picked)
FLOAT16_MAX = 65504.0


def check_unit(rec: Recording, layer, kind, index) -> Unit:
    """The unit named by (layer, kind, index) callback values, validated against the recording."""
    kind = as_choice(kind, "kind", rec.kinds)
    return rec.check_unit(Unit(as_int(layer, "layer"), kind, as_int(index, "unit index")))


def window_bounds(start, n_rows: int, size: int = WINDOW_ROWS) -> tuple[int, int]:
    """[start, stop) of the window that begins at `start` (ProbeError outside the recording)."""
    s = as_int(start, "window start")
    if not 0 <= s < n_rows:
        raise ProbeError(f"window start {s} is outside the text (rows 0 to {n_rows - 1})")
    return s, min(n_rows, s + size)


def color_ranges(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit (column) the color range the report's figures use: probe.figures.colors.symmetric_range."""
    a = np.asarray(acts)
    ranges = np.array([symmetric_range(a[:, j]) for j in range(a.shape[1])], dtype=np.float64).reshape(-1, 2)
    return ranges[:, 0], ranges[:, 1]


def encode_float16(acts: np.ndarray) -> str:
    """base64 of the row-major float16 array (clipped to float16's range, NaN -> 0)."""
    a = np.nan_to_num(np.asarray(acts, np.float32), nan=0.0, posinf=FLOAT16_MAX, neginf=-FLOAT16_MAX)
    a = np.clip(a, -FLOAT16_MAX, FLOAT16_MAX).astype("<f2")
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def decode_float16(b64: str, rows: int, width: int) -> np.ndarray:
    """Inverse of encode_float16 (for tests and checks)."""
    return np.frombuffer(base64.b64decode(b64), dtype="<f2").reshape(rows, width).astype(np.float32)


def payload(*, wid: str, start: int, n_rows: int, chars: list[str], acts: np.ndarray, layer: int, kind: str,
            topk: list[list[tuple[str, float]]] | None, loss: np.ndarray | None, mark=None) -> dict:
    """The JSON-able dict the browser's renderer reads (see assets/probe_text.js)."""
    rows, width = acts.shape
    if len(chars) != rows:
        raise ValueError(f"{len(chars)} characters for {rows} rows")
    lo, hi = color_ranges(acts)
    loss_list = None
    if loss is not None:
        loss_list = [None if not np.isfinite(x) else round(float(x), 3) for x in np.asarray(loss, np.float32)]
    return {
        "wid": wid, "start": int(start), "stop": int(start + rows), "n_rows": int(n_rows),
        "layer": int(layer), "kind": kind, "H": int(width), "chars": chars,
        "acts": encode_float16(acts), "lo": [round(float(x), 6) for x in lo], "hi": [round(float(x), 6) for x in hi],
        "topk": None if topk is None else [[[s, round(float(p), 4)] for s, p in row] for row in topk],
        "loss": loss_list, "mark": mark,
        "scale": ACTIVATION_SCALE, "pscale": PROBABILITY_SCALE,
    }


def window_payload(rec: Recording, start, layer, kind, *, size: int = WINDOW_ROWS, mark=None) -> dict:
    """The window of rows [start, start + size) for one layer and kind, read from the memory-mapped arrays."""
    u = check_unit(rec, layer, kind, 0)
    s, e = window_bounds(start, rec.n_rows, size)
    acts = np.asarray(rec.array(array_name(u.layer, u.kind))[s:e], dtype=np.float32)
    topk = rec.topk(s, e) if rec.has("topk_ids") and rec.has("topk_probs") else None
    loss = np.asarray(rec.loss_bits[s:e], np.float32) if rec.has("loss_bits") else None
    return payload(wid=f"rec:{s}:{u.layer}:{u.kind}:{mark}", start=s, n_rows=rec.n_rows,
                   chars=rec.row_strings(s, e), acts=acts, layer=u.layer, kind=u.kind, topk=topk, loss=loss,
                   mark=mark)


def feature_window_payload(frec, start, unit: Unit, *, size: int = WINDOW_ROWS, mark=None,
                           n_cols: int = FEATURE_COLUMNS) -> dict:
    """The window of rows [start, start + size) of an SAE's features (a FeatureRecording): the `n_cols`
    features most active in it, plus `unit`'s, as columns (`cols` names them; `n_units` is the dictionary)."""
    s, e = window_bounds(start, frec.n_rows, size)
    acts = np.asarray(frec.array(unit.array)[s:e], dtype=np.float32)  # (rows, d_sae), mostly zeros
    peak = acts.max(axis=0)
    active = np.flatnonzero(peak > 0)
    top = active[np.argsort(-peak[active], kind="stable")[:n_cols]]
    cols = np.union1d(top, [unit.index]).astype(np.int64)
    rec = frec.rec
    topk = rec.topk(s, e) if rec.has("topk_ids") and rec.has("topk_probs") else None
    loss = np.asarray(rec.loss_bits[s:e], np.float32) if rec.has("loss_bits") else None
    tag = hashlib.sha1(cols.tobytes()).hexdigest()[:12]
    out = payload(wid=f"feat:{s}:{unit.layer}:{unit.kind}:{mark}:{tag}", start=s, n_rows=frec.n_rows,
                  chars=rec.row_strings(s, e), acts=acts[:, cols], layer=unit.layer, kind=unit.kind, topk=topk,
                  loss=loss, mark=mark)
    out["cols"] = [int(c) for c in cols]
    out["n_units"] = int(acts.shape[1])
    return out


def interpolate(scale: list, t: float) -> tuple[int, int, int]:
    """RGB of a plotly-style color scale at t in [0, 1] (linear between stops), as the browser computes it."""
    t = min(1.0, max(0.0, float(t)))
    for (t0, c0), (t1, c1) in zip(scale, scale[1:]):
        if t <= t1:
            f = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
            a, b = _rgb(c0), _rgb(c1)
            return tuple(int(round(x + (y - x) * f)) for x, y in zip(a, b))
    return _rgb(scale[-1][1])


def _rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def activation_rgb(value: float, lo: float, hi: float) -> tuple[int, int, int]:
    """The background color of a character with activation `value` in a unit colored over [lo, hi]."""
    return interpolate(ACTIVATION_SCALE, (value - lo) / (hi - lo) if hi > lo else 0.5)
