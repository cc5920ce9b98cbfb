"""2-D maps of hidden states (PCA or UMAP) over a seeded subsample of rows, colored by a concept."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from probe.analysis.concepts import Concept, as_concept
from probe.checks import check_choice, check_int
from probe.names import Unit, array_name
from probe.record.recording import Recording

METHODS = ("pca", "umap")


def sample_rows(n_rows: int, n: int, seed: int = 0) -> np.ndarray:
    """Sorted row indices: all rows, or n drawn without replacement with `seed`."""
    if n_rows <= n:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=n, replace=False))


def pca_2d(X: np.ndarray, dims: int = 2) -> np.ndarray:
    Xc = X - X.mean(0)
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    return Xc @ vt[:dims].T


def embed_states(rec: Recording, *, layer: int, kind: str = "h", method: str = "pca",
                 concept: Concept | str | None = None, n: int = 5000, seed: int = 0) -> pd.DataFrame:
    """Columns x, y, row, char, label (the concept's row label, NaN without a concept)."""
    concept = as_concept(concept)
    check_choice("method", method, METHODS)
    check_int("n", n, min=3)
    rec.check_unit(Unit(layer, kind, 0))
    rows = sample_rows(rec.n_rows, n, seed)
    X = np.asarray(rec.array(array_name(layer, kind))[rows], dtype=np.float64)
    X = np.nan_to_num(X, nan=0.0, posinf=1e6, neginf=-1e6)
    if method == "pca":
        xy = pca_2d(X)
    else:
        os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "probe-numba"))
        import umap
        Z = pca_2d(X, min(50, X.shape[1], len(rows) - 1)) if X.shape[1] > 50 else X
        xy = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(rows) - 1)).fit_transform(Z)
    text = rec.text
    chars = np.asarray(rec.char_of_row)[rows]
    label = np.full(len(rows), np.nan)
    if concept is not None:
        label = rec.row_labels(concept.labels(text))[rows].astype(np.float64)
    return pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "row": rows, "char": [text[j] for j in chars],
                         "label": label})
