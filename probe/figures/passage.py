"""A passage of text with one unit's values per character: what the text figures draw."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from probe.errors import ProbeError


@dataclass
class Passage:
    """Characters with one value each, and optionally the model's top-k guesses and loss after each.

    `rows` are the recording rows the characters come from (for hover text);
    `topk[i]` is a list of (symbol, probability) for the symbol after character i.
    """

    chars: list[str]
    values: np.ndarray
    topk: list[list[tuple[str, float]]] | None = None
    loss: np.ndarray | None = None
    rows: np.ndarray | None = None
    unit: str = "activation"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.chars = list(self.chars)
        self.values = np.asarray(self.values, dtype=np.float32).reshape(-1)
        n = len(self.chars)
        if n == 0:
            raise ProbeError("the passage is empty: nothing to draw")
        if len(self.values) != n:
            raise ProbeError(f"{len(self.values)} values for {n} characters")
        if self.topk is not None and len(self.topk) != n:
            raise ProbeError(f"{len(self.topk)} top-k lists for {n} characters")
        if self.loss is not None:
            self.loss = np.asarray(self.loss, dtype=np.float32).reshape(-1)
            if len(self.loss) != n:
                raise ProbeError(f"{len(self.loss)} loss values for {n} characters")
        self.rows = np.arange(n) if self.rows is None else np.asarray(self.rows)

    def __len__(self) -> int:
        return len(self.chars)


def char_rows(rec, start: int, stop: int) -> np.ndarray:
    """Rows in [start, stop) that end a character: every row for char models, a character's last byte otherwise.

    The state after a character's last byte is the state after reading the whole character.
    """
    if not rec.by_bytes:
        return np.arange(start, stop)
    cor = np.asarray(rec.char_of_row[start:stop])
    last = np.ones(len(cor), dtype=bool)
    last[:-1] = cor[1:] != cor[:-1]
    return np.arange(start, stop)[last]


def check_range(rec, start: int | None, stop: int | None) -> tuple[int, int]:
    """Validate a row range against a recording: one clear ProbeError when it is empty or past the end."""
    n = rec.n_rows
    start = 0 if start is None else int(start)
    stop = n if stop is None else int(stop)
    if start < 0 or stop < 0:
        raise ProbeError(f"range {start}:{stop} has a negative end; rows run from 0 to {n}")
    if start >= n:
        raise ProbeError(f"range {start}:{stop} starts past the end of the recording ({n:,} rows)")
    if stop > n:
        raise ProbeError(f"range {start}:{stop} runs past the end of the recording ({n:,} rows)")
    if stop <= start:
        raise ProbeError(f"range {start}:{stop} is empty")
    return start, stop


def passage_from_recording(rec, unit: str, start: int | None = None, stop: int | None = None,
                           *, topk: bool = True) -> Passage:
    """One unit's values over rows [start, stop) of a recording, one entry per character."""
    u = rec.check_unit(unit)
    start, stop = check_range(rec, start, stop)
    rows = char_rows(rec, start, stop)
    values = rec.unit(u, start, stop)[rows - start]
    cor = np.asarray(rec.char_of_row[start:stop])[rows - start] if rec.by_bytes else rows
    text = rec.text
    chars = [text[int(c)] for c in cor]
    guesses = None
    if topk and rec.has("topk_ids"):
        allk = rec.topk(start, stop)
        guesses = [allk[int(r - start)] for r in rows]
    loss = np.asarray(rec.loss_bits[start:stop], dtype=np.float32)[rows - start] if rec.has("loss_bits") else None
    return Passage(chars=chars, values=values, topk=guesses, loss=loss, rows=rows, unit=u.name)
