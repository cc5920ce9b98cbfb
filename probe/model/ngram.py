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

Symbols are first renumbered densely (those seen in training get 0..K-1, all
others share K, which no counted n-gram holds); an n-gram of k symbols is then
one integer, sum_j w_j B^(k-1-j) with B = K + 1, so counting is `np.unique`
over a vector and lookups are `np.searchsorted`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from probe.errors import ProbeError

LN2 = math.log(2)
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # when an order's count-of-counts cannot estimate them


@dataclass
class _Order:
    """Counts of one order k: sorted n-gram codes, their counts, and per-context totals."""

    grams: np.ndarray  # sorted int64 codes of k-grams
    counts: np.ndarray  # c_k of each gram (raw at the top order, continuation below)
    contexts: np.ndarray  # sorted int64 codes of the (k-1)-gram contexts
    totals: np.ndarray  # c_k(h.) per context
    gammas: np.ndarray  # back-off weight per context
    discounts: np.ndarray  # D for count 0, 1, 2, 3+ (D[0] = 0)


def _codes(ids: np.ndarray, k: int, V: int) -> np.ndarray:
    """Code of every window of k symbols: array of length len(ids) - k + 1."""
    n = len(ids) - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    code = ids[:n].copy()
    for j in range(1, k):
        code = code * V + ids[j:j + n]
    return code


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found) of each key in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
    idx = np.searchsorted(sorted_keys, keys)
    idx = np.minimum(idx, len(sorted_keys) - 1)
    return idx, sorted_keys[idx] == keys


def _modified_discounts(counts: np.ndarray) -> np.ndarray:
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
        if order < 1:
            raise ProbeError(f"n-gram order must be at least 1, not {order}")
        if vocab_size < 1:
            raise ProbeError(f"vocabulary size must be at least 1, not {vocab_size}")
        if discount is not None and not 0 < discount <= 1:
            raise ProbeError(f"discount must be in (0, 1], not {discount}")
        self.order, self.V, self.discount = order, vocab_size, discount
        self.orders: list[_Order] = []  # orders[k-1] is order k
        self.B = 0  # code base: symbols seen in training + 1
        self._dense = np.zeros(vocab_size, dtype=np.int64)  # symbol id -> dense code

    # ------------------------------------------------------------------ training
    def fit(self, ids: np.ndarray) -> "KneserNey":
        ids = self._check(ids)
        if len(ids) < self.order:
            raise ProbeError(f"cannot fit an order-{self.order} n-gram model on {len(ids)} symbols")
        seen_symbols = np.unique(ids)
        self.B = V = len(seen_symbols) + 1
        N = self.order
        if math.log2(V) * N >= 62:
            raise ProbeError(f"an order-{N} model over {V - 1} distinct symbols does not fit 64-bit codes")
        self._dense = np.full(self.V, V - 1, dtype=np.int64)
        self._dense[seen_symbols] = np.arange(V - 1)
        ids = self._dense[ids]
        tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        tables[N] = np.unique(_codes(ids, N, V), return_counts=True)
        seen = tables[N][0]  # distinct (k+1)-grams of the text, from the top order down
        for k in range(N - 1, 0, -1):
            # continuation count of a k-gram: how many distinct symbols were seen before it
            tables[k] = np.unique(seen % V ** k, return_counts=True)
            if k > 1:  # distinct k-grams: prefixes of the (k+1)-grams, plus the text's last k-gram
                seen = np.unique(np.append(seen // V, _codes(ids[-k:], k, V)))
        self.orders = [self._stats(*tables[k]) for k in range(1, N + 1)]
        return self

    def _stats(self, grams: np.ndarray, counts: np.ndarray) -> _Order:
        V = self.B
        if self.discount is None:
            D = _modified_discounts(counts)
        else:
            D = np.array([0.0, self.discount, self.discount, self.discount])
        contexts, starts = np.unique(grams // V, return_index=True)
        totals = np.add.reduceat(counts, starts).astype(np.float64)
        bucket = np.minimum(counts, 3)
        mass = np.add.reduceat(D[bucket], starts)
        return _Order(grams=grams, counts=counts, contexts=contexts, totals=totals, gammas=mass / totals,
                      discounts=D)

    # ------------------------------------------------------------------ probabilities
    def _check(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) and (ids.min() < 0 or ids.max() >= self.V):
            raise ProbeError(f"symbol ids must lie in 0..{self.V - 1}")
        return ids

    def _prob(self, contexts: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        """P(w | context) for dense codes w; contexts[k-1] holds the code of the k-1 preceding symbols, -1 where
        there are fewer."""
        if not self.orders:
            raise ProbeError("the n-gram model is not fitted")
        p = np.full(len(w), 1.0 / self.V)
        for k, t in enumerate(self.orders, start=1):
            h = contexts[k - 1]
            ci, has = _lookup(t.contexts, h)
            has &= h >= 0
            gi, seen = _lookup(t.grams, np.where(h >= 0, h, 0) * self.B + w)
            c = np.where(seen & has, t.counts[gi], 0)
            own = np.maximum(c - t.discounts[np.minimum(c, 3)], 0.0) / np.where(has, t.totals[ci], 1.0)
            p = np.where(has, own + t.gammas[ci] * p, p)
        return p

    def _contexts(self, ids: np.ndarray) -> list[np.ndarray]:
        """Per order k, the code of the k-1 symbols before each position (-1 near the start)."""
        n = len(ids)
        out = [np.zeros(n, dtype=np.int64)]
        for k in range(2, self.order + 1):
            h = np.full(n, -1, dtype=np.int64)
            codes = _codes(ids, k - 1, self.B)  # codes[i] covers ids[i : i+k-1], the context of position i+k-1
            h[k - 1:] = codes[: n - (k - 1)]
            out.append(h)
        return out

    def log2_probs(self, ids) -> np.ndarray:
        """log2 P of every symbol of `ids` given the symbols before it in `ids` (the first ones with less context)."""
        ids = self._dense[self._check(ids)]
        return np.log2(self._prob(self._contexts(ids), ids))

    def bits(self, ids) -> float:
        """Total bits to code `ids` (every symbol, the first ones with shorter contexts)."""
        return float(-self.log2_probs(ids).sum())

    def bits_per_symbol(self, ids) -> float:
        ids = self._check(ids)
        return self.bits(ids) / max(len(ids), 1)

    def distribution(self, context) -> np.ndarray:
        """P(w | context) for every symbol w of the vocabulary (uses the last order-1 symbols of `context`)."""
        ctx = self._dense[self._check(context)]
        w = self._dense[np.arange(self.V, dtype=np.int64)]
        contexts = [np.zeros(self.V, dtype=np.int64)]
        for k in range(2, self.order + 1):
            if len(ctx) >= k - 1:
                code = int(_codes(ctx[len(ctx) - (k - 1):], k - 1, self.B)[0])
            else:
                code = -1
            contexts.append(np.full(self.V, code, dtype=np.int64))
        return self._prob(contexts, w)
