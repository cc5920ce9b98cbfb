"""Units against features: for each concept, the best held-out detector among a site's units and among the
features of a sparse autoencoder on that site, by the same statistics; and the features no concept explains.

Both sides run `find_neurons` with the same split (`select_frac`), the same permutations (`n_perm`,
`seed`) and the same statistic (held-out AUC or |r|); each side's chance level is the family-wise one of
its own family (the best of the site's H units, or of the SAE's d_sae features, under the same
permutations of the concept), so a larger dictionary pays for its size. `margin` = score - chance.

A feature is *explained* when some concept's search gives it a family-wise p <= alpha. Among the live
features that no concept explains, the ones with the largest variance over the recording are listed with
their top contexts: candidates for what the built-in concepts miss.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from probe.analysis.concepts import BUILTIN, Concept, as_concept
from probe.analysis.neuron_card import context, separated_peaks
from probe.analysis.neurons import NeuronSearch, find_neurons
from probe.checks import check_int, check_number
from probe.errors import ProbeError

CHUNK_ROWS = 4096  # rows of features densified at a time by the per-feature statistics


@dataclass
class SAECompare:
    """`table`: one row per concept (units beside features); `unexplained`: features no concept explains."""

    site: str
    sae: str
    n_units: int
    n_features: int
    select_rows: tuple[int, int]
    report_rows: tuple[int, int]
    n_perm: int
    table: pd.DataFrame
    unexplained: pd.DataFrame
    feature_stats: pd.DataFrame = field(repr=False)
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict:
        t = self.table
        return {"site": self.site, "sae": self.sae, "n_units": self.n_units, "n_features": self.n_features,
                "select_rows": list(self.select_rows), "report_rows": list(self.report_rows), "n_perm": self.n_perm,
                "concepts": int(len(t)), "features_win": int((t.winner == "features").sum()),
                "units_win": int((t.winner == "units").sum()),
                "live_features": int((self.feature_stats.frequency > 0).sum()),
                "explained_features": int(self.feature_stats.explained.sum()), "skipped": self.skipped}

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "concepts": json.loads(self.table.to_json(orient="records")),
                "unexplained": json.loads(self.unexplained.to_json(orient="records"))}


def _best(res: NeuronSearch) -> dict:
    """The best unit of a search by its held-out score (ties: the select-part order)."""
    t = res.table
    row = t.loc[t.score.astype(float).fillna(-np.inf).idxmax()]
    return {"name": str(row.unit), "score": float(row.score), "sign": int(row.sign), "p": float(row.p_value),
            "chance": float(res.chance)}


def feature_stats(frec, chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame:
    """Per feature over the whole recording: frequency (fraction of rows active), mean, variance, max."""
    d = frec.hidden_size
    s1, s2 = np.zeros(d), np.zeros(d)
    nz, mx = np.zeros(d, np.int64), np.zeros(d, np.float32)
    name = frec.arrays_for()[0]
    for _, _, block in frec.iter_chunks([name], chunk_rows):
        z = block[name]
        s1 += z.sum(0, dtype=np.float64)
        s2 += np.square(z, dtype=np.float64).sum(0)
        nz += (z > 0).sum(0)
        np.maximum(mx, z.max(0), out=mx)
    n = frec.n_rows
    mean = s1 / n
    site = frec.feature_site
    return pd.DataFrame({"feature": [u.name for u in site.units(d)], "index": np.arange(d), "frequency": nz / n,
                         "mean": mean, "variance": np.maximum(s2 / n - mean ** 2, 0.0), "max": mx})


def compare_units_features(frec, concepts: list[Concept | str] | None = None, *, select_frac: float = 0.5,
                           n_perm: int = 100, seed: int = 0, alpha: float = 0.05, n_unexplained: int = 10,
                           n_contexts: int = 3, window: int = 40) -> SAECompare:
    """Every concept (default: the built-in ones) searched among the units of the SAE's site of `frec.rec` and
    among the features of `frec` (a probe.sae.features.FeatureRecording) with the same split and permutations.

    Concepts absent from (or constant on) the recorded text are skipped and named in `skipped`.
    """
    check_number("alpha", alpha, min=0, max=1)
    n_unexplained = check_int("n_unexplained", n_unexplained, min=0)
    n_contexts = check_int("n_contexts", n_contexts, min=1)
    rec, state = frec.rec, frec.state_site
    chosen = [as_concept(c) for c in (list(BUILTIN) if concepts is None else concepts)]
    if not chosen:
        raise ProbeError("no concepts to compare units and features on")
    rows, skipped = [], {}
    best_per_feature = np.zeros(frec.hidden_size)
    best_concept = np.full(frec.hidden_size, "", dtype=object)
    min_p = np.ones(frec.hidden_size)
    res_u = None
    for c in chosen:
        try:
            res_u = find_neurons(rec, c, kinds=[state.kind], layers=[state.layer], select_frac=select_frac,
                                 n_perm=n_perm, seed=seed)
        except ProbeError as e:  # absent from the text, or in only one part of the split
            if concepts is not None and len(chosen) == 1:
                raise
            skipped[c.name] = str(e)
            continue
        res_f = find_neurons(frec, c, select_frac=select_frac, n_perm=n_perm, seed=seed)
        bu, bf = _best(res_u), _best(res_f)
        mu, mf = bu["score"] - bu["chance"], bf["score"] - bf["chance"]
        rows.append({"concept": c.name, "label_type": c.label_type, "metric": res_u.metric,
                     "best_unit": bu["name"], "unit_score": bu["score"], "unit_sign": bu["sign"],
                     "unit_chance": bu["chance"], "unit_margin": mu, "unit_p": bu["p"],
                     "best_feature": bf["name"], "feature_score": bf["score"], "feature_sign": bf["sign"],
                     "feature_chance": bf["chance"], "feature_margin": mf, "feature_p": bf["p"],
                     "score_diff": bf["score"] - bu["score"],
                     "winner": "features" if mf > mu else "units" if mu > mf else "tie"})
        t = res_f.table.sort_values("index")
        score, p = t.score.to_numpy(float), t.p_value.to_numpy(float)
        better = np.nan_to_num(score - res_f.chance, nan=-np.inf) > best_per_feature
        best_per_feature = np.where(better, score - res_f.chance, best_per_feature)
        best_concept = np.where(better, c.name, best_concept)
        min_p = np.minimum(min_p, p)
    if not rows:
        raise ProbeError(f"none of the concepts ({', '.join(c.name for c in chosen)}) can be scored on recording "
                         f"{rec.path}: {next(iter(skipped.values()))}")
    stats = feature_stats(frec)
    stats["best_concept"] = best_concept
    stats["best_margin"] = best_per_feature
    stats["min_p"] = min_p
    stats["explained"] = min_p <= alpha
    table = pd.DataFrame(rows)
    cand = stats[(stats.frequency > 0) & ~stats.explained].sort_values("variance", ascending=False, kind="stable")
    unexplained = _with_contexts(frec, cand.head(n_unexplained), n_contexts, window)
    return SAECompare(site=state.label, sae=frec.sae_name, n_units=rec.hidden_size, n_features=frec.hidden_size,
                      select_rows=tuple(res_u.select_rows), report_rows=tuple(res_u.report_rows), n_perm=n_perm,
                      table=table, unexplained=unexplained, feature_stats=stats, skipped=skipped)


def _with_contexts(frec, cand: pd.DataFrame, n_contexts: int, window: int) -> pd.DataFrame:
    """`cand` with each feature's top contexts (peak rows at least window/2 apart) as text and rows."""
    cand = cand.reset_index(drop=True)
    if cand.empty:
        return cand.assign(closest_unit=[], closest_unit_r=[], top_rows=[], top_contexts=[])
    cols = cand["index"].to_numpy(np.int64)
    values = np.empty((frec.n_rows, len(cols)), np.float32)
    for s in range(0, frec.n_rows, CHUNK_ROWS):
        e = min(frec.n_rows, s + CHUNK_ROWS)
        values[s:e] = frec.features(s, e, cols)
    unit_idx, unit_r = _closest_units(frec, values)
    tops, texts = [], []
    for j in range(len(cols)):
        peaks = separated_peaks(values[:, j], n_contexts, max(1, window // 2))
        tops.append(peaks)
        texts.append([(lambda c: c["left"] + "\u00ab" + c["char"] + "\u00bb" + c["right"])(context(frec, r, window))
                      for r in peaks])
    return cand.assign(closest_unit=[frec.state_site.unit(int(i)).name for i in unit_idx],
                       closest_unit_r=unit_r, top_rows=tops, top_contexts=texts)


def _closest_units(frec, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each column of `values` (features over every row), the unit of the SAE's site whose activation
    correlates most with it, and that |Pearson r|: how far a feature is from anything a single unit holds."""
    n, k = values.shape
    site = frec.rec.array(frec.state_site.array)
    su = suu = None
    sf, sff = values.sum(0, dtype=np.float64), np.square(values, dtype=np.float64).sum(0)
    cross = None
    for s in range(0, n, CHUNK_ROWS):
        e = min(n, s + CHUNK_ROWS)
        u = np.asarray(site[s:e], dtype=np.float64)
        f = values[s:e].astype(np.float64)
        su = u.sum(0) if su is None else su + u.sum(0)
        suu = np.square(u).sum(0) if suu is None else suu + np.square(u).sum(0)
        cross = u.T @ f if cross is None else cross + u.T @ f
    cov = cross / n - np.outer(su / n, sf / n)
    sd = np.sqrt(np.maximum(np.outer(suu / n - (su / n) ** 2, sff / n - (sf / n) ** 2), 0))
    r = np.abs(np.divide(cov, sd, out=np.zeros_like(cov), where=sd > 0))
    best = r.argmax(0)
    return best, r[best, np.arange(k)]
