"""Figures of `probe sae-compare`: units against features per concept, and the unexplained features' heatmaps."""
from __future__ import annotations

import plotly.graph_objects as go

from probe.figures.text_heatmap import text_heatmap
from probe.names import parse_unit


def units_vs_features_figure(table, title: str | None = None) -> go.Figure:
    """Grouped bars per concept: the best unit's and the best feature's held-out score, each with its own family's
    chance level as a marker (`SAECompare.table`)."""
    fig = go.Figure()
    for side, color in (("unit", "#4c78a8"), ("feature", "#f58518")):
        fig.add_bar(name=f"best {side}", x=list(table.concept), y=list(table[f"{side}_score"]), marker_color=color,
                    text=list(table[f"best_{side}"]), hovertemplate="%{x}: %{text} %{y:.3f}<extra></extra>",
                    offsetgroup=side)
        fig.add_scatter(name=f"chance ({side}s)", x=list(table.concept), y=list(table[f"{side}_chance"]),
                        mode="markers", marker=dict(symbol="line-ew-open", size=28, color="#222", line_width=2),
                        offsetgroup=side, showlegend=side == "unit", hovertemplate="chance %{y:.3f}<extra></extra>")
    fig.update_layout(barmode="group", title=title or "best unit vs best feature per concept (held out)",
                      yaxis=dict(title="held-out score (AUC or |r|)", range=[0, 1.02]),
                      template="plotly_white", height=420, width=max(600, 110 * len(table)))
    return fig


def feature_heatmaps(frec, unexplained, *, before: int = 240, after: int = 120, width: int = 100
                     ) -> list[tuple[str, go.Figure]]:
    """(slug, text heatmap) of each feature of `unexplained` (SAECompare.unexplained) around its top context."""
    out = []
    for r in unexplained.itertuples():
        if not r.top_rows:
            continue
        peak = int(r.top_rows[0])
        start, stop = max(0, peak - before), min(frec.n_rows, peak + after)
        title = (f"{r.feature}: active on {r.frequency:.1%} of rows; no concept explains it "
                 f"(closest {r.best_concept or '-'}), rows {start:,}:{stop:,}")
        out.append((parse_unit(r.feature).slug, text_heatmap(frec, r.feature, start, stop, width=width, title=title)))
    return out
