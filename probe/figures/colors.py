"""Color scales and the display form of characters shared by every figure."""
from __future__ import annotations

import numpy as np

# The post's scale: blue for low, green for high, white in the middle.
ACTIVATION_SCALE = [[0.0, "#2166ac"], [0.25, "#92c5de"], [0.5, "#f7f7f7"], [0.75, "#a6d96a"], [1.0, "#1a7837"]]
# The post's red rows: white for improbable guesses, red for confident ones.
PROBABILITY_SCALE = [[0.0, "#ffffff"], [0.15, "#fde0d2"], [0.5, "#f4845f"], [1.0, "#b2182b"]]
# A concept marker strip: white outside, orange inside.
CONCEPT_SCALE = [[0.0, "#ffffff"], [1.0, "#e66101"]]
QUALITATIVE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
TEXT_DARK, TEXT_LIGHT, TEXT_FAINT = "#111111", "#ffffff", "#9a9a9a"

NEWLINE, SPACE, TAB, GUESS_SPACE = "\u21b5", "\u00b7", "\u2192", "\u2423"  # ↵ · → ␣


def display_char(ch: str, *, guess: bool = False) -> str:
    """What to draw for a character: whitespace and control characters made visible.

    In the text, a space is a faint middle dot; in the guess rows (`guess=True`)
    it is an open box, so that a guessed space reads as a guess. A symbol of
    several characters (a byte model's non-ASCII byte, "\\xc3") shows as "…".
    """
    if ch == "\n":
        return NEWLINE
    if ch == " ":
        return GUESS_SPACE if guess else SPACE
    if ch == "\t":
        return TAB
    if ch == "":
        return ""
    if len(ch) > 1:  # a byte model's partial character, e.g. "\\xc3": too wide for a cell (hover has it)
        return "\u2026"
    if len(ch) == 1 and (ord(ch) < 32 or ord(ch) == 127):
        return "\u00b7"
    return ch


def is_marker(ch: str) -> bool:
    """True where `display_char` drew a stand-in (shown faint) rather than the character itself."""
    return ch != "" and (ch.isspace() or (len(ch) == 1 and (ord(ch) < 32 or ord(ch) == 127)))


def symmetric_range(values: np.ndarray, quantile: float = 1.0) -> tuple[float, float]:
    """The color range for a unit's values.

    Gate-like values in [0, 1]: (0, 1). Values of both signs: centred on 0
    (white = 0). Values of one sign only (e.g. a long-memory cell state far
    from 0): the passage's own (min, max), so that its variation shows.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return -1.0, 1.0
    if v.min() >= 0.0 and v.max() <= 1.0:
        return 0.0, 1.0
    m = float(np.quantile(np.abs(v), quantile)) if quantile < 1 else float(np.abs(v).max())
    m = m if m > 0 else 1.0
    lo, hi = float(v.min()), float(v.max())
    if (lo >= -0.1 * m or hi <= 0.1 * m) and hi > lo:  # one-sided
        return lo, hi
    return -m, m


def scale_per_unit(vals: np.ndarray) -> np.ndarray:
    """Each column mapped into [-1, 1]: divided by max |v| if it has both signs, else min-max scaled."""
    out = np.zeros_like(vals, dtype=np.float64)
    for j in range(vals.shape[1]):
        lo, hi = symmetric_range(vals[:, j])
        if (lo, hi) == (0.0, 1.0):
            lo, hi = float(np.nanmin(vals[:, j])), float(np.nanmax(vals[:, j]))
        out[:, j] = 2 * (vals[:, j] - lo) / (hi - lo) - 1 if hi > lo else 0.0
    return out


def text_color_on(value: float, lo: float, hi: float) -> str:
    """Dark text on pale cells, white text on strong ones."""
    if not np.isfinite(value) or hi <= lo:
        return TEXT_DARK
    t = (value - lo) / (hi - lo)
    return TEXT_LIGHT if (t < 0.15 or t > 0.85) else TEXT_DARK
