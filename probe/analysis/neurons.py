"""Find units that track a concept, with held-out scores and a family-wise chance level.

Method:

* rows are split into two contiguous parts: units are ranked on the first
  (`select`) part and their scores are reported on the second (`report`) part;
* binary concepts are scored by ROC AUC, direction-free (max(auc, 1 - auc)),
  with the sign; continuous and integer ones by Pearson r (|r|, with the sign);
* the chance level is the best held-out score over *all* units when the
  report-part labels are circularly shifted and block-permuted (the max
  statistic); a unit's p-value is (C + 1) / (n_perm + 1) where C counts the
  permutations whose best unit did at least as well: corrected for the number
  of units tested, and never 0.

Everything streams over the recording in row chunks read from disk (bounded
memory): one pass fills per-unit histograms (split by label) and moments, which
give AUC, means, Cohen's d and mutual information; the same pass maps each value
to its approximate rank (from a per-unit CDF estimated on a sample of rows) and
multiplies the ranks by the real and permuted labels in one matrix product, which
gives the permutation null of every unit at once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numba
import numpy as np
import pandas as pd
from scipy.stats import rankdata

from probe.analysis.concepts import Concept, as_concept, row_labels
from probe.checks import ParamError, check_int, check_number
from probe.errors import ProbeError
from probe.names import Site
from probe.record.recording import Recording

N_BINS_BINARY = 1024       # histogram bins per unit for binary concepts (AUC resolution)
N_BINS_CONTINUOUS = 256    # ... for continuous concepts (used for MI and ranks)
N_LABEL_GROUPS = 8         # continuous labels are cut into this many equal-frequency groups for MI
N_MI_GROUPS = 16           # activations are cut into this many equal-frequency groups for MI
SAMPLE_ROWS = 32768        # rows read to fix each unit's histogram range and rank table


@dataclass
class NeuronSearch:
    """The result of `find_neurons`: one row per unit in `table`, best (on the select part) first."""

    table: pd.DataFrame
    concept: Concept
    metric: str
    chance: float
    n_units: int
    n_perm: int
    select_rows: tuple[int, int]
    report_rows: tuple[int, int]
    null_max: np.ndarray = field(repr=False)

    def top(self, n: int = 20) -> pd.DataFrame:
        return self.table.head(n)

    def summary(self) -> dict:
        return {"concept": self.concept.name, "kind": self.concept.label_type, "metric": self.metric,
                "chance": self.chance, "chance_95": float(np.quantile(self.null_max, 0.95)),
                "n_units": self.n_units, "n_perm": self.n_perm,
                "select_rows": list(self.select_rows), "report_rows": list(self.report_rows)}

    def to_dict(self) -> dict:
        """Plain JSON types: the summary and every unit's row, as `probe find-neurons --json` writes them."""
        return {"summary": self.summary(), "units": json.loads(self.table.to_json(orient="records"))}


# --------------------------------------------------------------------------- reading rows from disk

