"""A passage coloured by a per-character change of loss (an ablation's Δloss), in the post's text layout."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from probe.figures.text_heatmap import text_heatmap


def delta_heatmap(text: str, delta: np.ndarray, start: int | None = None, stop: int | None = None, *,
                  width: int = 100, title: str | None = None, label: str = "Δloss (bits)") -> go.Figure:
    """Characters `start:stop` of `text`, each on a background of `delta` (centred on 0; NaN: blank).

    Without `start`/`stop`: up to 2,000 characters around the largest |delta|.
    """
    delta = np.asarray(delta, dtype=np.float32)
    if len(delta) != len(text):
        raise ValueError(f"{len(delta)} values for {len(text)} characters")
    if start is None and stop is None:
        centre = int(np.nanargmax(np.abs(np.nan_to_num(delta)))) if len(delta) else 0
        start = max(0, centre - 1000)
        stop = min(len(text), start + 2000)
    start, stop = start or 0, len(text) if stop is None else stop
    part = delta[start:stop]
    m = float(np.nanmax(np.abs(part))) if np.isfinite(part).any() else 1.0
    return text_heatmap(list(text[start:stop]), values=part, unit=label, width=width,
                        zrange=(-(m or 1.0), m or 1.0), title=title)
