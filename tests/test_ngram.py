"""The Kneser-Ney n-gram model: a proper distribution, equal to a plain dict-based reference, fast enough."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from probe.errors import ProbeError
from probe.model.ngram import KneserNey, _modified_discounts, fit_cached


def reference_kn(train: list[int], order: int, V: int, discounts) -> callable:
    """Interpolated Kneser-Ney written the slow, obvious way with tuples and dicts.

    `discounts(k, c)` is the discount of a count c at order k.
    """
    grams = {k: Counter(tuple(train[i:i + k]) for i in range(len(train) - k + 1)) for k in range(1, order + 1)}
    table = {order: dict(grams[order])}
    for k in range(1, order):
        cont: Counter = Counter()
        for g in grams[k + 1]:  # distinct (k+1)-grams
            cont[g[1:]] += 1
        table[k] = dict(cont)

    def prob(ctx: tuple, w: int) -> float:
        p = 1.0 / V
        for k in range(1, order + 1):
            if len(ctx) < k - 1:
                continue
            h = tuple(ctx[len(ctx) - (k - 1):]) if k > 1 else ()
            row = {g[-1]: c for g, c in table[k].items() if g[:-1] == h}
            total = sum(row.values())
            if total == 0:
                continue
            gamma = sum(discounts(k, c) for c in row.values()) / total
            c = row.get(w, 0)
            p = max(c - discounts(k, c), 0) / total + gamma * p if c else gamma * p
        return p

    return prob


@pytest.fixture(scope="module")
def small_train() -> list[int]:
    rng = np.random.default_rng(1)
    # a little structure (a Markov chain) so that higher orders matter, over 6 of 8 symbols
    out, s = [], 0
    for _ in range(600):
        s = (s + int(rng.choice([1, 1, 2, 3]))) % 6
        out.append(s)
    return out


@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("discount", [None, 0.75])
def test_distribution_sums_to_one(small_train, order, discount):
    m = KneserNey(order, 8, discount).fit(np.array(small_train))
    for ctx in ([], [1], [0, 1, 2, 3], [7, 7, 7, 7], [2, 5, 7], [3, 4, 0, 1, 2, 6, 7]):
        dist = m.distribution(np.array(ctx, dtype=np.int64))
        assert dist.shape == (8,)
        assert np.all(dist > 0)
        assert dist.sum() == pytest.approx(1.0, abs=1e-12)
    # symbols 6 and 7 never occur in training: they are treated alike and get little mass
    assert dist[6] == dist[7] < dist[:6].min()


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_equals_reference_plain(small_train, order):
    m = KneserNey(order, 8, discount=0.75).fit(np.array(small_train))
    ref = reference_kn(small_train, order, 8, lambda k, c: 0.75 if c else 0.0)
    test = [1, 2, 4, 5, 0, 7, 1, 2, 3, 3, 4]
    got = 2.0 ** m.log2_probs(np.array(test))
    want = [ref(tuple(test[:i]), test[i]) for i in range(len(test))]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_equals_reference_modified():
    order = 3
    rng = np.random.default_rng(2)
    zipf = 1 / np.arange(1, 21)
    train = rng.choice(20, 1500, p=zipf / zipf.sum()).tolist()  # varied counts: discounts can be estimated
    m = KneserNey(order, 24).fit(np.array(train))
    D = {k: m.orders[k - 1].discounts for k in range(1, order + 1)}
    assert sum(tuple(d) != (0.0, 0.5, 1.0, 1.5) for d in D.values()) >= 2  # estimated from the counts
    ref = reference_kn(train, order, 24, lambda k, c: float(D[k][min(c, 3)]))
    test = [0, 1, 2, 3, 5, 6, 0, 2, 4, 19, 0, 0, 1, 23, 0]
    got = 2.0 ** m.log2_probs(np.array(test))
    want = [ref(tuple(test[:i]), test[i]) for i in range(len(test))]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_modified_discounts_formula():
    counts = np.array([1] * 100 + [2] * 40 + [3] * 20 + [4] * 10 + [9] * 5)
    y = 100 / (100 + 2 * 40)
    want = [0.0, 1 - 2 * y * 40 / 100, 2 - 3 * y * 20 / 40, 3 - 4 * y * 10 / 20]
    np.testing.assert_allclose(_modified_discounts(counts), want)
    # no count-of-counts to estimate from: the fallback, never a zero discount
    assert _modified_discounts(np.array([5, 5, 7])).tolist() == [0.0, 0.5, 1.0, 1.5]


def test_order_one_is_smoothed_unigram_frequencies():
    text = np.array([0] * 50 + [1] * 30 + [2] * 19 + [3] * 1)
    m = KneserNey(1, 5, discount=0.75).fit(text)
    counts = np.array([50, 30, 19, 1, 0], dtype=float)
    total, types = counts.sum(), 4
    want = np.maximum(counts - 0.75, 0) / total + 0.75 * types / total / 5
    np.testing.assert_allclose(m.distribution(np.array([3, 3])), want, rtol=1e-12)
    assert m.distribution(np.array([], dtype=np.int64)).argmax() == 0


def test_lower_orders_use_continuation_counts():
    # 'a' (0) is frequent but only ever follows 'x' (4); 'b' (1) is rarer but follows three symbols
    text = np.array([4, 0] * 20 + [2, 1, 3, 1, 5, 1])
    m = KneserNey(2, 7, discount=0.75).fit(text)
    after_unseen = m.distribution(np.array([6]))  # 6 never seen: order 1 decides
    assert after_unseen[1] > after_unseen[0]
    assert m.distribution(np.array([4])).argmax() == 0  # after 'x' comes 'a'


def test_repeated_pattern_costs_almost_nothing():
    pattern = np.frombuffer(b"the cat. " * 500, dtype=np.uint8).astype(np.int64)
    m = KneserNey(5, 256).fit(pattern)
    heldout = np.frombuffer(b"the cat. " * 100, dtype=np.uint8).astype(np.int64)
    assert m.bits_per_symbol(heldout) < 0.05
    # while a text of other symbols costs many bits per symbol
    assert m.bits_per_symbol(np.frombuffer(b"zyxwvu" * 20, dtype=np.uint8)) > 6


def test_more_order_helps_on_real_text(shakespeare_text):
    ids = np.frombuffer(shakespeare_text[:60000].encode(), dtype=np.uint8).astype(np.int64)
    train, test = ids[:50000], ids[50000:]
    bpc = [KneserNey(n, 256).fit(train).bits_per_symbol(test) for n in (1, 2, 3)]
    assert bpc[0] > bpc[1] > bpc[2]
    assert 4.0 < bpc[0] < 5.0  # unigram entropy of English text


@pytest.mark.parametrize("make", [
    lambda: KneserNey(0, 10),
    lambda: KneserNey(3, 0),
    lambda: KneserNey(3, 10, discount=1.5),
    lambda: KneserNey(3, 10).fit(np.array([1, 2])),
    lambda: KneserNey(2, 10).fit(np.array([1, 2, 12])),
    lambda: KneserNey(2, 10).bits(np.array([1, 2])),
    lambda: KneserNey(2, 4).fit(np.array([1, 2, 3])).bits(np.array([1, 4])),
    lambda: KneserNey(5, 256).fit(np.arange(4)),
    lambda: KneserNey(2.5, 10),
    lambda: KneserNey("7", 10),
    lambda: KneserNey(True, 10),
])
def test_bad_input_is_a_probe_error(make):
    with pytest.raises(ProbeError):
        make()


def direct_log2_probs(train: list[int], test: list[int], order: int, V: int, discounts) -> np.ndarray:
    """The slow reference, scored symbol by symbol over a whole text."""
    ref = reference_kn(train, order, V, discounts)
    return np.log2([ref(tuple(test[:i]), test[i]) for i in range(len(test))])


def test_high_order_over_bytes_equals_reference():
    # orders whose codes would not fit 64 bits as plain base-B numbers: ids of k-grams keep them exact
    text = (b"the cat sat on the mat; the cat ran. " * 3 + b"a dog [[sat]] (on) the mat.") * 2
    train = list(text)
    test = list(b"the dog sat on the cat; [[the mat]] ran (to the cat).")
    for order in (8, 12):
        m = KneserNey(order, 256, discount=0.75).fit(np.array(train))
        want = direct_log2_probs(train, test, order, 256, lambda k, c: 0.75 if c else 0.0)
        np.testing.assert_allclose(m.log2_probs(np.array(test)), want, rtol=1e-10)


def test_save_load_and_cache_give_the_same_numbers(tmp_path, small_train):
    train = np.array(small_train)
    test = np.array([1, 2, 4, 5, 0, 7, 1, 2, 3, 3, 4, 5, 0, 1])
    m = KneserNey(6, 8).fit(train)
    loaded = KneserNey.load(m.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.log2_probs(test), m.log2_probs(test))
    np.testing.assert_array_equal(loaded.distribution(test[:5]), m.distribution(test[:5]))
    first = fit_cached(train, 6, 8, cache=tmp_path / "cache")
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1 and (entries[0] / "model.json").exists()
    again = fit_cached(train, 6, 8, cache=tmp_path / "cache")  # loaded, memory-mapped
    assert isinstance(again.orders[-1].grams, np.memmap)
    np.testing.assert_array_equal(again.log2_probs(test), first.log2_probs(test))
    fit_cached(train, 5, 8, cache=tmp_path / "cache")  # another order: another entry
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_twenty_gram_scores_a_long_text_in_seconds(shakespeare_text):
    import time
    ids = np.frombuffer(shakespeare_text.encode(), dtype=np.uint8).astype(np.int64)
    m = KneserNey(20, 256).fit(ids[:400_000])
    t0 = time.perf_counter()
    lp = m.log2_probs(ids[400_000:700_000])
    assert time.perf_counter() - t0 < 10  # about a second here
    assert np.all(np.isfinite(lp)) and 1.5 < -lp.mean() < 3.5
