"""An atlas of every unit: its best explanation from a library of candidate concepts, held out, with chance.

Method (the held-out statistics of `find_neurons`, for many concepts at once):

* rows are split into a select part (the first `select_frac`) and a report part (the rest);
* strength of a unit against a candidate: |2 AUC - 1| for binary candidates, |Pearson r| for integer and
  continuous ones (0 at chance, 1 at most, so both kinds rank on one scale);
* select part: every unit against every candidate; the `n_report` candidates with the largest strength
  minus Z_SELECT nominal standard errors are kept per unit (a rare candidate must do better to be kept);
* report part: the kept candidates are scored exactly (AUC from the exact mid-ranks of the unit's
  report-part values; Pearson r) and against `n_perm` copies of the labels circularly shifted and
  block-permuted (which keeps their autocorrelation); each (unit, candidate) gets its permutation spread
  (rms) and a studentised statistic t = strength / spread; the unit's concept is the kept candidate with
  the largest strength - Z_REPORT x spread;
* chance is family-wise (max-T): per permutation, the largest permuted t over all units x kept
  candidates; a unit's p-value is (C + 1) / (n_perm + 1), C counting the permutations whose maximum
  reached its t; `explained = p <= alpha`; `chance` is the score (in the row's metric) the unit needed to
  be explained (the floor(alpha (n_perm + 1))-th largest maximum times its spread), so margin > 0 iff explained.

Everything is a matrix product over unit-major blocks: (units x rows) ranks or standardised values times
(rows x candidates) labels on the select part, and per candidate (units x rows) times (rows x permutations)
on the report part. The recording is read in row chunks, one block of units and one part at a time
(memory: about 2 x 4 bytes x units-in-block x rows-in-part, plus the labels); it is never loaded whole.
"""
from __future__ import annotations

import contextlib
import json
import math
import mmap
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from probe.analysis.candidates import RowConcept, candidate_library, concept_labels
from probe.analysis.concepts import Concept
from probe.checks import ParamError, check_int, check_number
from probe.errors import ProbeError
from probe.names import Unit

FORMAT = "probe-atlas"
VERSION = 1
WINDOW_BEFORE, WINDOW_AFTER = 32, 7  # rows of context around a peak (40 in all)
Z_SELECT = 3.0  # candidates are ranked on the select part by strength - Z_SELECT x its nominal standard error
Z_REPORT = 2.0  # ... and the concept chosen among the kept ones by strength - Z_REPORT x its permutation spread
STRONG = 0.6    # coverage also counts explained units of strength >= STRONG (AUC >= 0.8, |r| >= 0.6)
COVERAGE_COLUMNS = ["layer", "kind", "n_units", "n_explained", "n_strong", "fraction", "fraction_strong"]
TABLE_COLUMNS = ["unit", "layer", "kind", "index", "concept", "label_type", "metric", "score", "sign", "chance",
                 "p_value", "explained", "margin", "second_concept", "second_score", "select_score", "act_min",
                 "act_max", "top_rows"]


# --------------------------------------------------------------------------- kernels

@numba.njit(nogil=True, cache=True)
def _walk_ties(x, order, out):
    """Centered mid-ranks (rank - (n + 1) / 2, ties averaged) of each row of x, given its ascending order."""
    U, n = x.shape
    half = 0.5 * n
    for u in range(U):
        i = 0
        while i < n:
            j = i + 1
            v = x[u, order[u, i]]
            while j < n and x[u, order[u, j]] == v:
                j += 1
            r = np.float32(0.5 * (i + j) - half)  # mean of ranks i+1..j, centered
            for k in range(i, j):
                out[u, order[u, k]] = r
            i = j


def midranks(x: np.ndarray, out: np.ndarray, threads: int = 1, step: int = 32) -> np.ndarray:
    """Exact centered mid-ranks of each row of x (units x rows) into out, `step` rows at a time
    (numpy's argsort, on `threads` threads: it releases the GIL)."""
    def part(i):
        sl = slice(i, min(len(x), i + step))
        _walk_ties(x[sl], np.argsort(x[sl], axis=1), out[sl])

    starts = range(0, len(x), step)
    if threads > 1 and len(x) > step:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(part, starts))
    else:
        for i in starts:
            part(i)
    return out


@numba.njit(parallel=True, cache=True)
def _bucket_ranks(x, out):
    """Approximate centered mid-ranks: values are grouped by the top 16 bits of their order-preserving key
    (about 1% relative width) and each group gets its mid-rank; for ranking candidates, not for scores."""
    U, n = x.shape
    half = 0.5 * n
    for u in numba.prange(U):
        cnt = np.zeros(65536, np.int64)
        keys = np.empty(n, np.int64)
        bits = x[u].view(np.uint32)
        for t in range(n):
            b = np.int64(bits[t])
            if b == 0x80000000:  # -0.0 is 0.0
                b = 0
            k = (0xFFFFFFFF - b) if b >= 0x80000000 else (b + 0x80000000)
            keys[t] = k >> 16
            cnt[keys[t]] += 1
        mid = np.empty(65536, np.float32)
        s = 0
        for d in range(65536):
            mid[d] = np.float32(s + 0.5 * (cnt[d] + 1) - 0.5 - half)
            s += cnt[d]
        for t in range(n):
            out[u, t] = mid[keys[t]]


