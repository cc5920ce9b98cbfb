"""Brush to hypothesis (as in LSTMVis): the units that separate a span of the text from the rows around it,
and the other places where those units show the same pattern.

    from probe.analysis.hypothesis import brush
    res = brush(rec, 1200, 1215)          # rows [1200, 1215) of a Recording
    res.units.head()                      # unit, score, sign, inside, outside, separation
    res.matches[:3], res.to_dict()

A unit's activations are standardised over a context of rows around the span;
its score is the mean inside minus the mean in the margins on both sides (in
standard deviations), signed: a unit that is *off* inside and on around it
scores negative, and is matched with its sign flipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from probe.checks import ParamError, check_int
from probe.errors import ProbeError
from probe.names import Unit, array_name
from probe.record.recording import Recording

MAX_SPAN = 500
CONTEXT = 1000  # rows on each side used to standardise activations
COLUMNS = ["unit", "score", "sign", "inside", "outside", "separation"]


@dataclass
class BrushResult:
    """Units ranked for rows [start, stop) and the places where the top ones show the same pattern."""

    start: int
    stop: int
    units: pd.DataFrame  # unit, score, sign (+1 on inside, -1 off), inside, outside (raw means), separation
    matches: list[dict] = field(default_factory=list)  # start, stop, before, match, after
    n_matches: int = 0  # all places found (matches holds the first few)
    pattern_units: list[str] = field(default_factory=list)  # the units whose joint pattern was searched
    text: str = ""  # the span's text
    margin: int = 0  # rows compared on each side

    def to_dict(self) -> dict:
        """Plain JSON-able values (floats rounded to 6 digits)."""
        units = [{"unit": str(r.unit), "score": round(float(r.score), 6), "sign": int(r.sign),
                  "inside": round(float(r.inside), 6), "outside": round(float(r.outside), 6),
                  "separation": round(float(r.separation), 6)} for r in self.units.itertuples(index=False)]
        return {"start": self.start, "stop": self.stop, "text": self.text, "margin": self.margin,
                "units": units, "pattern_units": list(self.pattern_units), "n_matches": self.n_matches,
                "matches": [dict(m) for m in self.matches]}


def check_span(rec: Recording, start, stop) -> tuple[int, int]:
    """rows [start, stop) as ints: inside the recording, not empty, at most MAX_SPAN rows."""
    s = check_int("start", start, min=0)
    e = check_int("stop", stop, min=0)
    if not s < e <= rec.n_rows:
        raise ProbeError(f"span {s}:{e} is empty or outside the text (rows 0 to {rec.n_rows})")
    if e - s > MAX_SPAN:
        raise ProbeError(f"a span holds at most {MAX_SPAN} rows (got {e - s})")
    return s, e


def _check_list(name: str, values, allowed: list) -> list:
    if values is None:
        return list(allowed)
    if isinstance(values, (str, int)) or not hasattr(values, "__iter__"):
        raise ParamError(name, f"must be a list, not {values!r}")
    values = list(values)
    bad = [v for v in values if v not in allowed or isinstance(v, bool)]
    if bad or not values:
        raise ParamError(name, f"must be a non-empty list of {', '.join(map(str, allowed))}, not {values!r}")
    return list(dict.fromkeys(values))


def rank_units(rec: Recording, start: int, stop: int, *, layers: list[int] | None = None,
               kinds: list[str] | None = None, margin: int | None = None, n_units: int = 15) -> pd.DataFrame:
    """Units whose activation is high (or low) inside rows [start, stop) and the opposite in the margins."""
    start, stop = check_span(rec, start, stop)
    layers = _check_list("layers", layers, list(rec.layers))
    kinds = _check_list("kinds", kinds, list(rec.kinds))
    margin = max(3, stop - start) if margin is None else check_int("margin", margin, min=1)
    n_units = check_int("n_units", n_units, min=1)
    m0, m1 = max(0, start - margin), min(rec.n_rows, stop + margin)
    if m0 == start and m1 == stop:
        raise ProbeError("the span covers the whole text: nothing around it to compare with")
    c0, c1 = max(0, start - CONTEXT), min(rec.n_rows, stop + CONTEXT)
    frames = []
    for layer in layers:
        for kind in kinds:
            block = np.asarray(rec.array(array_name(layer, kind))[c0:c1], dtype=np.float64)
            mu, sd = block.mean(axis=0), block.std(axis=0)
            z = (block - mu) / np.where(sd > 1e-8, sd, np.inf)
            inside = z[start - c0:stop - c0]
            outside = np.concatenate([z[m0 - c0:start - c0], z[stop - c0:m1 - c0]])
            score = inside.mean(axis=0) - outside.mean(axis=0)
            sign = np.where(score >= 0, 1, -1)
            separation = np.where(sign > 0, inside.min(axis=0) - outside.max(axis=0),
                                  outside.min(axis=0) - inside.max(axis=0))
            raw_out = np.concatenate([block[m0 - c0:start - c0], block[stop - c0:m1 - c0]]).mean(axis=0)
            frames.append(pd.DataFrame({
                "unit": [Unit(layer, kind, i).name for i in range(block.shape[1])], "score": score, "sign": sign,
                "inside": block[start - c0:stop - c0].mean(axis=0), "outside": raw_out, "separation": separation}))
    df = pd.concat(frames, ignore_index=True)[COLUMNS]
    df = df[np.isfinite(df["score"])]
    df = df.reindex(df["score"].abs().sort_values(ascending=False, kind="stable").index).head(n_units)
    return df.reset_index(drop=True)


def find_pattern(rec: Recording, units: pd.DataFrame, start: int, stop: int, *, n_units: int = 3,
                 max_matches: int = 20, chunk_rows: int = 65536) -> tuple[list[dict], int, list[str]]:
    """Other runs of rows where the top units are all on (sign-adjusted) for about as long as the span.

    The top units: up to `n_units`, each scoring at least 60% of the best.
    A unit is on where its signed activation exceeds the midpoint between its
    inside and outside means. Runs from half to twice the span's length count.
    Returns the first `max_matches` matches (start, stop, before, match, after), how many there are,
    and the units used.
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
        on[s:e] = (rec.units(names, s, e).astype(np.float64) * sign > threshold).all(axis=1)
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


