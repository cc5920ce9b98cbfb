"""From a checkpoint's meta: the training curve and the sample evolution table."""
from __future__ import annotations

import html
import math

import plotly.graph_objects as go

from probe.figures.colors import FONT, NEWLINE

LN2 = math.log(2)


def _metrics(meta_or_metrics) -> list[dict]:
    m = meta_or_metrics.get("metrics", []) if isinstance(meta_or_metrics, dict) else list(meta_or_metrics)
    if not m:
        raise ValueError("no training metrics in this checkpoint")
    return m


def training_curve(meta_or_metrics, *, title: str | None = None, unit: str = "char") -> go.Figure:
    """Train and validation bits per character (or byte) against the training step."""
    m = _metrics(meta_or_metrics)
    if isinstance(meta_or_metrics, dict) and meta_or_metrics.get("vocab", {}).get("kind") == "byte":
        unit = "byte"
    steps = [r["step"] for r in m]
    train = [r["train_loss"] / LN2 if r.get("train_loss") is not None else None for r in m]
    val = [r.get("val_bpc", r["val_loss"] / LN2 if r.get("val_loss") is not None else None) for r in m]
    fig = go.Figure([
        go.Scatter(x=steps, y=train, mode="lines+markers", name="train", line=dict(color="#7570b3", width=2),
                   marker=dict(size=4)),
        go.Scatter(x=steps, y=val, mode="lines+markers", name="validation", line=dict(color="#d95f02", width=2),
                   marker=dict(size=4)),
    ])
    best = min((v, s) for v, s in zip(val, steps) if v is not None) if any(v is not None for v in val) else None
    if best:
        fig.add_annotation(x=best[1], y=best[0], text=f"best {best[0]:.3f}", showarrow=True, arrowhead=2, ay=-30)
    fig.update_layout(
        title=dict(text=title or "training curve", x=0, xref="paper", xanchor="left"),
        xaxis=dict(title="step", gridcolor="#e5e5e5"), yaxis=dict(title=f"bits per {unit}", gridcolor="#e5e5e5"),
        width=680, height=400, plot_bgcolor="#ffffff", legend=dict(x=1.0, xanchor="right", y=1),
        margin=dict(l=70, r=20, t=50, b=60))
    fig.layout.meta = {"figure": "training_curve"}
    return fig


def _show_text(text: str, limit: int, per_line: int = 100) -> str:
    """Escaped HTML of a sample: tabs and newlines visible, long lines hard-wrapped at `per_line`."""
    t = text[:limit] + ("…" if len(text) > limit else "")
    out = []
    for ln in t.split("\n"):
        ln = ln.replace("\t", "→   ")
        out.append("<br>".join(html.escape(ln[i:i + per_line]) for i in range(0, max(len(ln), 1), per_line)))
    return f"{NEWLINE}<br>".join(out)


def _display_lines(text: str, limit: int, per_line: int = 100) -> int:
    t = text[:limit] + ("…" if len(text) > limit else "")
    return sum(max(1, -(-len(ln.replace("\t", "→   ")) // per_line)) for ln in t.split("\n"))


def samples_table(meta_or_samples, *, title: str | None = None, limit: int = 240, max_rows: int = 12) -> go.Figure:
    """How samples changed during training: one row per evaluation (evenly thinned to `max_rows`).

    Drawn with annotations on a pixel grid (not go.Table, whose static export
    clips its last rows), so every sample shows whole.
    """
    s = meta_or_samples.get("samples", []) if isinstance(meta_or_samples, dict) else list(meta_or_samples)
    if not s:
        raise ValueError("no samples in this checkpoint")
    if len(s) > max_rows:
        idx = sorted({round(i * (len(s) - 1) / (max_rows - 1)) for i in range(max_rows)})
        s = [s[i] for i in idx]
    line_h, pad, header = 15, 10, 28
    fig = go.Figure()
    y = header
    shapes = [dict(type="rect", x0=0, x1=1, y0=0, y1=header, fillcolor="#eeeeee", line_width=0, layer="below")]
    fig.add_annotation(x=0.01, y=header / 2, text="<b>step</b>", showarrow=False, xanchor="left", yanchor="middle")
    fig.add_annotation(x=0.1, y=header / 2, text="<b>sample (temperature 1)</b>", showarrow=False, xanchor="left",
                       yanchor="middle")
    for i, r in enumerate(s):
        n = _display_lines(r["text"], limit)
        h = n * line_h + 2 * pad
        if i % 2 == 0:
            shapes.append(dict(type="rect", x0=0, x1=1, y0=y, y1=y + h, fillcolor="#f3f5fa", line_width=0,
                               layer="below"))
        fig.add_annotation(x=0.01, y=y + pad, text=f"{r['step']:,}", showarrow=False, xanchor="left",
                           yanchor="top", font=dict(family=FONT, size=11))
        fig.add_annotation(x=0.1, y=y + pad, text=_show_text(r["text"], limit), showarrow=False, xanchor="left",
                           yanchor="top", align="left", font=dict(family=FONT, size=11))
        y += h
    fig.update_layout(
        title=dict(text=title or "samples during training", x=0, xref="paper", xanchor="left"),
        width=880, height=int(y) + 70, shapes=shapes, plot_bgcolor="#ffffff", paper_bgcolor="#ffffff",
        xaxis=dict(range=[0, 1], visible=False, fixedrange=True),
        yaxis=dict(range=[y, 0], visible=False, fixedrange=True), margin=dict(l=10, r=10, t=50, b=20))
    fig.layout.meta = {"figure": "samples", "steps": [int(r["step"]) for r in s]}
    return fig