@numba.njit(parallel=True, cache=True)
def _clean_moments(x, mean, sd, lo, hi):
    """Per row of x (units x rows): non-finite values replaced in place (NaN -> 0, +-inf -> +-3e38), then
    the mean, standard deviation (float64, two passes), minimum and maximum."""
    U, n = x.shape
    for u in numba.prange(U):
        s = 0.0
        mn, mx = np.inf, -np.inf
        for t in range(n):
            v = x[u, t]
            if not np.isfinite(v):
                v = np.float32(0.0) if v != v else (np.float32(3e38) if v > 0 else np.float32(-3e38))
                x[u, t] = v
            s += v
            mn = min(mn, v)
            mx = max(mx, v)
        m = s / n
        ss = 0.0
        for t in range(n):
            d = x[u, t] - m
            ss += d * d
        mean[u], sd[u], lo[u], hi[u] = m, np.sqrt(ss / n), mn, mx


@numba.njit(parallel=True, cache=True)
def _scale(x, mean, sd):
    """x standardised in place per row ((x - mean) / sd; a constant row becomes 0)."""
    U, n = x.shape
    for u in numba.prange(U):
        m = np.float32(mean[u])
        k = np.float32(1.0 / sd[u]) if sd[u] > 0 else np.float32(0.0)
        for t in range(n):
            x[u, t] = (x[u, t] - m) * k