def brush(rec: Recording | str | Path, start: int, stop: int, *, layers: list[int] | None = None,
          kinds: list[str] | None = None, n_units: int = 15, pattern_units: int = 3, max_matches: int = 20,
          margin: int | None = None) -> BrushResult:
    """The units that best separate rows [start, stop) from the rows around them, and where else they agree.

    rec: a Recording or a recording folder.
    start, stop: the span, rows [start, stop) (1 to MAX_SPAN rows; rows are characters, or bytes in a
        byte recording).
    layers, kinds: the units to rank (default: every layer and every recorded kind).
    n_units: how many units to return, best first (by |score|).
    pattern_units: how many of the top units define the pattern searched in the rest of the text
        (0: no search).
    max_matches: how many of the places found to return (all are counted in `n_matches`).
    margin: rows on each side of the span to compare it with (default: the span's length, at least 3).
    Raises ProbeError (naming the parameter) on bad input.
    """
    rec = rec if isinstance(rec, Recording) else Recording.open(rec)
    s, e = check_span(rec, start, stop)
    pattern_units = check_int("pattern_units", pattern_units, min=0)
    max_matches = check_int("max_matches", max_matches, min=0)
    margin = max(3, e - s) if margin is None else check_int("margin", margin, min=1)
    units = rank_units(rec, s, e, layers=layers, kinds=kinds, n_units=n_units, margin=margin)
    matches, n, used = ([], 0, []) if pattern_units == 0 else \
        find_pattern(rec, units, s, e, n_units=pattern_units, max_matches=max_matches)
    cor = rec.char_of_row
    text = rec.text[int(cor[s]):int(cor[e - 1]) + 1]
    return BrushResult(start=s, stop=e, units=units, matches=matches, n_matches=n, pattern_units=used, text=text,
                       margin=margin)
