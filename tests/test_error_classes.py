"""probe errors: the paper's error breakdown, each error in the first class whose oracle removes it."""
from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest

from probe.analysis.error_classes import breakdown, group_table, memory_distance, words
from probe.cli.main import main


@pytest.fixture(scope="module")
def result(tiny_lstm, small_text_file, tmp_path_factory):
    text = small_text_file.read_text()[5000:9000]
    return breakdown(tiny_lstm, text, cache=tmp_path_factory.mktemp("cache")), text


def test_every_error_lands_in_exactly_one_class(result):
    b, text = result
    t = b.table
    assert b.n_errors == int(np.sum(b.probs[1:] < 0.5)) == t.n_errors.sum() > 0
    assert t.share.sum() == pytest.approx(1.0) and t.cumulative_share.iloc[-1] == pytest.approx(1.0)
    assert list(dict.fromkeys(t.group)) == ["n-gram", "dynamic memory", "rare words", "word model", "punctuation",
                                            "boost", "remaining"]
    assert (b.labels >= 0).sum() == b.n_errors and np.all(b.probs[b.labels >= 0] < 0.5)
    g = group_table(b)
    assert g.n_errors.sum() == b.n_errors


def test_classes_mean_what_they_say(result):
    b, text = result
    cls = dict(enumerate(b.table.cls))
    word_of, spans = words(text)
    starts = {s for s, _ in spans}
    for i in np.flatnonzero(b.labels >= 0):
        name = cls[int(b.labels[i])]
        if name.startswith("memory"):
            assert word_of[i] >= 0 and i not in starts
            s, e = spans[word_of[i]]
            window = int(name.split()[1])
            assert text[s:e] in text[max(0, s - window):s]
        elif name == "after space/newline/quote":
            assert text[i - 1] in " \n'\""
        elif name == "punctuation":
            assert unicodedata.category(text[i]).startswith("P")
        elif name.startswith("boost"):
            assert b.probs[i] >= 0.5 - float(name.split()[1]) - 1e-9
        elif name == "remaining":
            assert b.probs[i] < 0.1


def test_memory_distance_finds_the_nearest_earlier_occurrence():
    text = "Jon met Mary. Later Mary left; Maryland is far."
    _, spans = words(text)
    d = memory_distance(text, spans, np.ones(len(spans), bool), 100)
    assert d[4] == text.index("Mary", 10) - text.index("Mary")  # second Mary: the first is that far back
    assert d[2] > 1000  # the first Mary has none before it
    assert d[[j for j, (s, e) in enumerate(spans) if text[s:e] == "Maryland"][0]] > 1000  # a whole word


def test_cli(tiny_lstm, small_text_file, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(small_text_file.read_text()[:3000])
    out, js = tmp_path / "err", tmp_path / "err.json"
    assert main(["errors", str(tiny_lstm), str(text), "--out", str(out), "--json", str(js)]) == 0
    assert "word model" in capsys.readouterr().out
    assert {"errors.csv", "errors.json", "errors.html"} <= {p.name for p in out.iterdir()}
    assert json.loads(js.read_text())["n_errors"] > 0
    short = tmp_path / "short.txt"
    short.write_text("To be")
    for argv, msg in (([str(short)], "fewer than the n-gram oracle"), ([str(tmp_path / "none.txt")], "no such")):
        dest = tmp_path / "bad"
        assert main(["errors", str(tiny_lstm), *argv, "--out", str(dest)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("probe errors: error:") and msg in err and "\n" not in err
        assert not dest.exists()