@numba.njit(parallel=True, cache=True)
def _transpose_into(blk, x, offset):
    """x[:, offset:offset + rows] = blk.T, in 64 x 64 tiles (a plain strided copy thrashes the cache)."""
    rows, U = blk.shape
    for ti in numba.prange((U + 63) // 64):
        u0 = ti * 64
        u1 = min(U, u0 + 64)
        for t0 in range(0, rows, 64):
            t1 = min(rows, t0 + 64)
            for u in range(u0, u1):
                for t in range(t0, t1):
                    x[u, offset + t] = blk[t, u]


@numba.njit(parallel=True, cache=True)
def _gather(y, src, out):
    """out[p, t] = y[src[p, t]]: the permuted copies of one label row."""
    P, n = src.shape
    for p in numba.prange(P):
        for t in range(n):
            out[p, t] = y[src[p, t]]


def permutation_sources(n: int, n_perm: int, n_blocks: int, seed: int) -> np.ndarray:
    """(n_perm, n) int32: row t of permutation p takes label src[p, t]; each permutation is a circular shift
    of the labels followed by a permutation of n_blocks contiguous blocks (keeps their autocorrelation)."""
    rng = np.random.default_rng(seed)
    n_blocks = max(1, min(n_blocks, n))
    bounds = np.linspace(0, n, n_blocks + 1).astype(np.int64)
    sizes = np.diff(bounds)
    t = np.arange(n)
    out = np.empty((n_perm, n), np.int32)
    for p in range(n_perm):
        order = rng.permutation(n_blocks)
        shift = int(rng.integers(0, n))
        starts = np.concatenate([[0], np.cumsum(sizes[order])[:-1]])
        k = np.repeat(np.arange(n_blocks), sizes[order])
        out[p] = (bounds[order[k]] + (t - starts[k]) - shift) % n
    return out


# --------------------------------------------------------------------------- the result

@dataclass
class Atlas:
    """Every unit's best explanation (`table`, best margin first), coverage per layer and kind, the run's
    `meta` (recording identity, split, candidates, thresholds), the top contexts of each unit (`contexts`:
    unit -> list of {row, activation, start, text, levels, peak}, see `_contexts`) and the permutation
    maxima of the studentised statistic (`null_max`)."""

    table: pd.DataFrame
    coverage: pd.DataFrame
    meta: dict
    contexts: dict = field(default_factory=dict, repr=False)
    null_max: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def summary(self) -> dict:
        t = self.table
        n_exp = int(t.explained.sum()) if len(t) else 0
        best = t[t.explained].head(20)
        return dict(self.meta, n_units=len(t), n_explained=n_exp, fraction_explained=n_exp / max(1, len(t)),
                    coverage=json.loads(self.coverage.to_json(orient="records")),
                    best=[{"unit": r.unit, "concept": r.concept, "metric": r.metric, "score": float(r.score),
                           "chance": float(r.chance), "p_value": float(r.p_value)} for r in best.itertuples()])

    def to_dict(self) -> dict:
        """Plain JSON types: the summary and every unit's row."""
        return {"summary": self.summary(), "units": json.loads(self.table.to_json(orient="records"))}

    def entry(self, unit: str) -> dict | None:
        """The unit's row (and its contexts) as plain types, or None when the atlas does not hold it."""
        rows = self.table[self.table.unit == str(unit)]
        if rows.empty:
            return None
        d = json.loads(rows.head(1).to_json(orient="records"))[0]
        d["contexts"] = self.contexts.get(str(unit), [])
        return d

    def best_unit(self, concept: str | None = None) -> str:
        """The unit with the largest margin (among those whose concept is `concept`, when given)."""
        t = self.table if concept is None else self.table[self.table.concept == concept]
        if t.empty:
            raise ProbeError(f"no unit of the atlas has the concept {concept!r}" if concept else "the atlas is empty")
        return str(t.iloc[0].unit)

    def save(self, folder: str | Path, *, dashboard_url: str = "http://127.0.0.1:8050/") -> Path:
        """atlas.csv, atlas.json (summary + units), contexts.json and index.html, written whole or not at all."""
        from probe.analysis.atlas_page import atlas_page
        from probe.files import atomic_folder
        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            csv = self.table.copy()
            csv["top_rows"] = [" ".join(str(int(r)) for r in rows) for rows in csv.top_rows]
            csv.to_csv(tmp / "atlas.csv", index=False)
            doc = dict(self.to_dict(), format=FORMAT, version=VERSION, null_max=[float(v) for v in self.null_max])
            (tmp / "atlas.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
            (tmp / "contexts.json").write_text(json.dumps(self.contexts, ensure_ascii=False, separators=(",", ":")),
                                               encoding="utf-8")
            (tmp / "index.html").write_text(atlas_page(self, dashboard_url=dashboard_url), encoding="utf-8")
        return folder


def load_atlas(folder: str | Path) -> Atlas:
    """An atlas saved by `Atlas.save` (ProbeError, one line, for a missing or damaged folder)."""
    folder = Path(folder)
    path = folder / "atlas.json"
    if not path.exists():
        raise ProbeError(f"no atlas in {folder} (no atlas.json): make one with `probe atlas RECORDING`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        ctx_path = folder / "contexts.json"
        contexts = json.loads(ctx_path.read_text(encoding="utf-8")) if ctx_path.exists() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProbeError(f"{path} is not valid JSON: the atlas is damaged") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "units" not in doc:
        raise ProbeError(f"{path} is not a probe atlas")
    table = pd.DataFrame(doc["units"])
    for col in TABLE_COLUMNS:
        if col not in table.columns:
            table[col] = pd.Series(dtype=object)
    table["explained"] = table["explained"].astype(bool)
    table["top_rows"] = [list(r) if isinstance(r, list) else [] for r in table["top_rows"]]
    summary = doc["summary"]
    coverage = pd.DataFrame(summary.get("coverage", []), columns=COVERAGE_COLUMNS)
    meta = {k: v for k, v in summary.items() if k not in ("n_units", "n_explained", "fraction_explained",
                                                          "coverage", "best")}
    return Atlas(table=table, coverage=coverage, meta=meta, contexts=contexts,
                 null_max=np.asarray(doc.get("null_max", []), np.float64))


def default_folder(rec) -> Path:
    """`<recording>/atlas`; for the features of an SAE, `<recording>/atlas-<sae name>`."""
    sae = (rec.meta.get("sae") or {}).get("name") if isinstance(rec.meta, dict) else None
    return Path(rec.path) / (f"atlas-{sae}" if sae else "atlas")


def _identity(rec) -> tuple[str | None, str | None]:
    meta = rec.meta or {}
    return (meta.get("checkpoint") or {}).get("sha256"), (meta.get("text") or {}).get("sha256")


_LOADED: dict[str, tuple[int, Atlas]] = {}  # folder -> (atlas.json's mtime, the atlas): loaded once per change


def atlas_for(rec) -> Atlas | None:
    """The atlas in `default_folder(rec)` when there is one made from this recording (same weights and text)."""
    folder = default_folder(rec)
    try:
        stamp = (folder / "atlas.json").stat().st_mtime_ns
    except OSError:
        return None
    key = str(folder.resolve())
    hit = _LOADED.get(key)
    if hit is not None and hit[0] == stamp:
        atlas = hit[1]
    else:
        try:
            atlas = load_atlas(folder)
        except ProbeError:
            return None
        _LOADED[key] = (stamp, atlas)
    weights, text = _identity(rec)
    if (atlas.meta.get("weights_sha256"), atlas.meta.get("text_sha256")) != (weights, text):
        return None
    if atlas.meta.get("n_rows") not in (None, rec.n_rows):
        return None
    return atlas


# --------------------------------------------------------------------------- labels

@dataclass
class _Labels:
    """The usable candidates' labels on both parts, row-major per candidate (candidate x rows), float32:
    binary ones as 0/1, the others standardised on each part."""

    concepts: list[Concept]
    binary: np.ndarray            # (C,) bool
    sel: np.ndarray               # (C, n_sel)
    rep: np.ndarray               # (C, n_rep)
    n1_sel: np.ndarray            # (C,) positives (binary), else 0
    n1_rep: np.ndarray
    dropped: list[str]


def _part_ok(y: np.ndarray, binary: bool, need: int) -> bool:
    if binary:
        k = int(y.sum())
        return k >= need and len(y) - k >= need
    if len(y) == 0 or not np.isfinite(y).all():
        return False
    vals, counts = np.unique(y, return_counts=True)
    return len(vals) > 1 and len(y) - counts.max() >= need


def _labels(rec, candidates: list[Concept], sel: tuple[int, int], rep: tuple[int, int], min_count: int) -> _Labels:
    n_sel, n_rep = sel[1] - sel[0], rep[1] - rep[0]
    L_sel = np.empty((len(candidates), n_sel), np.float32)
    L_rep = np.empty((len(candidates), n_rep), np.float32)
    n1s, n1r = np.zeros(len(candidates)), np.zeros(len(candidates))
    keep, dropped = [], []
    for c in candidates:
        try:
            y = np.asarray(concept_labels(rec, c), np.float64)
        except (ProbeError, ValueError):
            dropped.append(c.name)
            continue
        if y.shape != (rec.n_rows,):
            raise ProbeError(f"concept {c.name}: {y.shape} labels for {rec.n_rows} rows")
        b = c.label_type == "binary"
        if b:
            y = (y != 0).astype(np.float64)
        ys, yr = y[sel[0]:sel[1]], y[rep[0]:rep[1]]
        if not (_part_ok(ys, b, min_count) and _part_ok(yr, b, min_count)):
            dropped.append(c.name)
            continue
        i = len(keep)
        keep.append(c)
        if b:
            L_sel[i], L_rep[i], n1s[i], n1r[i] = ys, yr, ys.sum(), yr.sum()
        else:
            L_sel[i], L_rep[i] = (ys - ys.mean()) / ys.std(), (yr - yr.mean()) / yr.std()
    if not keep:
        raise ProbeError(f"no candidate concept varies enough in both parts of the text ({rec.n_rows:,} rows): "
                         "use a longer recording")
    k = len(keep)
    binary = np.array([c.label_type == "binary" for c in keep])
    return _Labels(keep, binary, L_sel[:k], L_rep[:k], n1s[:k], n1r[:k], dropped)


# --------------------------------------------------------------------------- the build

def _sites(rec, kinds, layers) -> list[tuple[int, str, str]]:
    """(layer, kind, array name) of every array searched."""
    have = list(rec.kinds)
    kinds = have if kinds is None else [str(k).strip() for k in kinds if str(k).strip()]
    for k in kinds:
        if k not in have:
            raise ProbeError(f"the recording {rec.path} has no {k!r} units (it holds {', '.join(have)})")
    out = []
    for k in kinds:
        for name in rec.arrays_for([k]):
            layer = int(name[1:name.index(".")])
            out.append((layer, k, name))
    all_layers = sorted({l for l, _, _ in out})
    if layers is not None:
        layers = [int(l) for l in layers]
        for l in layers:
            if l not in all_layers:
                raise ProbeError(f"no layer {l} in {rec.path} (layers: {', '.join(map(str, all_layers))})")
        out = [s for s in out if s[0] in layers]
    if not out:
        raise ParamError("kinds", "no units to describe (empty {kinds} or {layers})", advice=True, others=("layers",))
    return sorted(out)


def _read_block(a, s0: int, s1: int, c0: int, c1: int, chunk_rows: int, out: np.ndarray) -> np.ndarray:
    """Rows [s0, s1) of columns [c0, c1) of array `a`, unit-major float32 (units x rows), in row chunks."""
    x = out[:(c1 - c0) * (s1 - s0)].reshape(c1 - c0, s1 - s0)  # contiguous
    whole = c0 == 0 and c1 == a.shape[1]
    for s in range(s0, s1, chunk_rows):
        e = min(s1, s + chunk_rows)
        blk = np.ascontiguousarray(a[s:e] if whole else a[s:e, c0:c1], dtype=np.float32)
        _transpose_into(blk, x, s - s0)
        _release(a)
    return x


def _release(a) -> None:
    """Drop a memory-mapped array's pages from this process's resident set (they stay in the page cache):
    a pass over a whole recording then does not count the recording into the peak memory."""
    m = getattr(a, "_mmap", None)
    if m is not None and hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            m.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def _peaks(x: np.ndarray, offset: int, gap: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, k candidate peaks (value, row): the maxima of the k highest windows of `gap` rows."""
    U, n = x.shape
    g = max(1, min(gap, n))
    nb = n // g
    m = x[:, :nb * g].reshape(U, nb, g)
    bmax, barg = m.max(2), m.argmax(2)
    k = min(k, nb)
    top = np.argpartition(-bmax, k - 1, axis=1)[:, :k] if k < nb else np.tile(np.arange(nb), (U, 1))
    vals = np.take_along_axis(bmax, top, 1)
    rows = top * g + np.take_along_axis(barg, top, 1) + offset
    return vals, rows


def _separated(vals: np.ndarray, rows: np.ndarray, n: int, gap: int) -> list[int]:
    """The rows of the n largest values, no two closer than `gap` (greedy, largest first)."""
    taken: list[int] = []
    if n <= 0:
        return taken
    for i in np.argsort(-vals, kind="stable"):
        r = int(rows[i])
        if all(abs(r - t) >= gap for t in taken):
            taken.append(r)
            if len(taken) == n:
                break
    return taken


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, sd, min, max) of each row, non-finite values cleaned in place first."""
    U = x.shape[0]
    out = [np.empty(U) for _ in range(4)]
    _clean_moments(x, *out)
    return tuple(out)


def _select_strength(R: np.ndarray, Z: np.ndarray, lab: _Labels, n: int) -> np.ndarray:
    """(units x candidates) strength on the select part: |2 AUC - 1| (binary), |r| (others)."""
    S = np.empty((R.shape[0], len(lab.concepts)), np.float32)
    b, c = np.flatnonzero(lab.binary), np.flatnonzero(~lab.binary)
    if len(b):
        n1 = lab.n1_sel[b]
        S[:, b] = np.abs(R @ lab.sel[b].T) * (2.0 / (n1 * (n - n1))).astype(np.float32)
    if len(c):
        S[:, c] = np.abs(Z @ lab.sel[c].T) / np.float32(n)
    return S


@contextlib.contextmanager
def _threads():
    """numba's kernels on the thread count the process's entry point chose (probe.runtime.threads; unchanged
    when none chose one) and numpy's BLAS on one thread: the atlas makes many small matrix products, which a
    multi-threaded BLAS slows down many times over as soon as another process holds a core. Restored after."""
    from threadpoolctl import threadpool_limits

    from probe.runtime.threads import thread_policy
    policy = thread_policy()
    before = numba.get_num_threads()
    if policy is not None:
        numba.set_num_threads(max(1, min(int(policy.threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(before)


def build_atlas(rec, *, kinds: list[str] | None = None, layers: list[int] | None = None,
                candidates: list[Concept] | None = None, select_frac: float = 0.5, n_perm: int = 100,
                alpha: float = 0.05, n_contexts: int = 5, seed: int = 0, progress: bool = False,
                n_report: int = 3, n_blocks: int = 20, min_count: int = 20, chunk_rows: int = 32768,
                block_bytes: int = 1 << 30) -> Atlas:
    """Explain every unit of `rec` (chosen layers and kinds) by the library `candidates` (default: generated
    from the recording's text); see the module docstring. Returns an Atlas."""
    with _threads():
        return _build(rec, kinds, layers, candidates, select_frac, n_perm, alpha, n_contexts, seed, progress,
                      n_report, n_blocks, min_count, chunk_rows, block_bytes)


def _build(rec, kinds, layers, candidates, select_frac, n_perm, alpha, n_contexts, seed, progress,
           n_report, n_blocks, min_count, chunk_rows, block_bytes) -> Atlas:
    from probe.analysis.neurons import split_rows
    t_start = time.perf_counter()
    n_perm = check_int("n_perm", n_perm, min=1)
    check_number("alpha", alpha, min=0, max=1, min_open=True, max_open=True)
    n_contexts = check_int("n_contexts", n_contexts, min=0)
    n_report = check_int("n_report", n_report, min=1)
    n_blocks = check_int("n_blocks", n_blocks, min=1)
    min_count = check_int("min_count", min_count, min=1)
    chunk_rows = check_int("chunk_rows", chunk_rows, min=1)
    k_alpha = int(math.floor(alpha * (n_perm + 1) + 1e-9))
    if k_alpha < 1:
        raise ParamError("n_perm", f"{n_perm} permutations cannot give a p-value of {alpha} or less: use at least "
                                   f"{math.ceil(1 / alpha) - 1}")
    if rec.n_rows == 0:
        raise ProbeError(f"the recording {rec.path} is empty")
    sites = _sites(rec, kinds, layers)
    sel, rep = split_rows(rec.n_rows, select_frac)
    n_sel, n_rep = sel[1] - sel[0], rep[1] - rep[0]
    if candidates is None:
        candidates = candidate_library(rec.text, byte_model=bool(rec.by_bytes))
    lab = _labels(rec, list(candidates), sel, rep, min_count)
    C = len(lab.concepts)
    k_rep = min(n_report, C)
    src = permutation_sources(n_rep, n_perm, n_blocks, seed)
    null_max = np.zeros(n_perm)
    gap = max(1, WINDOW_BEFORE // 2)
    n_max = max(n_sel, n_rep)
    frames = []
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    say(f"atlas: {len(sites)} arrays x {C} candidates ({len(lab.dropped)} dropped), {rec.n_rows:,} rows")
    pbuf = np.empty((n_perm, n_rep), np.float32)
    for layer, kind, name in sites:
        a = rec.array(name)
        H = int(a.shape[1])
        B = int(max(1, min(H, block_bytes // (8 * n_max))))
        for c0 in range(0, H, B):
            c1 = min(H, c0 + B)
            t0 = time.perf_counter()
            res = _block(a, c0, c1, sel, rep, lab, k_rep, src, pbuf, chunk_rows, gap, n_contexts, null_max)
            res.update(layer=layer, kind=kind)
            frames.append(res)
            say(f"  {name}[{c0}:{c1}]: {time.perf_counter() - t0:.1f} s")
    table = _table(frames, lab, null_max, n_perm, k_alpha, alpha)
    contexts = _contexts(rec, table, sites, n_contexts)
    coverage = _coverage(table)
    weights, text_sha = _identity(rec)
    nd = np.sort(null_max)[::-1]
    q = float(nd[k_alpha - 1])
    meta = {"recording": str(rec.path), "weights_sha256": weights, "text_sha256": text_sha, "n_rows": rec.n_rows,
            "select_rows": list(sel), "report_rows": list(rep), "n_perm": n_perm, "n_blocks": n_blocks,
            "alpha": alpha, "seed": seed, "n_report": k_rep, "threshold_t": q, "null_mean_t": float(null_max.mean()),
            "strong_auc": 0.5 + STRONG / 2, "strong_r": STRONG, "z_select": Z_SELECT, "z_report": Z_REPORT,
            "kinds": sorted({k for _, k, _ in sites}), "layers": sorted({l for l, _, _ in sites}),
            "n_candidates": C, "candidates": [{"name": c.name, "label_type": c.label_type,
                                               "description": c.description} for c in lab.concepts],
            "dropped_candidates": lab.dropped, "byte_model": bool(rec.by_bytes),
            "seconds": round(time.perf_counter() - t_start, 2)}
    if isinstance(rec.meta, dict) and rec.meta.get("sae"):
        meta["sae"] = rec.meta["sae"]
    return Atlas(table=table, coverage=coverage, meta=meta, contexts=contexts, null_max=null_max)


def _block(a, c0, c1, sel, rep, lab: _Labels, k_rep, src, pbuf, chunk_rows, gap, n_contexts, null_max) -> dict:
    """One block of units: select on the select part, exact scores and the null on the report part."""
    U = c1 - c0
    n_sel, n_rep = sel[1] - sel[0], rep[1] - rep[0]
    X = np.empty(U * max(n_sel, n_rep), np.float32)   # flat: each part is a contiguous (U, rows) view
    R = np.empty_like(X)
    k_peaks = max(4 * n_contexts, 4)
    out = {"index": np.arange(c0, c1)}
    # select part
    x = _read_block(a, sel[0], sel[1], c0, c1, chunk_rows, X)
    mean, sd, lo, hi = _moments(x)
    pv1, pr1 = _peaks(x, sel[0], gap, k_peaks)
    r = R[:U * n_sel].reshape(U, n_sel)
    _bucket_ranks(x, r)
    _scale(x, mean, sd)
    S = _select_strength(r, x, lab, n_sel)
    top = np.argsort(-(S - Z_SELECT * _nominal_se(lab, n_sel)[None, :]), axis=1, kind="stable")[:, :k_rep]
    sel_strength = np.take_along_axis(S, top, 1)                     # (U, k): candidates kept, their strength
    # report part
    x = _read_block(a, rep[0], rep[1], c0, c1, chunk_rows, X)
    mean, sd, lo2, hi2 = _moments(x)
    lo, hi = np.minimum(lo, lo2), np.maximum(hi, hi2)
    pv2, pr2 = _peaks(x, rep[0], gap, k_peaks)
    r = R[:U * n_rep].reshape(U, n_rep)
    midranks(x, r, numba.get_num_threads())
    _scale(x, mean, sd)
    obs = np.zeros((U, k_rep))                                       # signed strength (2 AUC - 1, or r)
    spread = np.zeros((U, k_rep))                                    # its permutation spread (rms)
    for c in np.unique(top):
        uu, slot = np.nonzero(top == c)
        if lab.binary[c]:
            n1 = lab.n1_rep[c]
            scale = 2.0 / (n1 * (n_rep - n1))
            M = r[uu]
        else:
            scale = 1.0 / n_rep
            M = x[uu]
        y = lab.rep[c]
        y64 = y.astype(np.float64)
        for i in range(0, len(uu), 64):  # exact (float64) statistics, 64 units at a time
            obs[uu[i:i + 64], slot[i:i + 64]] = (M[i:i + 64].astype(np.float64) @ y64) * scale
        _gather(y, src, pbuf)
        G = np.abs(M @ pbuf.T) * np.float32(scale)                  # (units, n_perm): permuted strengths
        # the spread over the permutations and the real labels together: real and permuted strengths stay
        # exchangeable under the null, so the studentised maximum keeps its level
        rms = np.sqrt((np.square(G, dtype=np.float64).sum(1) + obs[uu, slot] ** 2) / (G.shape[1] + 1))
        spread[uu, slot] = rms
        ok = rms > 0
        if ok.any():
            np.maximum(null_max, (G[ok] / rms[ok, None]).max(0), out=null_max)
    const = sd == 0
    obs[const], spread[const] = 0.0, 0.0
    out.update(cands=top, sel_strength=sel_strength, obs=obs, spread=spread, act_min=lo, act_max=hi)
    vals = np.concatenate([pv1, pv2], 1)
    rows = np.concatenate([pr1, pr2], 1)
    out["top_rows"] = [_separated(vals[u], rows[u], n_contexts, gap) for u in range(U)]
    return out


def _table(frames: list[dict], lab: _Labels, null_max: np.ndarray, n_perm: int, k_alpha: int,
           alpha: float) -> pd.DataFrame:
    """One row per unit from the blocks' results and the family-wise null of the studentised statistic."""
    q = float(np.sort(null_max)[::-1][k_alpha - 1])
    names = [c.name for c in lab.concepts]
    types = [c.label_type for c in lab.concepts]

    def metric(v: float, binary: bool) -> float:
        return 0.5 + v / 2 if binary else v

    rows = []
    for f in frames:
        strength, spread = np.abs(f["obs"]), f["spread"]
        lower = np.where(spread > 0, strength - Z_REPORT * spread, -np.inf)
        order = np.argsort(-lower, axis=1, kind="stable")
        for u in range(len(f["index"])):
            o = order[u]
            best, ci = o[0], f["cands"][u, o[0]]
            binary = bool(lab.binary[ci])
            v, sp = float(strength[u, best]), float(spread[u, best])
            t = v / sp if sp > 0 else 0.0
            p = (1 + int((null_max >= t - 1e-9).sum())) / (n_perm + 1) if sp > 0 else 1.0
            # the strength the unit needed: t > q  <=>  v > q rp sqrt(n / (n + 1 - q^2)), rp the spread over the
            # permutations alone (the spread sp includes the real labels' strength v)
            rp = math.sqrt(max(0.0, (sp * sp * (n_perm + 1) - v * v) / n_perm))
            need = q * rp * math.sqrt(n_perm / (n_perm + 1 - q * q)) if q * q < n_perm + 1 and sp > 0 else 1.0
            score, chance = metric(v, binary), metric(min(1.0, need), binary)
            second, second_score = None, float("nan")
            if len(o) > 1:
                s2, c2 = o[1], f["cands"][u, o[1]]
                second, second_score = names[c2], metric(float(strength[u, s2]), bool(lab.binary[c2]))
            rows.append({
                "unit": Unit(f["layer"], f["kind"], int(f["index"][u])).name, "layer": f["layer"], "kind": f["kind"],
                "index": int(f["index"][u]), "concept": names[ci], "label_type": types[ci],
                "metric": "auc" if binary else "r", "score": score, "sign": 1 if f["obs"][u, best] >= 0 else -1,
                "chance": chance, "p_value": p, "explained": bool(p <= alpha + 1e-12), "margin": score - chance,
                "second_concept": second, "second_score": second_score,
                "select_score": metric(float(f["sel_strength"][u, best]), binary), "t_stat": t,
                "act_min": float(f["act_min"][u]), "act_max": float(f["act_max"][u]), "top_rows": f["top_rows"][u]})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS + ["t_stat"])
    return table.sort_values(["margin", "unit"], ascending=[False, True], kind="stable").reset_index(drop=True)


def _nominal_se(lab: _Labels, n: int) -> np.ndarray:
    """The textbook standard error of each candidate's strength on n independent rows (2 AUC - 1: from
    the Mann-Whitney variance; r: 1 / sqrt(n)): it only shrinks rare candidates when ranking them."""
    n1 = np.where(lab.binary, lab.n1_sel, 1.0)
    se_auc = 2 * np.sqrt((n + 1) / (12.0 * n1 * np.maximum(n - n1, 1)))
    return np.where(lab.binary, se_auc, 1 / np.sqrt(n)).astype(np.float32)


def _coverage(table: pd.DataFrame) -> pd.DataFrame:
    """Per layer and kind: units, explained ones (family-wise p <= alpha) and strongly explained ones
    (explained with AUC >= 0.5 + STRONG / 2 or |r| >= STRONG)."""
    t = table.assign(strong=table.explained & (np.where(table.metric == "auc", 2 * table.score - 1, table.score)
                                              >= STRONG - 1e-12))
    cov = t.groupby(["layer", "kind"], sort=True).agg(n_units=("unit", "size"), n_explained=("explained", "sum"),
                                                       n_strong=("strong", "sum")).reset_index()
    cov["n_explained"] = cov["n_explained"].astype(int)
    cov["n_strong"] = cov["n_strong"].astype(int)
    cov["fraction"] = cov.n_explained / cov.n_units
    cov["fraction_strong"] = cov.n_strong / cov.n_units
    return cov[COVERAGE_COLUMNS]


def _contexts(rec, table: pd.DataFrame, sites, n_contexts: int) -> dict:
    """unit -> its top contexts, compact: {row, activation, start (first row shown), text (one character per
    recorded character: a byte model's continuation bytes are left out), levels (one letter per character of
    text: the activation on the unit's own scale, see `atlas_page.levels`), peak (index of the peak's
    character in text)}."""
    from probe.analysis.atlas_page import levels
    if n_contexts == 0 or table.empty:
        return {}
    names = {(l, k): name for l, k, name in sites}
    n = rec.n_rows
    out = {}
    for r in table.itertuples():
        a = rec.array(names[(r.layer, r.kind)])
        ctx = []
        for row in r.top_rows:
            s, e = max(0, row - WINDOW_BEFORE), min(n, row + WINDOW_AFTER + 1)
            acts = np.asarray(a[s:e, int(r.index)], dtype=np.float32)
            chars = list(rec.text[s:e]) if not rec.by_bytes else rec.row_strings(s, e)
            keep = [i for i, ch in enumerate(chars) if ch]
            peak = max(0, sum(1 for i in keep if i <= row - s) - 1)
            ctx.append({"row": int(row), "activation": round(float(acts[row - s]), 4), "start": s,
                        "text": "".join(chars[i][:1] for i in keep), "levels": levels(acts[keep], r.act_min, r.act_max),
                        "peak": peak})
        out[r.unit] = ctx
        if len(out) % 256 == 0:
            _release(a)
    for name in names.values():
        _release(rec.array(name))
    return out


# --------------------------------------------------------------------------- ablation

def add_ablation(atlas: Atlas, rec, n: int, checkpoint=None, *, max_chars: int = 10_000, n_random: int = 10,
                 seed: int = 0) -> Atlas:
    """The atlas with the ablation effect (probe.analysis.ablate.ablate, units held at their mean over the
    first `max_chars` characters) of its `n` best explained h/c units, inside their concept when it is a
    character-level binary one (else over all characters): columns abl_delta, abl_delta_out, abl_p, abl_where."""
    from probe.analysis.ablate import ablate
    from probe.record.source import recording_checkpoint
    n = check_int("n", n, min=1)
    ck = recording_checkpoint(rec, checkpoint)
    names = {c["name"]: c for c in atlas.meta.get("candidates", [])}
    lib = {c.name: c for c in candidate_library(rec.text, byte_model=bool(rec.by_bytes))} if names else {}
    table = atlas.table.copy()
    for col in ("abl_delta", "abl_delta_out", "abl_p"):
        table[col] = np.nan
    table["abl_where"] = None
    picked = table[table.explained & table.kind.isin(["h", "c"])].head(n)
    text = rec.text[:max_chars]
    for i, r in picked.iterrows():
        concept = lib.get(r.concept)
        use = concept if (concept is not None and concept.label_type == "binary"
                          and not isinstance(concept, RowConcept)) else None
        try:
            res = ablate(ck, [r.unit], text, concept=use, n_random=n_random, seed=seed, n_top=0)
        except ProbeError:
            if use is None:
                raise
            use = None  # the concept is absent from the ablated text: the effect over all characters
            res = ablate(ck, [r.unit], text, concept=None, n_random=n_random, seed=seed, n_top=0)
        t = res.table.iloc[0]
        table.loc[i, "abl_delta"] = float(t["delta_in"] if use is not None else t["delta_all"])
        table.loc[i, "abl_delta_out"] = float(t["delta_out"]) if use is not None else np.nan
        table.loc[i, "abl_p"] = res.p_value
        table.loc[i, "abl_where"] = f"inside {use.name}" if use is not None else "all characters"
    meta = dict(atlas.meta, ablation={"n": n, "max_chars": max_chars, "n_random": n_random, "mode": "mean"})
    return Atlas(table=table, coverage=atlas.coverage, meta=meta, contexts=atlas.contexts, null_max=atlas.null_max)
