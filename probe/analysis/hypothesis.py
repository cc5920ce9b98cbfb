"""Brush to hypothesis (as in LSTMVis): units on inside a selected span and off around it, and where else
in the text those units show the same pattern.

A unit's activations are standardised over a context of rows around the span;
its score is the mean inside minus the mean in the margins on both sides (in
standard deviations), signed: a unit that is *off* inside and on around it
scores negative, and is matched with its sign flipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from probe.errors import ProbeError
from probe.record.recording import Recording, Unit, array_name

MAX_SPAN = 500
CONTEXT = 1000  # rows on each side used to standardise activations


@dataclass
class BrushResult:
    start: int
    stop: int
    units: pd.DataFrame  # unit, score, sign, inside, outside, separation
    matches: list[dict] = field(default_factory=list)  # start, stop, text
    n_matches: int = 0
    pattern_units: list[str] = field(default_factory=list)  # the units whose joint pattern was searched


def check_span(rec: Recording, start, stop) -> tuple[int, int]:
    from dashboards.windows import as_int
    s, e = as_int(start, "selection start"), as_int(stop, "selection end")
    if not 0 <= s < e <= rec.n_rows:
        raise ProbeError(f"selection {s}:{e} is empty or outside the text (rows 0 to {rec.n_rows})")
    if e - s > MAX_SPAN:
        raise ProbeError(f"select at most {MAX_SPAN} characters (got {e - s})")
    return s, e


def rank_units(rec: Recording, start: int, stop: int, *, kinds: list[str] | None = None,
               margin: int | None = None, n_units: int = 15) -> pd.DataFrame:
    """Units whose activation is high (or low) inside rows [start, stop) and the opposite in the margins."""
    start, stop = check_span(rec, start, stop)
    length = stop - start
    margin = max(3, length) if margin is None else margin
    m0, m1 = max(0, start - margin), min(rec.n_rows, stop + margin)
    if m0 == start and m1 == stop:
        raise ProbeError("the selection covers the whole text: nothing around it to compare with")
    c0, c1 = max(0, start - CONTEXT), min(rec.n_rows, stop + CONTEXT)
    kinds = [k for k in (kinds or rec.kinds) if k in rec.kinds]
    rows = []
    for layer in range(rec.num_layers):
        for kind in kinds:
            block = np.asarray(rec.array(array_name(layer, kind))[c0:c1], dtype=np.float64)
            mu, sd = block.mean(axis=0), block.std(axis=0)
            sd = np.where(sd > 1e-8, sd, np.inf)
            z = (block - mu) / sd
            inside = z[start - c0:stop - c0]
            outside = np.concatenate([z[m0 - c0:start - c0], z[stop - c0:m1 - c0]])
            score = inside.mean(axis=0) - outside.mean(axis=0)
            sign = np.where(score >= 0, 1.0, -1.0)
            separation = np.where(sign > 0, inside.min(axis=0) - outside.max(axis=0),
                                  outside.min(axis=0) - inside.max(axis=0))
            raw_in = block[start - c0:stop - c0].mean(axis=0)
            raw_out = np.concatenate([block[m0 - c0:start - c0], block[stop - c0:m1 - c0]]).mean(axis=0)
            for i in range(block.shape[1]):
                rows.append((Unit(layer, kind, i).name, float(score[i]), int(sign[i]), float(raw_in[i]),
                             float(raw_out[i]), float(separation[i])))
    df = pd.DataFrame(rows, columns=["unit", "score", "sign", "inside", "outside", "separation"])
    df = df[np.isfinite(df["score"])]
    df = df.reindex(df["score"].abs().sort_values(ascending=False).index).head(n_units)
    return df.reset_index(drop=True)


def find_pattern(rec: Recording, units: pd.DataFrame, start: int, stop: int, *, n_units: int = 3,
                 max_matches: int = 20, chunk_rows: int = 65536) -> tuple[list[dict], int, list[str]]:
    """Other runs of rows where the top units are all on (sign-adjusted) for about as long as the span.

    The top units: up to `n_units`, each scoring at least 60% of the best.

    A unit is on where its signed activation exceeds the midpoint between its
    inside and outside means. Runs from half to twice the span's length count.
    Returns the first `max_matches` matches (start, stop, text), how many there are, and the units used.
    """
    top = units.head(n_units)
    if top.empty:
        return [], 0, []
    top = top[top["score"].abs() >= 0.6 * abs(float(top["score"].iloc[0]))]  # only units near the best
    names = list(top["unit"])
    sign = top["sign"].to_numpy(np.float64)
    threshold = sign * (top["inside"].to_numpy(np.float64) + top["outside"].to_numpy(np.float64)) / 2
    length = stop - start
    lo_len, hi_len = max(1, length // 2), max(2, 2 * length)
    on = np.zeros(rec.n_rows, dtype=bool)
    for s in range(0, rec.n_rows, chunk_rows):
        e = min(rec.n_rows, s + chunk_rows)
        block = rec.units(names, s, e).astype(np.float64) * sign
        on[s:e] = (block > threshold).all(axis=1)
    edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
    run_starts, run_stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = [(a, b) for a, b in zip(run_starts, run_stops)
            if lo_len <= b - a <= hi_len and not (a < stop and b > start)]
    text, cor = rec.text, rec.char_of_row
    out = []
    for a, b in keep[:max_matches]:
        c0, c1 = int(cor[max(0, a - 20)]), int(cor[min(rec.n_rows - 1, b + 20)]) + 1
        ca, cb = int(cor[a]), int(cor[b - 1]) + 1
        out.append({"start": int(a), "stop": int(b), "before": text[c0:ca], "match": text[ca:cb],
                    "after": text[cb:c1]})
    return out, len(keep), names


def brush(rec: Recording, start, stop, *, kinds: list[str] | None = None, n_units: int = 15,
          pattern_units: int = 3, max_matches: int = 20) -> BrushResult:
    """Rank units for a selected span and find the span's pattern elsewhere."""
    s, e = check_span(rec, start, stop)
    units = rank_units(rec, s, e, kinds=kinds, n_units=n_units)
    matches, n, used = find_pattern(rec, units, s, e, n_units=pattern_units, max_matches=max_matches)
    return BrushResult(start=s, stop=e, units=units, matches=matches, n_matches=n, pattern_units=used)
