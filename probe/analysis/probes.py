"""Linear probes per layer and state kind, with the baselines that make their numbers meaningful.

For each (layer, kind): a probe (logistic regression for binary and integer
concepts, the latter as capped categories; ridge regression for continuous ones)
is fitted on a contiguous train block and scored on the following test block.
Side by side:

* majority: always the train block's most common class (continuous: its mean);
* best_unit: the same probe on the single unit ranked best on the train block;
* untrained: the same probe on an untrained model of the same shape, recorded
  on the same text;
* control: the same probe on a control task (Hewitt & Liang 2019): every
  character type (the current character, or the previous k) gets one random
  label drawn, with a seed, from the real label distribution;
  selectivity = probe - control.

`sparse` holds the score with the best 1, 2, 4, ... units (ranked on the train block).
"""
from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from probe.analysis.concepts import Concept, as_concept, row_labels
from probe.checks import ParamError
from probe.errors import ProbeError
from probe.names import array_name, unit_name
from probe.record.recording import Recording, text_sha256

MAX_CLASSES = 5  # integer concepts: 0, 1, ..., MAX_CLASSES - 1 (the last means "at least")


@dataclass
class ProbeReport:
    table: pd.DataFrame
    sparse: pd.DataFrame
    concept: Concept
    task: str  # binary | categorical | continuous
    train_rows: tuple[int, int]
    test_rows: tuple[int, int]
    n_train: int
    n_test: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON types: the report as `probe fit-probe --json` writes it."""
        return {"concept": self.concept.name, "task": self.task, "train_rows": list(self.train_rows),
                "test_rows": list(self.test_rows), "table": json.loads(self.table.to_json(orient="records")),
                "sparse": json.loads(self.sparse.to_json(orient="records")), "notes": list(self.notes)}


# --------------------------------------------------------------------------- labels

def task_labels(concept: Concept, y: np.ndarray, max_classes: int = MAX_CLASSES) -> tuple[np.ndarray, str]:
    """Row labels as the probe sees them: binary 0/1, capped integer categories, or floats."""
    if concept.label_type == "binary":
        return y.astype(np.int64), "binary"
    if concept.label_type == "integer":
        return np.clip(y.astype(np.int64), 0, max_classes - 1), "categorical"
    return y.astype(np.float64), "continuous"


def row_types(rec: Recording, rows: np.ndarray, k: int = 1) -> list[str]:
    """The character type of each row: its character and the k-1 characters before it."""
    text = rec.text
    chars = np.asarray(rec.char_of_row)[rows] if rec.by_bytes else rows
    return [text[max(0, j - k + 1):j + 1] for j in np.asarray(chars)]


def control_labels(types: list[str], y_reference: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang control task: one random label per type, drawn from the empirical distribution of
    `y_reference` with `seed`; every row of a type gets its type's label. Deterministic per seed."""
    rng = np.random.default_rng(seed)
    uniq = sorted(set(types))
    drawn = rng.choice(np.asarray(y_reference), size=len(uniq), replace=True)
    table = dict(zip(uniq, drawn))
    return np.array([table[t] for t in types], dtype=np.asarray(y_reference).dtype)


# --------------------------------------------------------------------------- fitting

