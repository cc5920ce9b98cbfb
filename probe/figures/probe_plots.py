"""Probe results: score per layer and kind next to the baselines; the sparse-probe curve."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from probe.figures.colors import QUALITATIVE
from probe.names import Site

METRIC_LABEL = {"auc": "held-out ROC AUC", "pearson": "held-out |Pearson r|", "accuracy": "held-out accuracy",
                "r2": "held-out R²"}
BASELINES = [  # column, legend name, marker symbol, color
    ("majority", "majority class", "line-ew-open", "#444444"),
    ("best_unit", "best single unit", "diamond", "#d95f02"),
    ("untrained", "untrained model", "x", "#7570b3"),
    ("control", "control task", "circle-open", "#e7298a"),
]


def _metric_label(table: pd.DataFrame) -> str:
    metrics = sorted(set(str(m) for m in table.get("metric", pd.Series(["score"]))))
    return " / ".join(METRIC_LABEL.get(m, m) for m in metrics)


def probe_figure(table: pd.DataFrame, *, title: str | None = None) -> go.Figure:
    """Bars: the linear probe's held-out score per layer and state kind; markers: the baselines."""
    if table.empty:
        raise ValueError("the probe table is empty")
    cats = [Site(int(l), k).label for l, k in zip(table["layer"], table["kind"])]
    hover = []
    for _, r in table.iterrows():
        parts = [f"probe {r['probe']:.3f}"] + [f"{name} {r[col]:.3f}" for col, name, _, _ in BASELINES
                                               if col in r and pd.notna(r[col])]
        if "selectivity" in r and pd.notna(r["selectivity"]):
            parts.append(f"selectivity {r['selectivity']:.3f}")
        hover.append("<br>".join(parts))
    fig = go.Figure(go.Bar(x=cats, y=table["probe"], name="linear probe (all units)", marker_color="#1b9e77",
                           opacity=0.85, hovertext=hover, hoverinfo="text+x"))
    for col, name, symbol, color in BASELINES:
        if col in table and table[col].notna().any():
            fig.add_trace(go.Scatter(x=cats, y=table[col], mode="markers", name=name,
                                     marker=dict(symbol=symbol, size=13, color=color, line=dict(width=2.5, color=color))))
    lowest = float(np.nanmin(table[["probe"] + [c for c, *_ in BASELINES if c in table]].to_numpy(float)))
    lo = min(0.0, lowest) if lowest < 0.3 else np.floor((lowest - 0.05) * 20) / 20  # zoom in on high scores
    fig.update_layout(
        title=dict(text=title or "linear probes vs baselines", x=0, xref="paper", xanchor="left"),
        xaxis=dict(title="layer.state kind"), yaxis=dict(title=_metric_label(table), range=[lo, 1.02]),
        width=max(520, 90 * len(cats) + 320), height=430, plot_bgcolor="#ffffff",
        legend=dict(orientation="v", x=1.02, y=1), margin=dict(l=70, r=20, t=50, b=60))
    fig.update_yaxes(gridcolor="#e5e5e5")
    fig.layout.meta = {"figure": "probe"}
    return fig


def sparse_figure(sparse: pd.DataFrame, *, title: str | None = None, metric: str | None = None) -> go.Figure:
    """Held-out score of a probe restricted to the k best units, vs k (log2 axis), one line per layer.kind."""
    if sparse.empty:
        raise ValueError("the sparse-probe table is empty")
    fig = go.Figure()
    for i, ((layer, kind), g) in enumerate(sparse.groupby(["layer", "kind"], sort=True)):
        g = g.sort_values("k")
        fig.add_trace(go.Scatter(x=g["k"], y=g["score"], mode="lines+markers", name=Site(int(layer), kind).label,
                                 line=dict(color=QUALITATIVE[i % len(QUALITATIVE)], width=2)))
    ks = sorted(int(k) for k in sparse["k"].unique())
    ylab = METRIC_LABEL.get(metric, metric) if metric else (
        _metric_label(sparse) if "metric" in sparse else "held-out score")
    fig.update_layout(
        title=dict(text=title or "sparse probes: score with the k best units", x=0, xref="paper", xanchor="left"),
        xaxis=dict(title="k (units in the probe)", type="log", tickmode="array", tickvals=ks,
                   ticktext=[str(k) for k in ks], gridcolor="#e5e5e5"),
        yaxis=dict(title=ylab, gridcolor="#e5e5e5"), width=640, height=420, plot_bgcolor="#ffffff",
        margin=dict(l=70, r=20, t=50, b=60))
    fig.layout.meta = {"figure": "sparse"}
    return fig
