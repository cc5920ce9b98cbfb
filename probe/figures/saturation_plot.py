"""Gate saturation per layer (Karpathy, Johnson & Fei-Fei 2015): fraction of steps left- vs right-saturated."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from probe.figures.colors import QUALITATIVE
from probe.names import unit_name

GATE_NAMES = {"i": "input gate", "f": "forget gate", "o": "output gate", "g": "cell candidate",
              "r": "reset gate", "z": "update gate", "n": "new state"}


def saturation_figure(df: pd.DataFrame, *, title: str | None = None, left: float = 0.1,
                      right: float = 0.9) -> go.Figure:
    """One subplot per layer; each gate unit is a point (fraction of steps < `left`, fraction > `right`)."""
    if df.empty:
        raise ValueError("no gate values: the recording holds no gates (record with gates on; vanilla RNNs have none)")
    layers = sorted(int(l) for l in df["layer"].unique())
    gates = list(dict.fromkeys(df["gate"]))
    fig = make_subplots(rows=1, cols=len(layers), subplot_titles=[f"layer {l}" for l in layers],
                        shared_yaxes=True, horizontal_spacing=0.04)
    for c, layer in enumerate(layers, start=1):
        fig.add_trace(go.Scatter(x=[0, 1], y=[1, 0], mode="lines", line=dict(color="#bbbbbb", dash="dot", width=1),
                                 hoverinfo="skip", showlegend=False), row=1, col=c)
        for gi, gate in enumerate(gates):
            g = df[(df["layer"] == layer) & (df["gate"] == gate)]
            if g.empty:
                continue
            fig.add_trace(go.Scatter(
                x=g["left"], y=g["right"], mode="markers", name=GATE_NAMES.get(gate, gate), legendgroup=gate,
                showlegend=c == 1, marker=dict(size=6, opacity=0.65, color=QUALITATIVE[gi % len(QUALITATIVE)]),
                text=[unit_name(layer, gate, i) for i in g["index"]],
                hovertemplate="%{text}<br>left-saturated %{x:.2f}<br>right-saturated %{y:.2f}<extra></extra>"),
                row=1, col=c)
        fig.update_xaxes(title_text=f"fraction left-saturated (< {left:g})", range=[-0.02, 1.02],
                         gridcolor="#e5e5e5", row=1, col=c)
    fig.update_yaxes(title_text=f"fraction right-saturated (> {right:g})", range=[-0.02, 1.02], gridcolor="#e5e5e5",
                     row=1, col=1)
    fig.update_yaxes(range=[-0.02, 1.02], gridcolor="#e5e5e5")
    fig.update_layout(title=dict(text=title or "gate saturation", x=0, xref="paper", xanchor="left"),
                      width=330 * len(layers) + 220, height=420, plot_bgcolor="#ffffff",
                      legend=dict(x=1.02, y=1, title="gate"), margin=dict(l=70, r=20, t=70, b=60))
    fig.layout.meta = {"figure": "saturation"}
    return fig
