"""PCA / UMAP scatter of hidden states, colored by a concept."""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from probe.figures.colors import QUALITATIVE


def embedding_figure(df: pd.DataFrame, *, concept: str | None = None, method: str = "pca",
                     title: str | None = None) -> go.Figure:
    """Points (x, y) colored by `label`: categories for few distinct labels, a color scale otherwise."""
    if df.empty:
        raise ValueError("no points to draw")
    hover = [f"row {int(r):,} char {html.escape(repr(c))}" for r, c in zip(df["row"], df["char"])]
    labels = df["label"] if "label" in df else pd.Series(np.zeros(len(df)))
    fig = go.Figure()
    name = concept or "label"
    uniq = pd.unique(labels.dropna())
    numeric = pd.api.types.is_numeric_dtype(labels) and labels.dtype != bool
    integral = numeric and len(uniq) > 0 and bool(np.all(np.mod(np.asarray(uniq, dtype=float), 1) == 0))
    categorical = labels.dtype == bool or not numeric or (integral and len(uniq) <= 12)
    if categorical:
        order = sorted(uniq, key=lambda v: (str(type(v)), v))
        for i, v in enumerate(order):
            m = (labels == v).to_numpy()
            text = ("in " + name if v else "outside " + name) if labels.dtype == bool or set(order) <= {0, 1} \
                else f"{name} = {v}"
            fig.add_trace(go.Scatter(
                x=df["x"][m], y=df["y"][m], mode="markers", name=text,
                marker=dict(size=5, opacity=0.6, color=(["#bdbdbd", "#e66101"][int(bool(v))]
                                                        if set(order) <= {0, 1} else QUALITATIVE[i % len(QUALITATIVE)])),
                hovertext=[h for h, keep in zip(hover, m) if keep], hoverinfo="text"))
    else:
        fig.add_trace(go.Scatter(
            x=df["x"], y=df["y"], mode="markers", hovertext=hover, hoverinfo="text",
            marker=dict(size=5, opacity=0.7, color=labels, colorscale="Viridis",
                        colorbar=dict(title=dict(text=name, side="right"), thickness=14))))
    axis = "PC" if method == "pca" else "UMAP "
    fig.update_layout(
        title=dict(text=title or f"{method.upper()} of states" + (f", colored by {concept}" if concept else ""),
                   x=0, xref="paper", xanchor="left"),
        xaxis=dict(title=f"{axis}1", gridcolor="#eeeeee", zeroline=False),
        yaxis=dict(title=f"{axis}2", gridcolor="#eeeeee", zeroline=False),
        width=640, height=540, plot_bgcolor="#ffffff", legend=dict(x=1.02, y=1),
        margin=dict(l=60, r=20, t=50, b=60))
    fig.layout.meta = {"figure": "embedding"}
    return fig
