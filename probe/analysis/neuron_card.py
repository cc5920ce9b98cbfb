"""A neuron card: what makes one unit fire, in one dataclass.

Top and bottom activating contexts (LSTM units are signed: both tails), an
activation histogram with quantiles, the density (fraction of steps where the
unit is at least half as far from zero as its extreme), and for the top layer's
h the characters the unit promotes and suppresses through the head's output
weights (the column of `head.weight` for the unit).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.errors import ProbeError
from probe.record.recording import Recording

QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


@dataclass
class NeuronCard:
    unit: str
    top: list[dict]          # row, activation, left, char, right: highest activations, separated peaks
    bottom: list[dict]       # the same for the lowest activations
    hist_counts: np.ndarray
    hist_edges: np.ndarray
    quantiles: dict[float, float]
    density: float
    mean: float
    std: float
    n_rows: int
    promoted: list[tuple[str, float]] = field(default_factory=list)
    suppressed: list[tuple[str, float]] = field(default_factory=list)
    note: str = ""
    atlas: dict | None = None  # the unit's entry in the recording's atlas (probe.analysis.atlas), when there is one

    def to_dict(self) -> dict:
        """Plain JSON types: the card as `probe neuron --json` writes it (quantile keys as strings)."""
        return {"unit": self.unit, "top": self.top, "bottom": self.bottom, "hist_counts": self.hist_counts.tolist(),
                "hist_edges": self.hist_edges.tolist(), "quantiles": {str(k): v for k, v in self.quantiles.items()},
                "density": self.density, "mean": self.mean, "std": self.std, "promoted": self.promoted,
                "suppressed": self.suppressed, "note": self.note,
                "atlas": None if self.atlas is None else {k: v for k, v in self.atlas.items() if k != "contexts"}}


def _unit_values(rec: Recording, unit: str, chunk_rows: int = 262144) -> np.ndarray:
    u = rec.check_unit(unit)
    a = rec.array(u.array)
    out = np.empty(rec.n_rows, np.float32)
    for s in range(0, rec.n_rows, chunk_rows):
        out[s:s + chunk_rows] = a[s:s + chunk_rows, u.index]
    return out


def separated_peaks(values: np.ndarray, n: int, min_gap: int) -> list[int]:
    """Indices of the n largest values, no two closer than min_gap (greedy, best first)."""
    order = np.argsort(-values, kind="stable")
    taken: list[int] = []
    blocked = np.zeros(len(values), bool)
    for i in order:
        if blocked[i] or not np.isfinite(values[i]):
            continue
        taken.append(int(i))
        blocked[max(0, i - min_gap + 1):i + min_gap] = True
        if len(taken) == n:
            break
    return taken


def context(rec: Recording, row: int, window: int) -> dict:
    text = rec.text
    j = int(np.asarray(rec.char_of_row)[row]) if rec.by_bytes else row
    return {"left": text[max(0, j - window):j], "char": text[j], "right": text[j + 1:j + 1 + window // 2]}


def output_effect(checkpoint: str | Path, rec: Recording, index: int, n: int = 10):
    """(promoted, suppressed): symbols with the largest / smallest output weight from unit `index`."""
    from probe.model import checkpoint as ckpt
    ck = ckpt.load(checkpoint)
    w = ck.model.head.weight.detach().cpu().numpy()[:, index]
    if w.shape[0] != ck.vocab.size or ck.model.cfg.rnn_size != rec.hidden_size:
        raise ProbeError(f"checkpoint {checkpoint} does not match the recording's model")
    order = np.argsort(-w, kind="stable")
    sym = ck.vocab.symbol
    return ([(sym(int(i)), float(w[i])) for i in order[:n]],
            [(sym(int(i)), float(w[i])) for i in order[::-1][:n]])


def neuron_card(rec: Recording, unit: str, *, n_top: int = 20, window: int = 40,
                checkpoint: str | Path | None = None, bins: int = 50, atlas: bool = True) -> NeuronCard:
    """Everything about one unit of a recording (see the module docstring); with `atlas`, the unit's entry in
    the recording's atlas when one was made from it (`probe.analysis.atlas.atlas_for`)."""
    u = rec.check_unit(unit)
    x = _unit_values(rec, u.name)
    finite = np.isfinite(x)
    if not finite.any():
        raise ProbeError(f"unit {u} has no finite activation in {rec.path}")
    xf = x[finite]
    gap = max(1, window // 2)
    top = [dict(row=r, activation=float(x[r]), **context(rec, r, window))
           for r in separated_peaks(np.where(finite, x, -np.inf), n_top, gap)]
    bottom = [dict(row=r, activation=float(x[r]), **context(rec, r, window))
              for r in separated_peaks(np.where(finite, -x, -np.inf), n_top, gap)]
    counts, edges = np.histogram(xf, bins=bins)
    q = dict(zip(QUANTILES, (float(v) for v in np.quantile(xf, QUANTILES))))
    peak = float(np.abs(xf).max())
    density = float(np.mean(np.abs(xf) >= 0.5 * peak)) if peak > 0 else 0.0
    card = NeuronCard(unit=u.name, top=top, bottom=bottom, hist_counts=counts, hist_edges=edges, quantiles=q,
                      density=density, mean=float(xf.mean()), std=float(xf.std()), n_rows=rec.n_rows)
    if atlas:
        from probe.analysis.atlas import atlas_for
        found = atlas_for(rec)
        card.atlas = found.entry(u.name) if found is not None else None
    if u.kind == "h" and u.layer == rec.num_layers - 1:
        meta_ck = rec.meta.get("checkpoint") or {}
        ck = checkpoint or (None if meta_ck.get("untrained") else meta_ck.get("path"))
        if ck and Path(ck).exists():
            card.promoted, card.suppressed = output_effect(ck, rec, u.index)
        else:
            card.note = "no checkpoint found for the output weights (give the model's checkpoint)"
    else:
        card.note = "output weights: only the top layer's h feeds the head"
    return card
