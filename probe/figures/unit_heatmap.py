"""Several units over the same passage (units x characters), with a concept marked in a strip above."""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from probe.figures.colors import ACTIVATION_SCALE, CONCEPT_SCALE, FONT, display_char, scale_per_unit
from probe.figures.passage import char_rows, check_range

CELL_W, CELL_H = 12, 22


def unit_heatmap(source, units: list[str], start: int | None = None, stop: int | None = None, *,
                 labels=None, concept: str | None = None, values=None, normalize: bool = True,
                 title: str | None = None) -> go.Figure:
    """Rows = units, columns = the passage's characters; optional concept strip on top.

    source: a Recording (units read over rows start:stop) or a list of
    characters with `values` of shape (len(chars), len(units)).
    labels: per-character concept labels for the passage, or per-row labels of
    the whole recording (sliced to the passage). With `normalize`, each unit is
    divided by its largest |value| in the passage so that all share one scale.
    """
    units = [str(u) for u in units]
    if not units:
        raise ValueError("no units to draw")
    if hasattr(source, "check_unit"):
        rec = source
        start, stop = check_range(rec, start, stop)
        rows = char_rows(rec, start, stop)
        vals = rec.units(units, start, stop)[rows - start]
        cor = np.asarray(rec.char_of_row[start:stop])[rows - start] if rec.by_bytes else rows
        chars = [rec.text[int(c)] for c in cor]
        if labels is not None:
            labels = np.asarray(labels)
            labels = labels[rows] if len(labels) == rec.n_rows else labels
    else:
        chars = list(source)
        vals = np.asarray(values, dtype=np.float32)
        rows = np.arange(len(chars)) + (start or 0)
    if vals.shape != (len(chars), len(units)):
        raise ValueError(f"values of shape {vals.shape} for {len(chars)} characters and {len(units)} units")
    if labels is not None and len(labels) != len(chars):
        raise ValueError(f"{len(labels)} labels for {len(chars)} characters")
    z = (scale_per_unit(vals) if normalize else vals).T
    n = len(chars)
    x = np.arange(n)
    shown = [display_char(c) for c in chars]
    hover = [[f"{u} = {vals[j, i]:.4g}<br>row {int(rows[j]):,} char {html.escape(repr(chars[j]))}"
              for j in range(n)] for i, u in enumerate(units)]
    has_strip = labels is not None
    fig = make_subplots(rows=2 if has_strip else 1, cols=1, shared_xaxes=True, vertical_spacing=0.02,
                        row_heights=[1, len(units)] if has_strip else None)
    lo, hi = (-1.0, 1.0) if normalize else (-float(np.nanmax(np.abs(vals))), float(np.nanmax(np.abs(vals))))
    if np.nanmin(vals) >= 0 and np.nanmax(vals) <= 1 and not normalize:
        lo, hi = 0.0, 1.0
    main_row = 2 if has_strip else 1
    if has_strip:  # binary labels as they are; others scaled to [0, 1] over the passage (hover: raw)
        raw_lab = np.asarray(labels, dtype=np.float64)
        lab = raw_lab
        if not set(np.unique(raw_lab)) <= {0.0, 1.0}:
            lo_l, hi_l = float(np.nanmin(raw_lab)), float(np.nanmax(raw_lab))
            lab = (raw_lab - lo_l) / (hi_l - lo_l) if hi_l > lo_l else raw_lab * 0
        fig.add_trace(go.Heatmap(z=lab.reshape(1, -1), x=x, y=[concept or "concept"], colorscale=CONCEPT_SCALE,
                                 zmin=0, zmax=1, showscale=False, customdata=raw_lab.reshape(1, -1),
                                 hovertemplate=f"{html.escape(concept or 'concept')}: %{{customdata:.4g}}"
                                 "<extra></extra>", xgap=0), row=1, col=1)
    fig.add_trace(go.Heatmap(
        z=z, x=x, y=units, colorscale=ACTIVATION_SCALE, zmin=lo, zmax=hi, hoverinfo="text", hovertext=hover,
        ygap=2, colorbar=dict(title=dict(text="activation, scaled per unit" if normalize else "activation",
                                         side="right"), thickness=14, lenmode="pixels", len=160)),
        row=main_row, col=1)
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=shown, tickangle=0, showgrid=False,
                     tickfont=dict(family=FONT, size=12), row=main_row, col=1)
    fig.update_xaxes(showticklabels=False, showgrid=False, row=1, col=1)
    fig.update_yaxes(autorange="reversed", tickfont=dict(family=FONT, size=11), showgrid=False)
    fig.update_layout(
        title=dict(text=title or f"{len(units)} units" + (f" and the concept {concept}" if concept else ""),
                   x=0, xref="paper", xanchor="left", font=dict(size=15)),
        width=max(500, n * CELL_W + 260), height=(len(units) + (1.6 if has_strip else 0)) * CELL_H + 130,
        margin=dict(l=100, r=140, t=50, b=40), plot_bgcolor="#ffffff", paper_bgcolor="#ffffff")
    fig.layout.meta = {"figure": "unit_heatmap", "units": units, "normalized": bool(normalize)}
    return fig
