"""The Atlas tab's logic over an Atlas (probe.analysis.atlas): filtering its table, naming a unit to open
(`L2.c.502`, `best`, `best:CONCEPT`), and finding a unit's top context. Plain Python, no Dash."""
from __future__ import annotations

import math
import re

import numpy as np

from probe.errors import ProbeError
from probe.names import Unit, parse_unit

MAX_ATLAS_ROWS = 1000  # rows sent to the browser at once (the rest: narrow the filters)
COLUMNS = ["unit", "concept", "metric", "score", "chance", "margin", "p_value", "explained", "second"]
OFF = " (off)"  # after a concept the unit is low inside of (sign -1)
BEST = "best"


def _num(v, digits: int = 3):
    """A JSON-safe rounded number (None for NaN or a missing value)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return round(x, digits) if math.isfinite(x) else None


def top_rows(entry) -> list[int]:
    """The peak rows of a unit's top contexts, from an atlas entry (a list, or its text form from a CSV)."""
    rows = entry.get("top_rows") if isinstance(entry, dict) else entry
    if rows is None or (isinstance(rows, float) and not math.isfinite(rows)):
        return []
    if isinstance(rows, str):
        return [int(x) for x in re.findall(r"-?\d+", rows)]
    return [int(x) for x in np.asarray(rows).ravel()]


def concepts_of(table) -> list[tuple[str, int]]:
    """(concept, number of units it is the best explanation of), most frequent first."""
    counts = table["concept"].astype(str).value_counts()
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def filtered(table, *, concept: str | None = None, layer: int | None = None, kind: str | None = None,
             explained_only: bool = False):
    """The atlas table's rows that pass the filters, in the atlas's order (best margin first)."""
    keep = np.ones(len(table), bool)
    if concept is not None:
        keep &= (table["concept"].astype(str) == concept).to_numpy()
    if layer is not None:
        keep &= (table["layer"].astype(int) == int(layer)).to_numpy()
    if kind is not None:
        keep &= (table["kind"].astype(str) == kind).to_numpy()
    if explained_only:
        keep &= table["explained"].astype(bool).to_numpy()
    return table[keep]


def table_rows(df, limit: int = MAX_ATLAS_ROWS) -> list[dict]:
    """Rows for the browser's table (id = the unit's name), at most `limit`."""
    out = []
    for r in df.head(limit).to_dict("records"):
        second = r.get("second_concept")
        second = "" if second is None or (isinstance(second, float) and not math.isfinite(second)) else str(second)
        if second and _num(r.get("second_score")) is not None:
            second += f" ({_num(r.get('second_score')):.3f})"
        off = _num(r.get("sign")) is not None and float(r["sign"]) < 0
        out.append({"id": str(r["unit"]), "unit": str(r["unit"]), "concept": str(r["concept"]) + (OFF if off else ""),
                    "metric": str(r.get("metric", "")), "score": _num(r.get("score")),
                    "chance": _num(r.get("chance")), "margin": _num(r.get("margin")),
                    "p_value": _num(r.get("p_value"), 4), "explained": "\u2713" if bool(r.get("explained")) else "",
                    "second": second})
    return out


def describe_entry(entry: dict) -> str:
    """One line for a unit's atlas entry: its concept, held-out score beside chance, p-value, range."""
    sign = "" if _num(entry.get("sign")) is None else ("on " if float(entry["sign"]) > 0 else "off ")
    line = (f"{entry['unit']}: {sign}{entry['concept']}, held-out {entry.get('metric', 'score')} "
            f"{_num(entry.get('score')):.3f} (chance {_num(entry.get('chance')):.3f}), p = "
            f"{_num(entry.get('p_value'), 4):g}{'' if entry.get('explained') else ' (not explained)'}")
    lo, hi = _num(entry.get("act_min")), _num(entry.get("act_max"))
    if lo is not None and hi is not None:
        line += f"; activations {lo:+.3g} to {hi:+.3g}"
    return line


