"""Figures of a model comparison: a Δloss text heatmap, closer probability by distance, the error breakdown."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from probe.errors import ProbeError
from probe.figures.colors import QUALITATIVE
from probe.figures.text_heatmap import text_heatmap


def delta_heatmap(chars, delta, start: int = 0, stop: int | None = None, *, a: str = "A", b: str = "B",
                  width: int = 100, clip: float | None = None) -> go.Figure:
    """The passage chars[start:stop] on backgrounds colored by Δ = bits(B) - bits(A) of each character:
    green where A wins, blue where B wins, white where they tie (the post's text figure)."""
    chars = list(chars)
    stop = len(chars) if stop is None else stop
    if not 0 <= start < stop <= len(chars):
        raise ProbeError(f"range {start}:{stop} is not inside the text ({len(chars):,} characters)")
    d = np.nan_to_num(np.asarray(delta, dtype=np.float64)[start:stop])
    lim = clip if clip is not None else max(1.0, float(np.quantile(np.abs(d), 0.99)) if len(d) else 1.0)
    fig = text_heatmap(chars[start:stop], values=np.clip(d, -lim, lim), unit="Δ bits", width=width,
                       zrange=(-lim, lim),
                       title=f"Δ bits per character = {b} − {a}: green where {a} wins, blue where {b} wins "
                             f"(characters {start:,}–{stop:,})")
    fig.layout.meta = dict(fig.layout.meta, figure="delta_heatmap", start=start, stop=stop)
    return fig


def long_range_figure(df: pd.DataFrame, a: str = "A", b: str = "B") -> go.Figure:
    """Mean probability each side gives a closer, against the distance to its opener (one panel a kind)."""
    if df is None or len(df) == 0:
        raise ProbeError("no matched openers and closers in the text: no long-range figure")
    from plotly.subplots import make_subplots

    kinds = list(dict.fromkeys(df["kind"]))
    cols = min(3, len(kinds))
    nrows = -(-len(kinds) // cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=kinds, shared_yaxes=True)
    pa, pb = [c for c in df.columns if c.startswith("p_")]
    for i, kind in enumerate(kinds):
        sub = df[df.kind == kind]
        r, c = i // cols + 1, i % cols + 1
        for col, name, color in ((pa, a, QUALITATIVE[0]), (pb, b, QUALITATIVE[1])):
            fig.add_trace(go.Scatter(x=sub.distance, y=sub[col], mode="lines+markers", name=name,
                                     legendgroup=name, showlegend=i == 0, line=dict(color=color),
                                     customdata=sub.n, hovertemplate="%{x}: p=%{y:.3f} (n=%{customdata})"),
                          row=r, col=c)
        fig.update_yaxes(range=[0, 1.02], row=r, col=c)
    fig.update_layout(title="probability of the closer by distance to its opener (characters)",
                      height=300 * nrows + 80, width=380 * cols + 80, plot_bgcolor="#ffffff")
    fig.update_xaxes(type="category", tickangle=-45)
    fig.layout.meta = {"figure": "long_range"}
    return fig


def error_breakdown_figure(table: pd.DataFrame, title: str = "errors by the first oracle that removes them"
                           ) -> go.Figure:
    """Horizontal bars: each class's share of the errors, colored by group, in the oracles' order."""
    if table is None or len(table) == 0:
        raise ProbeError("the error breakdown is empty")
    groups = list(dict.fromkeys(table["group"]))
    fig = go.Figure()
    for i, g in enumerate(groups):
        sub = table[table.group == g]
        fig.add_trace(go.Bar(y=sub.cls, x=sub.share * 100, orientation="h", name=g,
                             marker_color=QUALITATIVE[i % len(QUALITATIVE)],
                             text=[f"{s:.1%} ({n:,})" for s, n in zip(sub.share, sub.n_errors)],
                             textposition="outside", hovertemplate="%{y}: %{x:.1f}%"))
    fig.update_layout(title=title, barmode="group", height=24 * len(table) + 160, width=820,
                      # room for the longest bar's label ("18.7% (26,599)") beside it, never clipped
                      xaxis=dict(title="share of errors (%)", range=[0, float(table.share.max()) * 100 * 1.35 + 0.5]),
                      plot_bgcolor="#ffffff",
                      yaxis=dict(autorange="reversed", categoryorder="array", categoryarray=list(table.cls)))
    fig.layout.meta = {"figure": "error_breakdown"}
    return fig
