"""The post's figure: a passage laid out as text, each character on a background colored by one unit.

Built as a grid: a go.Heatmap paints the cells (rows = wrapped lines, and
under each line optionally k rows of the model's next-character guesses),
and go.Scatter text traces draw the characters on top, so each character's
color can follow its background and whitespace markers can be faint.
"""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from probe.figures.colors import (ACTIVATION_SCALE, FONT, PROBABILITY_SCALE, TEXT_DARK, TEXT_FAINT,
                                  display_char, is_marker, symmetric_range, text_color_on)
from probe.figures.passage import Passage, passage_from_recording

CELL_W, CELL_H = 12, 19  # pixels per character cell
COLORBAR_LEN = 180


def wrap_positions(chars: list[str], width: int) -> tuple[np.ndarray, np.ndarray]:
    """(line, column) of each character: a newline ends its line; lines longer than `width` wrap."""
    if width < 1:
        raise ValueError("width must be at least 1")
    lines = np.empty(len(chars), dtype=np.int64)
    cols = np.empty(len(chars), dtype=np.int64)
    line = col = 0
    for i, ch in enumerate(chars):
        if col >= width:
            line, col = line + 1, 0
        lines[i], cols[i] = line, col
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
    return lines, cols


def as_passage(source, unit: str | None, start: int | None, stop: int | None, values, topk) -> Passage:
    """A Passage from a Recording (+ unit, range), a Passage, or characters with `values` (and `topk` lists)."""
    if isinstance(source, Passage):
        return source
    if hasattr(source, "check_unit"):  # a Recording
        if unit is None:
            raise ValueError("a unit is needed to draw a recording")
        return passage_from_recording(source, unit, start, stop, topk=bool(topk))
    chars = list(source)
    if values is None:
        raise ValueError("values are needed with characters")
    guesses = topk if isinstance(topk, (list, tuple)) else None
    return Passage(chars=chars, values=values, topk=guesses, unit=unit or "activation")