def resolve_unit(spec: str, atlas) -> Unit:
    """The unit that `spec` names: a unit name (`L2.c.502`, `L2.h.f12`), `best` (the atlas's best unit) or
    `best:CONCEPT` (its best unit for that concept). ProbeError (one line) for anything else."""
    if not isinstance(spec, str) or not spec.strip():
        raise ProbeError(f"--unit must name a unit such as L2.c.502, or best, or best:CONCEPT, not {spec!r}")
    spec = spec.strip()
    head, sep, concept = spec.partition(":")
    if head != BEST:
        return parse_unit(spec)
    if atlas is None:
        raise ProbeError(f"cannot open on {spec}: this recording has no atlas (make one with probe atlas REC)")
    concept = concept.strip() if sep else None
    if concept is not None and not concept:
        raise ProbeError("best: needs a concept after the colon, e.g. best:quote")
    if concept is not None:
        known = [c for c, _n in concepts_of(atlas.table)]
        if concept not in known:
            raise ProbeError(f"no unit of the atlas is best explained by {concept!r}; its concepts include "
                             f"{', '.join(known[:8])}")
    try:
        name = atlas.best_unit(concept)
    except ProbeError:
        raise
    except (KeyError, ValueError, IndexError) as e:
        raise ProbeError(f"the atlas has no best unit for {concept or 'any concept'}: {e}") from None
    if not name:
        raise ProbeError(f"the atlas has no best unit for {concept or 'any concept'}")
    return parse_unit(str(name))


class CombinedAtlas:
    """Several atlases (a recording's units and its SAE's features) as one: one table, best margin first."""

    def __init__(self, atlases: list):
        import pandas as pd
        self.parts = list(atlases)
        tables = [a.table for a in self.parts]
        self.table = pd.concat(tables, ignore_index=True).sort_values(
            ["margin", "unit"], ascending=[False, True], kind="stable").reset_index(drop=True)

    def entry(self, unit: str) -> dict | None:
        return next((e for e in (a.entry(unit) for a in self.parts) if e is not None), None)

    def best_unit(self, concept: str | None = None) -> str:
        t = self.table if concept is None else self.table[self.table["concept"] == concept]
        if t.empty:
            raise ProbeError(f"no unit of the atlas is explained by {concept!r}" if concept else "the atlas is empty")
        return str(t["unit"].iloc[0])


def combined(atlases: list):
    """None for no atlas, the atlas itself for one, a CombinedAtlas for several (None entries are skipped)."""
    have = [a for a in atlases if a is not None]
    return None if not have else have[0] if len(have) == 1 else CombinedAtlas(have)


def context_cells(entry: dict, limit: int = 5) -> list[dict]:
    """The top contexts of an atlas entry as {row, activation, chars: [(shown character, rgb)]}, coloured as the
    text view colours a unit. Reads the atlas's compact form (text + one level letter a character, see
    probe.analysis.atlas_page.levels) and the plain form (chars + acts)."""
    from probe.analysis.atlas_page import LEVELS
    from probe.figures.colors import display_char, symmetric_range
    from dashboards.windows import activation_rgb
    contexts = entry.get("contexts") or [] if isinstance(entry, dict) else []
    values = [float(v) for c in contexts[:limit] for v in (c.get("acts") or []) if _num(v) is not None]
    lo, hi = symmetric_range(np.asarray(values or [0.0]))
    out = []
    for c in contexts[:limit]:
        if "levels" in c:  # the atlas's compact form: one letter a character, 'a' + LEVELS is zero
            text, lv = str(c.get("text") or ""), str(c.get("levels") or "")
            cells = [(display_char(ch), activation_rgb(float(ord(l) - 97 - LEVELS), -LEVELS, LEVELS))
                     for ch, l in zip(text, lv)]
        else:
            chars, acts = list(c.get("chars") or []), list(c.get("acts") or [])
            cells = [(display_char(str(ch)), activation_rgb(float(a) if _num(a) is not None else 0.0, lo, hi))
                     for ch, a in zip(chars, acts)]
        out.append({"row": int(c.get("row", -1)), "activation": _num(c.get("activation")), "chars": cells})
    return out
