"""The generated candidate library: the right kinds of candidates, correct labels, no constant/rare/duplicate ones."""
from __future__ import annotations

import numpy as np
import pytest

from probe.analysis import candidates as cand
from probe.analysis.candidates import RowConcept, candidate_library
from probe.analysis.concepts import bracket_depth
from probe.record.recording import char_of_row_for_bytes

LINE = 'The city (north (old) part) was built in 1492 by "the king". <b>Bold [x]</b> and the river {a}.\n'


@pytest.fixture(scope="module")
def text() -> str:
    rng = np.random.default_rng(0)
    words = ["the", "river", "city", "of", "and", "church", "was", "built", "in", "by", "North", "(old)"]
    lines = [LINE]
    for _ in range(300):
        lines.append(" ".join(str(rng.choice(words)) if rng.random() > 0.1 else str(rng.integers(10, 999))
                              for _ in range(int(rng.integers(3, 10)))) + ".\n")
        if rng.random() < 0.3:
            lines.append(LINE)
    return "".join(lines)


@pytest.fixture(scope="module")
def library(text):
    return candidate_library(text)


def test_library_holds_every_family(library):
    names = {c.name for c in library}
    for want in ["column", "quote", "line-end-distance", "bracket-depth", "letter", "digit", "upper",
                 "space", "newline", "punct", "next:digit", "prev:space", "next:newline", "char:e", "next:e",
                 "prev:t", "char:(", "word-pos", "word-left", "line-word", "sentence-pos", "in (\u2026)",
                 "depth (\u2026)", "in [\u2026]", "in {\u2026}", "in <b>", "after 'the '",
                 "after 'th'"]:
        assert want in names, want
    kinds = {c.label_type for c in library}
    assert kinds == {"binary", "integer", "continuous"}
    assert 100 <= len(library) <= 400
    assert len(names) == len(library)  # unique names
    assert 'in "\u2026"' not in names  # the same labelling as the built-in quote: a duplicate, dropped


def test_no_constant_rare_or_duplicate_labellings(library, text):
    need = max(20, int(0.0005 * len(text)))
    keys = set()
    for c in library:
        y = c.labels(text)
        assert y.shape == (len(text),)
        vals, counts = np.unique(y, return_counts=True)
        assert len(vals) >= 2 and len(y) - counts.max() >= need, c.name
        key = cand._fingerprint(y, vals)
        assert key not in keys, c.name
        keys.add(key)
    # the complement of a binary labelling is a duplicate (direction-free scores): only one of them is kept
    names = {c.name for c in library}
    assert not ({"letter", "non-letter"} <= names)


def test_cached_labels_equal_a_fresh_computation(library, text):
    """Labels come from the cache for the library's own text; the functions behind them give the same."""
    for c in library:
        fresh = np.asarray(c.fn.fn(text)).astype(c.labels(text).dtype)
        np.testing.assert_array_equal(fresh, c.labels(text), err_msg=c.name)
    other = "x (y) 12 the end\n" * 50
    digit = next(c for c in library if c.name == "digit")
    assert digit.labels(other).sum() == 100  # another text: computed, not the cache


def test_label_values():
    t = "the cat. A dog\n(a (b) c) x"
    pos = cand.positions(t)
    assert pos["word-pos"][:8].tolist() == [1, 2, 3, 0, 1, 2, 3, 0]
    assert pos["word-left"][:4].tolist() == [2, 1, 0, 0]
    assert pos["sentence-pos"][6:11].tolist() == [6, 7, 0, 1, 2]  # characters since the ". " that ended the last one
    assert pos["line-word"][14:].tolist()[-1] == 4  # a b c x on the second line
    assert cand.pair_depth("a(b(c)d)e", "(", ")").tolist() == [0, 1, 1, 2, 2, 2, 1, 1, 0]
    for s in [")a(b)", "((x)", "a)(b))c(", "[[a]] [b]"]:
        assert cand.pair_depth(s, "(", ")").tolist() == bracket_depth(s.replace("[", "x").replace("]", "x")).tolist()
    assert cand.pair_depth("x [[a [[b]] c]] y", "[[", "]]").tolist() == \
        [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0]
    got = cand.toggle_inside('say "hi" and "yo"\n"x', '"')
    assert "".join(ch for ch, g in zip('say "hi" and "yo"\n"x', got) if g) == '"hi""yo"'
    after = cand._after("the theme", "the")
    assert np.flatnonzero(after).tolist() == [2, 6]
    ngrams = dict(cand.ngram_contexts("abcabcabc" * 10, ns=(3,), top=3, min_count=5))
    assert set(ngrams) == {"abc", "bca", "cab"}
    assert np.flatnonzero(ngrams["abc"])[:2].tolist() == [2, 5]
    d = cand.tag_depths("<p>a <i>b</i></p> <p><i>c</i></p>", cand.TAG, 1, 5)
    assert d["p"].tolist()[:3] == [1, 1, 1] and d["i"].sum() == 16 and d["p"].sum() == 32


def test_byte_models_get_utf8_positions():
    t = ("caf\u00e9 na\u00efve \u65e5\u672c " * 40) + "plain ascii text " * 20
    lib = candidate_library(t, byte_model=True)
    rows = [c for c in lib if isinstance(c, RowConcept)]
    assert {c.name for c in rows} == {"utf8-byte", "utf8-left", "utf8-cont", "utf8-lead"}
    assert "non-ascii" in {c.name for c in lib}  # (utf8-multibyte is the same labelling: a duplicate)

    class Rec:
        char_of_row = char_of_row_for_bytes("a\u00e9\u65e5".encode())  # 1 + 2 + 3 bytes

    by = {c.name: c.row_labels_for(Rec) for c in rows}
    assert by["utf8-byte"].tolist() == [0, 0, 1, 0, 1, 2]
    assert by["utf8-left"].tolist() == [0, 1, 0, 2, 1, 0]
    assert by["utf8-cont"].tolist() == [0, 0, 1, 0, 1, 1]
    assert by["utf8-lead"].tolist() == [0, 1, 0, 1, 0, 0]
    assert not any(isinstance(c, RowConcept) for c in candidate_library(t))  # char models: none


def test_edge_cases():
    assert candidate_library("") == []
    assert candidate_library("aaaa") == []  # everything constant
    few = {c.name for c in candidate_library("ab" * 30, min_count=20)}
    assert "char:a" in few and not few & {"digit", "upper", "newline", "space", "char:b"}  # absent; b = not a
    assert len(few) < 15