class _RowReader:
    """Reads row ranges of one recorded array with plain file reads (no growing memory map); an array that
    is not a file (the lazy features of probe.sae.features) is read by row slices, `rec.array(name)[a:b]`."""

    def __init__(self, rec: Recording, name: str):
        m = rec.array(name)
        self.dtype, self.shape = m.dtype, m.shape
        self.lazy = None if isinstance(m, np.memmap) else m
        self.f = None
        if self.lazy is None:
            self.offset = int(getattr(m, "offset", 0))
            self.row_bytes = int(np.prod(m.shape[1:])) * m.dtype.itemsize
            self.f = open(rec.path / rec.meta["arrays"][name]["file"], "rb")
        self.raw: np.ndarray | None = None

    def read_raw(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) in the array's own dtype (a reused buffer: valid until the next read)."""
        n = stop - start
        if self.lazy is not None:
            return np.asarray(self.lazy[start:stop])
        if self.raw is None or self.raw.shape[0] < n:
            self.raw = np.empty((n,) + self.shape[1:], dtype=self.dtype)
        raw = self.raw[:n]
        self.f.seek(self.offset + start * self.row_bytes)
        if self.f.readinto(memoryview(raw).cast("B")) != n * self.row_bytes:
            raise ProbeError(f"{self.f.name} is shorter than its header says: the recording is damaged")
        return raw

    def read(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """float32 rows [start, stop) into `out` (at least stop-start rows); returns the filled view."""
        dst = out[:stop - start]
        np.copyto(dst, self.read_raw(start, stop), casting="unsafe")
        return dst

    def kernel_input(self, start: int, stop: int, scratch: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """(float32 rows, float16 rows as uint16, is_half): float16 goes to the kernel as is (it converts)."""
        raw = self.read_raw(start, stop)
        if raw.dtype == np.float16:
            return scratch[:0], raw.view(np.uint16), True
        if raw.dtype == np.float32:
            return raw, np.zeros((0, raw.shape[1]), np.uint16), False
        return self.read(start, stop, scratch), np.zeros((0, raw.shape[1]), np.uint16), False

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


def sample_runs(start: int, stop: int, max_rows: int = SAMPLE_ROWS, n_runs: int = 64) -> list[tuple[int, int]]:
    """Contiguous runs of rows spread evenly over [start, stop), max_rows in all."""
    n = stop - start
    if n <= max_rows:
        return [(start, stop)]
    run = max(1, max_rows // n_runs)
    starts = np.linspace(start, stop - run, n_runs).astype(np.int64)
    return [(int(s), int(s) + run) for s in starts]


# --------------------------------------------------------------------------- the streaming kernel

def _accumulate_numpy(xf, xh, half, lo, inv_w, nb, codes, hist, s1, s2, cdf, zc, center, zx):
    """Reference implementation of `_accumulate` (the tests check the numba kernel against it).

    zc and zx are unit-major (H, rows) or empty (0, ...) when not wanted."""
    x = xh.view(np.float16).astype(np.float32) if half else xf
    rows, H = x.shape
    K = hist.shape[2]
    v = np.where(np.isnan(x), lo[None, :], x)
    f = (v - lo[None, :]) * inv_w[None, :]
    b = np.clip(np.floor(np.nan_to_num(f, posinf=nb, neginf=-1)), 0, nb - 1).astype(np.int64)
    idx = (np.arange(H)[None, :] * nb + b) * K + codes[:, None]
    hist += np.bincount(idx.ravel(), minlength=H * nb * K).reshape(H, nb, K).astype(hist.dtype)
    top = lo + nb / inv_w
    v = np.where(v == np.inf, top[None, :], np.where(v == -np.inf, lo[None, :], v))
    d = (v - center[None, :]).astype(np.float64)
    if K == 2:
        for k in range(2):
            sel = codes == k
            s1[:, k] += d[sel].sum(axis=0)
            s2[:, k] += (d[sel] ** 2).sum(axis=0)
    else:
        s1[:, 0] += d.sum(axis=0)
        s2[:, 0] += (d ** 2).sum(axis=0)
    if zc.shape[0]:
        zc[:, :rows] = cdf[np.arange(H)[None, :], b].T
    if zx.shape[0]:
        zx[:, :rows] = d.T


_POW2 = np.array([2.0 ** (e - 25) for e in range(32)], dtype=np.float32)


@numba.njit(inline="always")
def _half_to_float(h, pow2):
    e = (h >> 10) & 31
    m = h & 1023
    if e == 0:
        v = np.float32(m) * np.float32(5.960464477539063e-08)
    elif e == 31:
        v = np.float32(np.inf) if m == 0 else np.float32(np.nan)
    else:
        v = np.float32(1024 + m) * pow2[e]
    return -v if h & 0x8000 else v


@numba.njit(parallel=True, cache=True)
def _accumulate_numba(xf, xh, half, lo, inv_w, nb, codes, hist, s1, s2, cdf, zc, center, zx):
    """Fills histograms (unit, bin, label code), centered moments (split by label when K == 2,
    else all in column 0), ranks `zc` and centered values `zx` (both unit-major: (H, rows));
    float16 input comes as its uint16 bits.

    Parallel over blocks of 16 units; each tile of 256 rows x 16 units is first
    copied into a small unit-major buffer (row-major reads of a (rows, H) array
    with a power-of-two stride would thrash the cache), then scanned unit by unit.
    """
    rows = xh.shape[0] if half else xf.shape[0]
    H = xh.shape[1] if half else xf.shape[1]
    K = hist.shape[2]
    want_zc, want_zx = zc.shape[0] > 0, zx.shape[0] > 0
    pow2 = _POW2
    n_blocks = (H + 15) // 16
    for bi in numba.prange(n_blocks):
        u0 = bi * 16
        u1 = min(H, u0 + 16)
        nu = u1 - u0
        acc = np.zeros((16, 4))
        buf = np.empty((16, 256), np.float32)
        for t0 in range(0, rows, 256):
            t1 = min(rows, t0 + 256)
            for t in range(t0, t1):
                for j in range(nu):
                    if half:
                        buf[j, t - t0] = _half_to_float(np.int32(xh[t, u0 + j]), pow2)
                    else:
                        buf[j, t - t0] = xf[t, u0 + j]
            for j in range(nu):
                u = u0 + j
                lo_u, iw, c = lo[u], inv_w[u], center[u]
                top = lo_u + nb / iw
                a1 = 0.0
                a2 = 0.0
                b1 = 0.0
                b2 = 0.0
                for t in range(t0, t1):
                    k = codes[t]
                    v = buf[j, t - t0]
                    if v != v:
                        v = lo_u
                    f = (v - lo_u) * iw
                    if f < 0.0:
                        b = 0
                        if v < -3.0e38:
                            v = lo_u
                    elif f >= nb:
                        b = nb - 1
                        if v > 3.0e38:
                            v = top
                    else:
                        b = int(f)
                    hist[u, b, k] += 1
                    d = np.float64(v) - c
                    dd = d * d
                    a1 += d
                    a2 += dd
                    if k == 1:
                        b1 += d
                        b2 += dd
                    if want_zc:
                        zc[u, t] = cdf[u, b]
                    if want_zx:
                        zx[u, t] = d
                acc[j, 0] += a1
                acc[j, 1] += a2
                acc[j, 2] += b1
                acc[j, 3] += b2
        for j in range(nu):
            u = u0 + j
            if K == 2:
                s1[u, 0] += acc[j, 0] - acc[j, 2]
                s2[u, 0] += acc[j, 1] - acc[j, 3]
                s1[u, 1] += acc[j, 2]
                s2[u, 1] += acc[j, 3]
            else:
                s1[u, 0] += acc[j, 0]
                s2[u, 0] += acc[j, 1]


_accumulate = _accumulate_numba  # a fused, parallel kernel


# --------------------------------------------------------------------------- per-array state

class _ArrayStats:
    """Histograms, moments and the rank table of the units of one recorded array."""

    def __init__(self, sample: np.ndarray, nb: int, K: int):
        H = sample.shape[1]
        finite = np.nan_to_num(sample, nan=0.0, posinf=3e38, neginf=-3e38)
        sub = finite[::max(1, len(finite) // 4096)]
        lo, med, hi = np.quantile(sub, [0.0005, 0.5, 0.9995], axis=0)
        margin = np.maximum((hi - lo) * 0.05, 1e-6 * np.maximum(1.0, np.abs(lo)))
        self.lo = (lo - margin).astype(np.float32)
        width = (hi + margin - self.lo) / nb
        self.inv_w = (1.0 / width).astype(np.float32)
        self.center = med.astype(np.float64)
        self.nb = nb
        # approximate mid-rank (CDF) of each bin from the sample
        counts = np.zeros((H, nb, 1), np.int32)
        none = np.zeros((H, 0), np.float32)
        _accumulate(np.ascontiguousarray(sample, dtype=np.float32), np.zeros((0, H), np.uint16), False,
                    self.lo, self.inv_w, nb,
                    np.zeros(len(sample), np.int64), counts, np.zeros((H, 1)), np.zeros((H, 1)),
                    np.zeros((H, nb), np.float32), none.T, self.center, none.T)
        c = counts[:, :, 0].astype(np.float64)
        self.cdf = ((np.cumsum(c, axis=1) - 0.5 * c) / max(1, len(sample))).astype(np.float32)
        self.parts = {p: (np.zeros((H, nb, K), np.int32), np.zeros((H, K)), np.zeros((H, K))) for p in ("select", "report")}


# --------------------------------------------------------------------------- permutations

class _Permuter:
    """Circularly shifted, block-permuted copies of the report-part labels, produced chunk by chunk."""

    def __init__(self, n: int, n_perm: int, n_blocks: int, seed: int):
        rng = np.random.default_rng(seed)
        n_blocks = max(1, min(n_blocks, n))
        self.n = n
        self.bounds = np.linspace(0, n, n_blocks + 1).astype(np.int64)
        sizes = np.diff(self.bounds)
        self.perms = []
        for _ in range(n_perm):
            order = rng.permutation(n_blocks)
            starts = np.concatenate([[0], np.cumsum(sizes[order])[:-1]])
            self.perms.append((int(rng.integers(0, n)), order, starts))

    def sources(self, t0: int, t1: int) -> np.ndarray:
        """(t1-t0, n_perm) indices into the report-part labels."""
        t = np.arange(t0, t1)
        out = np.empty((t1 - t0, len(self.perms)), np.int64)
        for p, (shift, order, starts) in enumerate(self.perms):
            k = np.searchsorted(starts, t, side="right") - 1
            rolled = self.bounds[order[k]] + (t - starts[k])
            out[:, p] = (rolled - shift) % self.n
        return out


# --------------------------------------------------------------------------- statistics from histograms

def _auc_from_hist(h_in: np.ndarray, h_out: np.ndarray) -> np.ndarray:
    """P(x_in > x_out) + 0.5 P(tie), per unit, from (U, nb) histograms."""
    n_in, n_out = h_in.sum(1).astype(np.float64), h_out.sum(1).astype(np.float64)
    below = np.cumsum(h_out, axis=1) - h_out
    wins = (h_in * (below + 0.5 * h_out)).sum(1)
    return wins / np.maximum(n_in * n_out, 1)


def _mi_from_hist(h: np.ndarray, groups: int = N_MI_GROUPS) -> np.ndarray:
    """Mutual information (bits) between activation (cut into equal-frequency groups) and label code."""
    U, nb, K = h.shape
    h = h.astype(np.float64)
    tot = h.sum(2)
    n = tot.sum(1, keepdims=True)
    mid = (np.cumsum(tot, 1) - 0.5 * tot) / np.maximum(n, 1)
    g = np.minimum((mid * groups).astype(np.int64), groups - 1)
    idx = (np.arange(U)[:, None, None] * groups + g[:, :, None]) * K + np.arange(K)[None, None, :]
    joint = np.bincount(idx.ravel(), weights=h.ravel(), minlength=U * groups * K).reshape(U, groups, K)
    p = joint / np.maximum(n[:, :, None], 1)
    pg, pk = p.sum(2, keepdims=True), p.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p / (pg * pk)), 0.0)
    return terms.sum((1, 2))


def _moment_stats(s1, s2, center, counts):
    """Per unit and label code: means and variances from centered sums."""
    n = np.maximum(counts, 1)
    mean_d = s1 / n
    var = np.maximum(s2 / n - mean_d ** 2, 0.0)
    return mean_d + center[:, None], var


# --------------------------------------------------------------------------- the search

def _resolve_arrays(rec: Recording, kinds, layers) -> list[tuple[int, str]]:
    have = rec.kinds
    kinds = list(have) if kinds is None else [k.strip() for k in kinds if k.strip()]
    for k in kinds:
        if k not in have:
            raise ProbeError(f"the recording {rec.path} has no {k!r} arrays (it holds {', '.join(have)}"
                             f"{'; record with gates to get i f g o / r z n' if k in 'ifgorzn' else ''})")
    have_layers = list(getattr(rec, "layers", range(rec.num_layers)))  # a FeatureRecording: the SAE's layer
    layers = have_layers if layers is None else [int(l) for l in layers]
    for l in layers:
        if not 0 <= l < rec.num_layers:
            raise ProbeError(f"no layer {l}: the model has layers 0..{rec.num_layers - 1}")
        if l not in have_layers:
            raise ProbeError(f"no layer {l} in {rec.path}: it holds layers {', '.join(map(str, have_layers))} only")
    if not kinds or not layers:
        raise ParamError("kinds", "no units to search (empty {kinds} or {layers})", advice=True, others=("layers",))
    return [(l, k) for l in layers for k in kinds]


def split_rows(n_rows: int, select_frac: float) -> tuple[tuple[int, int], tuple[int, int]]:
    check_number("select_frac", select_frac, min=0, max=1, min_open=True, max_open=True)
    b = int(round(n_rows * select_frac))
    if b < 2 or n_rows - b < 2:
        raise ProbeError(f"the recording has {n_rows} rows: too few to split into select and report parts")
    return (0, b), (b, n_rows)


def _check_parts(concept: Concept, y: np.ndarray, sel: tuple[int, int], rep: tuple[int, int]) -> None:
    for name, (s, e) in (("select", sel), ("report", rep)):
        part = y[s:e]
        if concept.label_type == "binary":
            k = int(part.sum())
            if k == 0 or k == len(part):
                where = "never" if k == 0 else "always"
                raise ParamError(
                    "select_frac", f"concept {concept.name} is {where} present in the {name} part (rows {s}:{e}) "
                    "of the text; both parts need characters inside and outside it (use a longer text or another "
                    "{select_frac})", advice=True)
        elif np.all(part == part[0]):
            raise ProbeError(f"concept {concept.name} is constant in the {name} part (rows {s}:{e}) of the text")


def find_neurons(rec: Recording, concept: Concept | str, *, kinds: list[str] | None = None,
                 layers: list[int] | None = None, select_frac: float = 0.5, n_blocks: int = 20,
                 n_perm: int = 100, seed: int = 0, chunk_rows: int = 16384) -> NeuronSearch:
    """Score every unit of the chosen layers and kinds against `concept` (see the module docstring)."""
    concept = as_concept(concept)
    sites = list(dict.fromkeys(Site(l, k) for l, k in _resolve_arrays(rec, kinds, layers)))
    check_int("n_perm", n_perm, min=1)
    from probe.runtime.memory import check_fits  # permuted labels and sums grow with n_perm: refuse before trying
    check_fits(n_perm * (len(sites) * rec.hidden_size * 8 + min(chunk_rows, rec.n_rows) * 12 + 300),
               f"permutations over {len(sites) * rec.hidden_size:,} units", "lower it", param="n_perm", value=n_perm)
    chunk_rows = min(chunk_rows, max(1024, (1 << 24) // rec.hidden_size))  # (H, rows) buffers: 64 MB at most
    lab = _labels(rec, concept, select_frac)
    permuter = _Permuter(len(lab.y_rep), n_perm, n_blocks, seed)
    readers = {s.array: _RowReader(rec, s.array) for s in sites}
    try:
        stats = _rank_tables(readers, rec.n_rows, rec.hidden_size, lab, chunk_rows)
        sums = _stream(readers, stats, lab, permuter, n_perm, rec.hidden_size, chunk_rows)
    finally:
        for reader in readers.values():
            reader.close()
    frames = [_score_site(site, stats[site.array], sums, ai, lab) for ai, site in enumerate(sites)]
    table, null_max = _chance_levels(pd.concat(frames, ignore_index=True), n_perm)
    return NeuronSearch(table=_ranked_table(table), concept=concept, metric="auc" if lab.binary else "pearson",
                        chance=float(null_max.mean()), n_units=len(sites) * rec.hidden_size, n_perm=n_perm,
                        select_rows=lab.sel, report_rows=lab.rep, null_max=null_max)


@dataclass
class _Labels:
    """The concept's row labels as the search uses them."""

    binary: bool
    codes: np.ndarray     # (rows,) histogram code: 0/1 (binary) or one of N_LABEL_GROUPS equal-frequency groups
    K: int                # number of codes
    nb: int               # histogram bins per unit
    sel: tuple[int, int]  # rows units are ranked on
    rep: tuple[int, int]  # held-out rows their scores come from
    y_sel: np.ndarray
    y_rep: np.ndarray
    ry_rep: np.ndarray    # ranks of y_rep

    @property
    def y_sel_c(self) -> np.ndarray:
        return (self.y_sel - self.y_sel.mean()).astype(np.float32)

    @property
    def y_rep_c(self) -> np.ndarray:
        return (self.y_rep - self.y_rep.mean()).astype(np.float32)


def _labels(rec: Recording, concept: Concept, select_frac: float) -> _Labels:
    """Row labels, split into the select and report parts (both checked to be usable)."""
    y_all = row_labels(rec, concept)
    sel, rep = split_rows(rec.n_rows, select_frac)
    _check_parts(concept, y_all, sel, rep)
    binary = concept.label_type == "binary"
    y_all = y_all.astype(np.float64)
    if binary:
        codes, K, nb = y_all.astype(np.int64), 2, N_BINS_BINARY
    else:
        r = rankdata(y_all) / len(y_all)
        codes, K, nb = (np.minimum((r * N_LABEL_GROUPS).astype(np.int64), N_LABEL_GROUPS - 1),
                        N_LABEL_GROUPS, N_BINS_CONTINUOUS)
    return _Labels(binary=binary, codes=codes, K=K, nb=nb, sel=sel, rep=rep,
                   y_sel=y_all[sel[0]:sel[1]], y_rep=y_all[rep[0]:rep[1]], ry_rep=rankdata(y_all[rep[0]:rep[1]]))


def _rank_tables(readers: dict[str, _RowReader], n_rows: int, H: int, lab: _Labels,
                 chunk_rows: int) -> dict[str, _ArrayStats]:
    """Per-unit histogram ranges and rank tables of every array, from a sample of rows."""
    runs = sample_runs(0, n_rows)
    n_sample = sum(e - s for s, e in runs)
    buf = np.empty((max(chunk_rows, n_sample), H), np.float32)
    stats = {}
    for name, reader in readers.items():
        parts, pos = [], 0
        for s, e in runs:
            parts.append(reader.read(s, e, buf[pos:]).copy())
            pos += e - s
        stats[name] = _ArrayStats(np.concatenate(parts), lab.nb, lab.K)
    return stats


@dataclass
class _Sums:
    """Products of every unit with the labels, filled by the streaming pass; first index: the array."""

    rep: np.ndarray    # (arrays, H, 1 + n_perm): report-part ranks (binary) or values x real and permuted labels
    spear: np.ndarray  # (arrays, H): report-part ranks x label ranks (continuous)
    sel: np.ndarray    # (arrays, H): select-part values x labels (continuous)


def _stream(readers: dict[str, _RowReader], stats: dict[str, _ArrayStats], lab: _Labels, permuter: _Permuter,
            n_perm: int, H: int, chunk_rows: int) -> _Sums:
    """One pass over both parts, chunk by chunk: fills `stats` (histograms, moments) and returns the sums."""
    binary = lab.binary
    y_rep_c, y_sel_c = lab.y_rep_c, lab.y_sel_c
    ry_rep_c = (lab.ry_rep - lab.ry_rep.mean()).astype(np.float32)
    x = np.empty((chunk_rows, H), np.float32)
    zc = np.empty(H * chunk_rows, np.float32)   # flat buffers: each chunk uses a contiguous (H, rows) view
    zx = np.empty(H * chunk_rows, np.float32)
    empty = np.zeros((0, chunk_rows), np.float32)
    sums = _Sums(rep=np.zeros((len(readers), H, 1 + n_perm)), spear=np.zeros((len(readers), H)),
                 sel=np.zeros((len(readers), H)))
    for part, (p0, p1) in (("select", lab.sel), ("report", lab.rep)):
        for s in range(p0, p1, chunk_rows):
            e = min(p1, s + chunk_rows)
            codes = lab.codes[s:e]
            if part == "report":
                src = permuter.sources(s - p0, e - p0)
                Y = np.empty((e - s, 1 + n_perm), np.float32)
                Y[:, 0] = y_rep_c[s - p0:e - p0]
                Y[:, 1:] = y_rep_c[src]
            for ai, (name, reader) in enumerate(readers.items()):
                st = stats[name]
                hist, s1, s2 = st.parts[part]
                xf, xh, half = reader.kernel_input(s, e, x)
                zcb = zc[:H * (e - s)].reshape(H, e - s) if part == "report" else empty
                zxb = zx[:H * (e - s)].reshape(H, e - s) if not binary else empty
                _accumulate(xf, xh, half, st.lo, st.inv_w, st.nb, codes, hist, s1, s2, st.cdf, zcb, st.center, zxb)
                if part == "report":
                    sums.rep[ai] += (zcb if binary else zxb) @ Y
                    if not binary:
                        sums.spear[ai] += zcb @ ry_rep_c[s - p0:e - p0]
                elif not binary:
                    sums.sel[ai] += zxb @ y_sel_c[s - p0:e - p0]
    return sums


def _score_site(site: Site, st: _ArrayStats, sums: _Sums, ai: int, lab: _Labels) -> pd.DataFrame:
    """Held-out scores of one array's units; `_stat` / `_null` hold the real and permuted statistics."""
    H = st.cdf.shape[0]
    h_rep, s1_rep, s2_rep = st.parts["report"]
    tot_rep = h_rep.sum(1).astype(np.float64).sum(1)
    var_all = np.maximum(s2_rep.sum(1) / tot_rep - (s1_rep.sum(1) / tot_rep) ** 2, 0)
    d = {"unit": [u.name for u in site.units(H)], "layer": site.layer, "kind": site.kind, "index": np.arange(H)}
    score = _score_binary if lab.binary else _score_continuous
    stat = score(d, st, sums, ai, lab, np.sqrt(var_all))
    d["mi"] = _mi_from_hist(h_rep)
    d["_stat"] = stat[:, 0]
    d["_null"] = list(stat[:, 1:])
    return pd.DataFrame(d)


def _score_binary(d: dict, st: _ArrayStats, sums: _Sums, ai: int, lab: _Labels, sd_all: np.ndarray) -> np.ndarray:
    """AUC (direction-free), Cohen's d, point-biserial r and means into `d`; returns the AUC statistics."""
    h_sel = st.parts["select"][0]
    h_rep, s1_rep, s2_rep = st.parts["report"]
    cnt_rep = h_rep.sum(1).astype(np.float64)          # (H, K)
    auc_rep = _auc_from_hist(h_rep[:, :, 1], h_rep[:, :, 0])
    auc_sel = _auc_from_hist(h_sel[:, :, 1], h_sel[:, :, 0])
    means, var = _moment_stats(s1_rep, s2_rep, st.center, cnt_rep)
    n0, n1 = cnt_rep[:, 0], cnt_rep[:, 1]
    pooled = np.sqrt((n1 * var[:, 1] + n0 * var[:, 0]) / np.maximum(n0 + n1 - 2, 1))
    diff = means[:, 1] - means[:, 0]
    p_in = n1 / (n0 + n1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d["cohen_d"] = np.where(pooled > 0, diff / pooled, 0.0)
        d["r_pb"] = np.where(sd_all > 0, diff * np.sqrt(p_in * (1 - p_in)) / sd_all, 0.0)
    d.update(metric="auc", score=np.maximum(auc_rep, 1 - auc_rep), sign=np.where(auc_rep >= 0.5, 1, -1),
             select_score=np.maximum(auc_sel, 1 - auc_sel), auc=auc_rep, mean_in=means[:, 1], mean_out=means[:, 0])
    # rank statistic: AUC - 0.5 = n * sum(z * (y - ybar)) / (n_in * n_out)
    n_rep, n_in_rep = len(lab.y_rep), float(lab.y_rep.sum())
    stat = n_rep * sums.rep[ai] / (n_in_rep * (n_rep - n_in_rep))
    return np.abs(stat) + 0.5


def _score_continuous(d: dict, st: _ArrayStats, sums: _Sums, ai: int, lab: _Labels,
                      sd_all: np.ndarray) -> np.ndarray:
    """Pearson r (held-out and on the select part) and Spearman into `d`; returns the |r| statistics."""
    h_sel, s1_sel, s2_sel = st.parts["select"]
    h_rep = st.parts["report"][0]
    n_rep, y_sel = len(lab.y_rep), lab.y_sel
    sd_y_rep = float(lab.y_rep.std())
    with np.errstate(divide="ignore", invalid="ignore"):
        r_rep = np.where(sd_all > 0, sums.rep[ai][:, 0] / (n_rep * sd_all * sd_y_rep), 0.0)
        cnt_s = h_sel.sum(1).astype(np.float64).sum(1)
        var_sel = np.maximum(s2_sel.sum(1) / cnt_s - (s1_sel.sum(1) / cnt_s) ** 2, 0)
        r_sel = np.where(var_sel > 0, sums.sel[ai] / (len(y_sel) * np.sqrt(var_sel) * float(y_sel.std())), 0.0)
        # Spearman: Pearson between approximate ranks (CDF of the bin) and the label ranks
        tot_bins = h_rep.sum(2).astype(np.float64)
        mz = (tot_bins * st.cdf).sum(1) / n_rep
        vz = np.maximum((tot_bins * st.cdf.astype(np.float64) ** 2).sum(1) / n_rep - mz ** 2, 0)
        spear = np.where(vz > 0, sums.spear[ai] / (n_rep * np.sqrt(vz) * float(lab.ry_rep.std())), 0.0)
        stat = np.where(sd_all[:, None] > 0, sums.rep[ai] / (n_rep * sd_all[:, None] * sd_y_rep), 0.0)
    d.update(metric="pearson", score=np.abs(r_rep), sign=np.where(r_rep >= 0, 1, -1), select_score=np.abs(r_sel),
             pearson=r_rep, spearman=spear, mean_in=np.nan, mean_out=np.nan)
    return np.abs(stat)


def _chance_levels(table: pd.DataFrame, n_perm: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The family-wise chance level (best unit per permutation) and every unit's p-value against it."""
    null_max = np.max(np.stack(table.pop("_null").to_list()), axis=0)
    obs = table.pop("_stat").to_numpy()
    table["chance"] = float(null_max.mean())
    table["p_value"] = (1 + (null_max[None, :] >= obs[:, None] - 1e-12).sum(1)) / (n_perm + 1)
    return table, null_max


def _ranked_table(table: pd.DataFrame) -> pd.DataFrame:
    """Best on the select part first, with a rank column and the main columns in front."""
    table = table.sort_values(["select_score", "score"], ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    cols = ["rank", "unit", "layer", "kind", "index", "metric", "score", "sign", "select_score", "chance",
            "p_value", "mean_in", "mean_out"]
    cols += [c for c in table.columns if c not in cols]
    return table[cols]
