"""probe compare: per-character loss of models and n-grams, and where each wins."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from probe.analysis.compare import (block_bootstrap, char_bits, compare, matched_pairs, model_symbol_bits,
                                    parse_side)
from probe.cli.main import main
from probe.errors import ProbeError
from probe.model import checkpoint as ckpt
from probe.train.loop import TrainConfig, train


def planted_text(n_segments: int, seed: int) -> str:
    """Segments '(' or '[' + 6..12 random a/b + the matching closer + ' ': the closer depends on an opener
    beyond a 4-gram's reach."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_segments):
        o, c = ("(", ")") if rng.random() < 0.5 else ("[", "]")
        out.append(o + "".join(rng.choice(list("ab"), int(rng.integers(6, 13)))) + c + " ")
    return "".join(out)


@pytest.fixture(scope="module")
def bracket_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("planted")
    data = folder / "planted.txt"
    data.write_text(planted_text(2500, 0))
    out = folder / "run"
    train(TrainConfig(data=str(data), out=str(out), rnn_size=24, num_layers=1, embed_size=8, dropout=0.0,
                      seq_length=60, batch_size=16, learning_rate=2e-2, max_iters=400, eval_every=400,
                      warmup_iters=10, sample_length=10, seed=1), progress=False)
    return out


def test_lstm_beats_the_ngram_exactly_at_the_planted_closers(bracket_model, tmp_path):
    text = planted_text(150, 7)
    cmp = compare(bracket_model, "ngram:4", text, cache=tmp_path / "cache", n_boot=200)
    closers = np.array([ch in ")]" for ch in cmp.text.chars])
    d = cmp.delta
    ok = np.isfinite(d)
    assert d[closers & ok].mean() > 0.5  # the LSTM remembers which bracket opened, the 4-gram cannot
    assert d[closers & ok].mean() > d[~closers & ok].mean() + 0.4
    lr = cmp.long_range
    pairs = lr[lr.kind.str.startswith("bracket")]
    assert len(pairs) and (pairs.p_a > pairs.p_b).all()
    assert pairs.n.sum() == 150  # every segment is one matched pair
    row = cmp.summary.iloc[0]
    assert row.region == "all" and row.ci_low <= row.delta_bpc <= row.ci_high


def test_model_loss_equals_the_recorders(tiny_byte_lstm):
    from probe.record.recorder import record_arrays

    ck = ckpt.load(tiny_byte_lstm)
    text = "caf\u00e9 [[Paris]] (1998) \"quoted\" <ref>x</ref> done."
    got = model_symbol_bits(ck.model, ck.vocab.encode(text))
    rec = record_arrays(ck.model, ck.vocab, text, gates=False, topk=0)
    np.testing.assert_allclose(got[1:], rec["loss_bits"][:-1], rtol=1e-4, atol=1e-4)
    per_char = char_bits(got, rec["char_of_row"], len(text))
    assert np.isnan(per_char[0]) and len(per_char) == len(text)
    e = text.index("\u00e9")  # two bytes: the character's bits are their sum
    assert per_char[e] == pytest.approx(got[e] + got[e + 1])


def test_byte_and_char_models_compare_per_character(tiny_lstm, tiny_byte_lstm, tmp_path):
    cmp = compare(tiny_lstm, tiny_byte_lstm, "To be, or not to be: that is the question.")
    assert "common unit" in cmp.note and "character" in cmp.note
    assert len(cmp.a_bits) == len(cmp.b_bits) == len(cmp.text.chars)
    d = cmp.to_dict()
    assert json.loads(json.dumps(d, default=float))["summary"][0]["region"] == "all"


def test_matched_pairs():
    text = 'a (b [c] d) "q" <ref name="x">t</ref> [[Link]] &lt;b&gt;u&lt;/b&gt;'
    got = {(p.kind, text[p.opener], text[p.closer:p.closer + p.length]) for p in matched_pairs(text)}
    assert ("bracket ()", "(", ")") in got and ("bracket []", "[", "]") in got
    assert ("quote", '"', '"') in got
    assert ("xml tag", "<", "ref>") in got and ("xml tag", "&", "b&gt;") in got
    assert ("wiki link [[ ]]", "[", "]]") in got


def test_block_bootstrap_covers_the_mean():
    rng = np.random.default_rng(0)
    d = rng.normal(0.3, 1.0, 20000)
    lo, hi = block_bootstrap(d, np.ones(len(d), bool), block=100, n_boot=300)
    assert lo < 0.3 < hi and hi - lo < 0.1


@pytest.mark.parametrize("spec", ["ngram:0", "ngram:x", "ngram:-2", "ngram:2.5"])
def test_bad_ngram_order(spec):
    with pytest.raises(ProbeError, match="positive integer"):
        parse_side(spec)


def test_cli_bad_input(tiny_lstm, tiny_byte_lstm, tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("To be")
    cases = [
        ([str(tiny_lstm), "ngram:x"], "positive integer"),
        (["ngram:3", "ngram:5"], "both n-grams"),
        ([str(tiny_lstm), "ngram:9", str(short)], "fewer than the n-gram order"),
        ([str(tiny_lstm), "ngram:3", "--concept", "nonsense"], "unknown concept"),
        ([str(tiny_lstm), "ngram:3", "--concept", "column"], "continuous"),
        ([str(tiny_lstm), "ngram:3", str(tmp_path / "missing.txt")], "no such text file"),
    ]
    uni = tmp_path / "uni.txt"
    uni.write_text("To be \u263a or not")  # the char model reads the smiley as <unk>
    cases.append(([str(tiny_lstm), str(tiny_byte_lstm), str(uni)], "<unk>"))
    for argv, msg in cases:
        out = tmp_path / "out"
        assert main(["compare", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("probe compare: error:") and msg in err and "\n" not in err
        assert not out.exists()  # nothing half-written
    assert list(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_cli_writes_tables_and_figures(tiny_lstm, tmp_path, capsys, small_text_file):
    out, js = tmp_path / "cmp", tmp_path / "cmp.json"
    text = tmp_path / "t.txt"
    text.write_text(small_text_file.read_text()[:3000])
    assert main(["compare", str(tiny_lstm), "ngram:3", str(text), "--out", str(out), "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    assert "where A wins" in printed
    assert {"summary.csv", "by_char.csv", "contexts.csv", "compare.json", "delta_heatmap.html"} <= \
        {p.name for p in out.iterdir()}
    assert json.loads(js.read_text())["b"] == "ngram:3"
    assert main(["compare", str(tiny_lstm), "ngram:3", str(text), "--out", str(out)]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
