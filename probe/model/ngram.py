"""A smoothed n-gram language model over symbol ids: interpolated Kneser-Ney, counted with numpy.

    P_k(w | h) = max(c_k(hw) - D_k(c_k(hw)), 0) / c_k(h.)  +  gamma_k(h) * P_{k-1}(w | h')
    gamma_k(h) = (D_k1 N1(h.) + D_k2 N2(h.) + D_k3 N3+(h.)) / c_k(h.)

h' drops the oldest symbol of h; P_0 is uniform over the whole vocabulary, so
unseen symbols keep some mass. c_N are raw counts; for lower orders c_k(hw) is
the continuation count, the number of distinct symbols seen before hw. A
context never seen at order k (or too close to the start of the text) passes
straight to order k-1. Discounts are modified Kneser-Ney (Chen & Goodman:
D_j = j - (j+1) Y n_{j+1} / n_j, Y = n1 / (n1 + 2 n2), from each order's
count-of-counts), or one fixed discount for every count.

How it stays fast at any order (a 20-gram over bytes included): symbols are
first renumbered densely (those seen in training get 0..K-1, all others share
K, which no counted n-gram holds; B = K + 1). Every distinct k-gram of the
training text then gets an exact integer id, its rank among the codes
`id(first k-1 symbols) * B + last symbol`, so one `np.unique` per order numbers
all k-grams of the text, and a code never exceeds (text length) * B. Scoring
a text finds each of its k-grams' ids the same way, with one `np.searchsorted`
per order. Per-context totals and back-off weights are arrays indexed by the
context's id. A fitted model saves to a folder of .npy arrays plus JSON
(`save`/`load`, memory-mapped), and `fit_cached` keeps one per corpus and order.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probe.checks import ParamError
from probe.errors import ProbeError
from probe.files import atomic_folder

LN2 = math.log(2)
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # when an order's count-of-counts cannot estimate them
FORMAT, VERSION = "probe-ngram", 2


@dataclass
class _Order:
    """Counts of one order k: the training text's distinct k-grams and per-context statistics."""

    grams: np.ndarray  # sorted int64 codes id(context) * B + symbol of every distinct k-gram; a k-gram's id is its index
    counts: np.ndarray  # c_k of each gram (raw at the top order, continuation below; 0 is possible below)
    totals: np.ndarray  # c_k(h.) per context id (a (k-1)-gram id); 0: the context has no counted continuation
    gammas: np.ndarray  # back-off weight per context id
    discounts: np.ndarray  # D for count 0, 1, 2, 3+ (D[0] = 0)


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each key in a sorted array, -1 where absent."""
    if len(sorted_keys) == 0 or len(keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    idx = np.searchsorted(sorted_keys, keys)
    idx = np.minimum(idx, len(sorted_keys) - 1)
    return np.where(sorted_keys[idx] == keys, idx, -1)


def _modified_discounts(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts)
    n = [int(np.count_nonzero(counts == j)) for j in (1, 2, 3, 4)]
    if min(n) == 0:
        return np.array((0.0,) + FALLBACK_DISCOUNTS)
    y = n[0] / (n[0] + 2 * n[1])
    d = [j - (j + 1) * y * n[j] / n[j - 1] for j in (1, 2, 3)]
    # keep each discount in (0, j]: a zero discount would leave no mass for unseen symbols
    return np.array([0.0] + [min(max(dj, 0.05), float(j)) for j, dj in zip((1, 2, 3), d)])


class KneserNey:
    """Interpolated Kneser-Ney n-gram model over integer symbols 0..vocab_size-1.

    `discount=None` uses modified Kneser-Ney (three discounts per order,
    estimated from the training counts); a number uses that one discount
    for every count (plain interpolated Kneser-Ney; 0.75 is the usual value).
    """

    def __init__(self, order: int = 5, vocab_size: int = 256, discount: float | None = None):
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
            raise ParamError("order", f"must be a positive integer, not {order!r}")
        if vocab_size < 1:
            raise ParamError("vocab_size", f"must be at least 1, not {vocab_size}")
        if discount is not None and not 0 < discount <= 1:
            raise ParamError("discount", f"must be in (0, 1], not {discount}")
        self.order, self.V, self.discount = int(order), int(vocab_size), discount
        self.orders: list[_Order] = []  # orders[k-1] is order k
        self.B = 0  # code base: symbols seen in training + 1
        self._dense = np.zeros(vocab_size, dtype=np.int64)  # symbol id -> dense code

    # ------------------------------------------------------------------ training
    def fit(self, ids) -> "KneserNey":
        ids = self._check(ids)
        if len(ids) < self.order:
            raise ProbeError(f"cannot fit an order-{self.order} n-gram model on {len(ids)} symbols")
        seen_symbols = np.unique(ids)
        self.B = B = len(seen_symbols) + 1
        self._dense = np.full(self.V, B - 1, dtype=np.int64)
        self._dense[seen_symbols] = np.arange(B - 1)
        d = self._dense[ids]
        n, N = len(d), self.order
        grams: list[np.ndarray] = []
        counts: list[np.ndarray] = []
        prev = np.zeros(n, dtype=np.int64)  # id of the (k-1)-gram starting at each position (k = 1: the empty one)
        for k in range(1, N + 1):
            m = n - k + 1
            code = prev[:m] * B + d[k - 1:k - 1 + m]
            uniq, first, ids_k = np.unique(code, return_index=True, return_inverse=True)
            grams.append(uniq)
            if k > 1:  # continuation count of each (k-1)-gram: distinct k-grams that end with it
                counts.append(np.bincount(prev[first + 1], minlength=len(grams[-2])))
            prev = ids_k.reshape(-1).astype(np.int64, copy=False)
            del code
        counts.append(np.bincount(prev, minlength=len(grams[-1])))  # raw counts at the top order
        ctx_sizes = [1] + [len(g) for g in grams[:-1]]
        self.orders = [self._stats(g, c.astype(np.int64), size) for g, c, size in zip(grams, counts, ctx_sizes)]
        return self

    def _stats(self, grams: np.ndarray, counts: np.ndarray, n_contexts: int) -> _Order:
        if self.discount is None:
            D = _modified_discounts(counts[counts > 0])
        else:
            D = np.array([0.0, self.discount, self.discount, self.discount])
        ctx = grams // self.B
        totals = np.bincount(ctx, weights=counts, minlength=n_contexts).astype(np.float64)
        mass = np.bincount(ctx, weights=D[np.minimum(counts, 3)], minlength=n_contexts)
        gammas = np.divide(mass, totals, out=np.zeros_like(mass), where=totals > 0)
        return _Order(grams=grams, counts=counts, totals=totals, gammas=gammas, discounts=D)

    # ------------------------------------------------------------------ probabilities
    def _check(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) and (ids.min() < 0 or ids.max() >= self.V):
            raise ProbeError(f"symbol ids must lie in 0..{self.V - 1}")
        return ids

    def _gram_ids(self, d: np.ndarray) -> list[np.ndarray]:
        """ids[k][i]: the training id of the k-gram d[i:i+k] (-1 if the training text never holds it), k = 0..N;
        ids[0] is the empty gram (0 everywhere, length n + 1)."""
        n = len(d)
        out = [np.zeros(n + 1, dtype=np.int64)]
        for k, t in enumerate(self.orders, start=1):
            m = max(n - k + 1, 0)
            prev = out[-1][:m]
            cur = np.full(m, -1, dtype=np.int64)
            ok = np.flatnonzero(prev >= 0)
            if len(ok):
                cur[ok] = _lookup(t.grams, prev[ok] * self.B + d[ok + k - 1])
            out.append(cur)
        return out

    def log2_probs(self, ids) -> np.ndarray:
        """log2 P of every symbol of `ids` given the symbols before it in `ids` (the first ones with less context)."""
        if not self.orders:
            raise ProbeError("the n-gram model is not fitted")
        d = self._dense[self._check(ids)]
        n = len(d)
        gid = self._gram_ids(d)
        p = np.full(n, 1.0 / self.V)
        pos = np.arange(n)
        for k, t in enumerate(self.orders, start=1):
            start = pos - (k - 1)  # the k-gram ending at each position starts here
            valid = start >= 0
            s = np.where(valid, start, 0)
            h = np.where(valid, gid[k - 1][s], -1)  # the context's (k-1)-gram id
            has = h >= 0
            hh = np.where(has, h, 0)
            has &= t.totals[hh] > 0
            g = np.full(n, -1, dtype=np.int64)
            if n - k + 1 > 0:
                g[k - 1:] = gid[k][: n - k + 1]
            c = np.where(has & (g >= 0), t.counts[np.maximum(g, 0)], 0)
            tot = np.where(has, t.totals[hh], 1.0)
            own = np.maximum(c - t.discounts[np.minimum(c, 3)], 0.0) / tot
            p = np.where(has, own + t.gammas[hh] * p, p)
        return np.log2(p)

    def bits(self, ids) -> float:
        """Total bits to code `ids` (every symbol, the first ones with shorter contexts)."""
        return float(-self.log2_probs(ids).sum())

    def bits_per_symbol(self, ids) -> float:
        ids = self._check(ids)
        return self.bits(ids) / max(len(ids), 1)

    def distribution(self, context) -> np.ndarray:
        """P(w | context) for every symbol w of the vocabulary (uses the last order-1 symbols of `context`)."""
        if not self.orders:
            raise ProbeError("the n-gram model is not fitted")
        ctx = self._dense[self._check(context)][-(self.order - 1):] if self.order > 1 else np.zeros(0, np.int64)
        L = len(ctx)
        gid = self._gram_ids(ctx)
        w = self._dense[np.arange(self.V, dtype=np.int64)]
        p = np.full(self.V, 1.0 / self.V)
        for k, t in enumerate(self.orders, start=1):
            if L < k - 1:
                break
            h = int(gid[k - 1][L - (k - 1)])
            if h < 0 or t.totals[h] <= 0:
                continue
            g = _lookup(t.grams, h * self.B + w)
            c = np.where(g >= 0, t.counts[np.maximum(g, 0)], 0)
            p = np.maximum(c - t.discounts[np.minimum(c, 3)], 0.0) / t.totals[h] + t.gammas[h] * p
        return p

    # ------------------------------------------------------------------ storage
    def save(self, folder: str | Path) -> Path:
        """Write the fitted model to `folder` (.npy arrays and model.json, complete or not at all)."""
        if not self.orders:
            raise ProbeError("the n-gram model is not fitted")
        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            np.save(tmp / "dense.npy", self._dense)
            small = np.int32 if max(len(t.grams) for t in self.orders) < 2 ** 31 else np.int64
            for k, t in enumerate(self.orders, start=1):
                np.save(tmp / f"grams{k}.npy", t.grams)
                np.save(tmp / f"counts{k}.npy", t.counts.astype(small))
                np.save(tmp / f"totals{k}.npy", t.totals.astype(small))  # sums of integer counts
                np.save(tmp / f"gammas{k}.npy", t.gammas)
            meta = {"format": FORMAT, "version": VERSION, "order": self.order, "vocab_size": self.V,
                    "discount": self.discount, "B": self.B,
                    "discounts": [t.discounts.tolist() for t in self.orders]}
            (tmp / "model.json").write_text(json.dumps(meta))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "KneserNey":
        """A model written by `save` (arrays memory-mapped)."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "model.json").read_text())
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise ProbeError(f"{folder} is not a probe n-gram model of version {VERSION}")
            m = cls(meta["order"], meta["vocab_size"], meta["discount"])
            m.B = int(meta["B"])
            m._dense = np.load(folder / "dense.npy")
            m.orders = []
            for k in range(1, m.order + 1):
                arr = {name: np.load(folder / f"{name}{k}.npy", mmap_mode="r")
                       for name in ("grams", "counts", "totals", "gammas")}
                m.orders.append(_Order(grams=arr["grams"], counts=arr["counts"], totals=arr["totals"],
                                       gammas=arr["gammas"], discounts=np.array(meta["discounts"][k - 1])))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ProbeError(f"cannot read the n-gram model {folder}: {e}") from None
        return m