def _fit_score(task: str, X_tr: np.ndarray, y_tr: np.ndarray, X_te: np.ndarray, y_te: np.ndarray,
               C: float = 1.0, alpha: float = 1.0) -> float:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import r2_score
    mu, sd = X_tr.mean(0), X_tr.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    A, B = (X_tr - mu) / sd, (X_te - mu) / sd
    if task == "continuous":
        return float(r2_score(y_te, Ridge(alpha=alpha).fit(A, y_tr).predict(B)))
    if len(np.unique(y_tr)) < 2:
        return float(np.mean(y_te == y_tr[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegression(C=C, max_iter=300).fit(A, y_tr)
    return float(np.mean(clf.predict(B) == y_te))


def _majority(task: str, y_tr: np.ndarray, y_te: np.ndarray) -> float:
    if task == "continuous":
        from sklearn.metrics import r2_score
        return float(r2_score(y_te, np.full(len(y_te), y_tr.mean())))
    values, counts = np.unique(y_tr, return_counts=True)
    return float(np.mean(y_te == values[np.argmax(counts)]))


def rank_units(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Unit indices by |Pearson r| with the (numeric) label, best first."""
    xc = X - X.mean(0)
    yc = (y - y.mean()).astype(np.float64)
    denom = np.sqrt((xc ** 2).sum(0) * (yc ** 2).sum())
    r = np.where(denom > 0, (xc * yc[:, None]).sum(0) / np.where(denom > 0, denom, 1), 0.0)
    return np.argsort(-np.abs(r), kind="stable")


def _sample(a: int, b: int, n: int) -> np.ndarray:
    return np.arange(a, b) if b - a <= n else np.unique(np.linspace(a, b - 1, n).astype(np.int64))


def _features(rec: Recording, layer: int, kind: str, rows: np.ndarray) -> np.ndarray:
    X = np.asarray(rec.array(array_name(layer, kind))[rows], dtype=np.float64)
    return np.nan_to_num(X, nan=0.0, posinf=np.finfo(np.float32).max, neginf=np.finfo(np.float32).min)


def sparse_ks(h: int) -> list[int]:
    ks, k = [], 1
    while k < h:
        ks.append(k)
        k *= 2
    return ks + [h]


# --------------------------------------------------------------------------- untrained baseline

def untrained_recording(rec: Recording, progress: bool = False) -> Recording:
    """An untrained model of the same shape recorded on the same text (cached next to the recording)."""
    from probe.record.recorder import record
    ck = (rec.meta.get("checkpoint") or {}).get("path")
    if not ck or not Path(ck).exists():
        raise ParamError("untrained", f"the recording {rec.path} names no checkpoint that exists here; "
                                      "pass {untrained=RECORDING} instead of auto", advice=True)
    if (rec.meta.get("checkpoint") or {}).get("untrained"):
        raise ProbeError(f"{rec.path} already is a recording of an untrained model")
    cache = rec.path.parent / f".{rec.path.name}.untrained"
    if (cache / "meta.json").exists():
        cached = Recording.open(cache)
        if cached.n_rows == rec.n_rows and text_sha256(cached.text) == text_sha256(rec.text):
            return cached
    print(f"probe: recording an untrained model of the same shape on the same text into {cache}", file=sys.stderr)
    out = record(ck, rec.text, cache, gates=False, overwrite=True, untrained=True, progress=progress)
    return out if isinstance(out, Recording) else Recording.open(cache)


def _check_same_shape(rec: Recording, other: Recording) -> None:
    if other.n_rows != rec.n_rows or other.hidden_size != rec.hidden_size or other.num_layers != rec.num_layers:
        raise ProbeError(f"the untrained recording {other.path} ({other.n_rows:,} rows, {other.num_layers}x"
                         f"{other.hidden_size}) does not match {rec.path} ({rec.n_rows:,} rows, "
                         f"{rec.num_layers}x{rec.hidden_size})")
    if text_sha256(other.text) != text_sha256(rec.text):
        raise ProbeError(f"the untrained recording {other.path} holds another text than {rec.path}")


# --------------------------------------------------------------------------- the report

def fit_probes(rec: Recording, concept: Concept | str, *, kinds: list[str] | None = None,
               layers: list[int] | None = None, untrained: Recording | str | None = None, seed: int = 0,
               train_frac: float = 0.7, max_train: int = 10000, max_test: int = 5000, control_k: int = 1,
               sparse: bool = True) -> ProbeReport:
    """Probes, baselines and the sparse curve for every chosen layer and state kind (default: h and c)."""
    concept = as_concept(concept)
    have = rec.kinds
    kinds = [k for k in ("h", "c") if k in have] if kinds is None else list(kinds)
    for k in kinds:
        if k not in have:
            raise ProbeError(f"the recording {rec.path} has no {k!r} arrays (it holds {', '.join(have)})")
    layers = list(rec.layers) if layers is None else list(layers)
    for l in layers:
        if not 0 <= l < rec.num_layers:
            raise ProbeError(f"no layer {l}: the model has layers 0..{rec.num_layers - 1}")
    if not 0 < train_frac < 1:
        raise ProbeError(f"train_frac must be between 0 and 1, not {train_frac}")
    notes: list[str] = []
    if isinstance(untrained, str):
        if untrained != "auto":
            untrained = Recording.open(untrained)
        else:
            try:
                untrained = untrained_recording(rec)
                _check_same_shape(rec, untrained)
            except ProbeError as e:
                notes.append(f"no untrained baseline: {e}")
                untrained = None
    if isinstance(untrained, Recording):
        _check_same_shape(rec, untrained)

    y_all, task = task_labels(concept, row_labels(rec, concept))
    split = int(round(rec.n_rows * train_frac))
    tr, te = _sample(0, split, max_train), _sample(split, rec.n_rows, max_test)
    y_tr, y_te = y_all[tr], y_all[te]
    for name, part in (("train", y_tr), ("test", y_te)):
        if len(part) < 2 or np.all(part == part[0]):
            raise ProbeError(f"concept {concept.name} is constant in the {name} block of the text "
                             f"(rows {'0:' + str(split) if name == 'train' else str(split) + ':' + str(rec.n_rows)}); "
                             f"a probe needs both values in both blocks")
    types_tr, types_te = row_types(rec, tr, control_k), row_types(rec, te, control_k)
    ctrl = control_labels(types_tr + types_te, y_tr, seed=seed)
    c_tr, c_te = ctrl[:len(tr)], ctrl[len(tr):]
    majority = _majority(task, y_tr, y_te)
    metric = "r2" if task == "continuous" else "accuracy"

    rows, curve = [], []
    for layer in layers:
        for kind in kinds:
            X_tr, X_te = _features(rec, layer, kind, tr), _features(rec, layer, kind, te)
            full = _fit_score(task, X_tr, y_tr, X_te, y_te)
            order = rank_units(X_tr, y_tr.astype(np.float64))
            best = int(order[0])
            best_score = _fit_score(task, X_tr[:, [best]], y_tr, X_te[:, [best]], y_te)
            control = _fit_score(task, X_tr, c_tr, X_te, c_te)
            unt = np.nan
            if isinstance(untrained, Recording) and kind in untrained.kinds:
                unt = _fit_score(task, _features(untrained, layer, kind, tr), y_tr,
                                 _features(untrained, layer, kind, te), y_te)
            rows.append({"layer": layer, "kind": kind, "metric": metric, "probe": full, "majority": majority,
                         "best_unit": best_score, "untrained": unt, "control": control,
                         "selectivity": full - control, "best_unit_name": unit_name(layer, kind, best)})
            if sparse:
                for k in sparse_ks(rec.hidden_size):
                    cols = order[:k]
                    score = full if k == rec.hidden_size else (
                        best_score if k == 1 else _fit_score(task, X_tr[:, cols], y_tr, X_te[:, cols], y_te))
                    curve.append({"layer": layer, "kind": kind, "k": k, "score": score})
    return ProbeReport(table=pd.DataFrame(rows), sparse=pd.DataFrame(curve, columns=["layer", "kind", "k", "score"]),
                       concept=concept, task=task, train_rows=(0, split), test_rows=(split, rec.n_rows),
                       n_train=len(tr), n_test=len(te), notes=notes)