def text_heatmap(source, unit: str | None = None, start: int | None = None, stop: int | None = None, *,
                 values=None, topk=False, width: int = 100, title: str | None = None,
                 zrange: tuple[float, float] | None = None, k: int = 5) -> go.Figure:
    """A passage as text, each character's background colored by `unit` (blue low, green high).

    source: a Recording (with `unit`, rows `start:stop`), a Passage, or a list
    of characters with `values` (and optionally `topk` as lists of (symbol, prob)).
    topk: True to add the model's top-`k` next-character guesses in rows under
    each line, colored by probability (white to red).
    zrange: the color range; by default centred on 0 when the passage's values
    take both signs, (0, 1) for gates, else the passage's own (min, max).
    """
    p = as_passage(source, unit, start, stop, values, topk)
    show_topk = bool(topk) and p.topk is not None
    kk = min(k, max((len(t) for t in p.topk), default=0)) if show_topk else 0
    block = 1 + kk + (1 if kk else 0)  # the text row, k guess rows, a spacer
    lines, cols = wrap_positions(p.chars, width)
    n_lines = int(lines[-1]) + 1
    n_rows = n_lines * block - (1 if kk else 0)
    lo, hi = zrange if zrange is not None else symmetric_range(p.values)
    ncols = int(cols.max()) + 1

    z = np.full((n_rows, ncols), np.nan)
    hover = np.full((n_rows, ncols), "", dtype=object)
    ty = lines * block
    z[ty, cols] = p.values
    for i, ch in enumerate(p.chars):
        hover[ty[i], cols[i]] = _hover(p, i, ch)
    shown = [display_char(ch) for ch in p.chars]
    colors = [TEXT_FAINT if is_marker(ch) and text_color_on(v, lo, hi) == TEXT_DARK else text_color_on(v, lo, hi)
              for ch, v in zip(p.chars, p.values)]  # markers faint on pale cells, white on strong ones
    unit_name = p.unit
    traces = [
        go.Heatmap(z=z, x=np.arange(ncols), y=np.arange(n_rows), colorscale=ACTIVATION_SCALE, zmin=lo, zmax=hi,
                   hoverinfo="text", hovertext=hover, hoverongaps=False, ygap=1, name=unit_name,
                   colorbar=dict(title=dict(text=f"{unit_name}", side="right"), lenmode="pixels", len=COLORBAR_LEN,
                                 y=1, yanchor="top", thickness=14, x=1.0, xanchor="left", xpad=8)),
        go.Scatter(x=cols, y=ty, mode="text", text=shown, hoverinfo="skip", showlegend=False,
                   textfont=dict(family=FONT, size=13, color=colors)),
    ]
    if kk:
        pz = np.full((n_rows, ncols), np.nan)
        gx, gy, gt, gc = [], [], [], []
        for i, guesses in enumerate(p.topk):
            for j, (sym, prob) in enumerate(guesses[:kk]):
                y = ty[i] + 1 + j
                pz[y, cols[i]] = prob
                hover[y, cols[i]] = f"guess {j + 1} after {_quote(p.chars[i])}: {_quote(sym)} p={prob:.3f}"
                gx.append(cols[i]), gy.append(y), gt.append(display_char(sym, guess=True))
                gc.append("#ffffff" if prob > 0.55 else TEXT_DARK)
        traces.insert(1, go.Heatmap(
            z=pz, x=np.arange(ncols), y=np.arange(n_rows), colorscale=PROBABILITY_SCALE, zmin=0, zmax=1,
            hoverinfo="text", hovertext=hover, hoverongaps=False, xgap=1, ygap=1, name="top-k",
            colorbar=dict(title=dict(text="p(next)", side="right"), lenmode="pixels", len=COLORBAR_LEN, y=1,
                          yanchor="top", thickness=14, x=1.0, xanchor="left", xpad=95)))
        traces.append(go.Scatter(x=gx, y=gy, mode="text", text=gt, hoverinfo="skip", showlegend=False,
                                 textfont=dict(family=FONT, size=11, color=gc)))
    fig = go.Figure(traces)
    first_row = [int(p.rows[np.argmax(lines == ln)]) for ln in range(n_lines)]
    bottom = max(20, COLORBAR_LEN - n_rows * CELL_H + 30)  # room for the color bars below a short passage
    step = max(1, n_lines // 40)
    fig.update_layout(
        title=dict(text=title or f"{unit_name}", x=0, xref="paper", xanchor="left", font=dict(size=15)),
        width=ncols * CELL_W + 70 + (190 if kk else 110), height=n_rows * CELL_H + 70 + bottom,
        margin=dict(l=60, r=(190 if kk else 110), t=50, b=bottom), plot_bgcolor="#ffffff", paper_bgcolor="#ffffff",
        xaxis=dict(range=[-0.5, ncols - 0.5], showgrid=False, zeroline=False, showticklabels=False, fixedrange=True),
        yaxis=dict(range=[n_rows - 0.5, -0.5], showgrid=False, zeroline=False, fixedrange=True,
                   tickmode="array", tickvals=[ln * block for ln in range(0, n_lines, step)],
                   ticktext=[f"{first_row[ln]:,}" for ln in range(0, n_lines, step)],
                   tickfont=dict(size=9, color="#888888"), title=dict(text="row", font=dict(size=10))),
        hoverlabel=dict(font=dict(family=FONT)),
    )
    fig.layout.meta = {"figure": "text_heatmap", "unit": unit_name, "block": block, "k": kk}
    return fig


def _quote(ch: str) -> str:
    return html.escape(repr(ch))


def _hover(p: Passage, i: int, ch: str) -> str:
    parts = [f"row {int(p.rows[i]):,} char {_quote(ch)}", f"{p.unit} = {float(p.values[i]):.4g}"]
    if p.loss is not None and np.isfinite(p.loss[i]):
        parts.append(f"loss of next: {float(p.loss[i]):.2f} bits")
    if p.topk is not None:
        parts.append("next: " + "  ".join(f"{_quote(s)} {pr:.2f}" for s, pr in p.topk[i][:5]))
    return "<br>".join(parts)