# ---------------------------------------------------------------------- a cache per corpus and order

def cache_dir() -> Path:
    """Where fitted n-gram models are kept: $PROBE_CACHE/ngram, else ~/.cache/probe/ngram."""
    root = os.environ.get("PROBE_CACHE")
    base = Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "probe"
    return base / "ngram"


def fit_cached(ids, order: int, vocab_size: int, discount: float | None = None, *,
               cache: str | Path | None = None) -> KneserNey:
    """A KneserNey model fitted on `ids`, loaded from the cache when the same symbols, order and discount
    were fitted before (the key is the sha256 of the symbols), else fitted and saved there.

    `cache`: a folder, or None for `cache_dir()`; pass False-like "" to fit without caching.
    """
    model = KneserNey(order, vocab_size, discount)  # checks the arguments first
    ids = model._check(ids)
    if cache == "":
        return model.fit(ids)
    digest = hashlib.sha256(ids.astype(np.int64).tobytes()).hexdigest()[:24]
    name = f"{digest}-v{vocab_size}-n{model.order}-" + ("mkn" if discount is None else f"d{discount:g}")
    folder = Path(cache) if cache else cache_dir()
    path = folder / name
    if (path / "model.json").exists():
        try:
            return KneserNey.load(path)
        except ProbeError:
            pass  # a damaged entry: fit again and replace it
    model.fit(ids)
    try:
        model.save(path)
    except OSError:
        pass  # a read-only or full cache only costs time
    return model
