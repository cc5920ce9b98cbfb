"""Ablation (probe.analysis.ablate, `probe ablate`, `probe sample --clamp`) on a hand-built memory LSTM.

The model: one LSTM layer of 8 units over the symbols of "ab."; unit 0's cell is written on `a` (+1) and
`b` (-1) and kept over the dots; the read-out predicts `a` or `b` from it. In the text "a...ab....b..."
the letter after the dots repeats the block's first letter: only unit 0 carries it. The other units have
no weights at all, so holding them at their mean (0) changes nothing.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probe.analysis.ablate import ablate, block_bootstrap
from probe.cli.main import main
from probe.data.vocab import Vocab
from probe.errors import ProbeError
from probe.model import checkpoint
from probe.model.charrnn import CharRNN, ModelConfig
from probe.model.checkpoint import Checkpoint
from probe.model.hooks import run_with_cache

CLOSING = r"(?<=\.)[ab]"  # the letter that ends a block: it needs the memory


def memory_text(blocks: int = 150, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(blocks):
        letter = "ab"[rng.integers(2)]
        out.append(letter + "." * int(rng.integers(2, 7)) + letter)
    return "".join(out)


def memory_model() -> Checkpoint:
    vocab = Vocab.from_text("ab.")
    a, b, dot = (int(vocab.encode(c)[0]) for c in "ab.")
    V, H = vocab.size, 8
    m = CharRNN(ModelConfig(vocab_size=V, rnn_size=H, num_layers=1, embed_size=V, dropout=0.0))
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.embed.weight.copy_(torch.eye(V))
        lstm = m.layers[0]
        i, f, g, o = 0, H, 2 * H, 3 * H  # unit 0 of each gate
        lstm.weight_ih_l0[i, [a, b]] = 40.0      # write on a letter
        lstm.bias_ih_l0[i] = -20.0
        lstm.weight_ih_l0[f, [a, b]] = -40.0     # forget the old letter on a letter, keep it over dots
        lstm.bias_ih_l0[f] = 20.0
        lstm.weight_ih_l0[g, a], lstm.weight_ih_l0[g, b] = 10.0, -10.0
        lstm.bias_ih_l0[o] = 20.0
        m.head.weight[a, 0], m.head.weight[b, 0] = 10.0, -10.0
        m.head.bias[dot] = 6.0
    return Checkpoint(path=None, meta={"model_config": m.cfg.to_json(), "vocab": vocab.to_json()},
                      model=m.eval(), vocab=vocab)


@pytest.fixture(scope="module")
def ck() -> Checkpoint:
    return memory_model()


def test_ablating_the_memory_unit_hurts_the_predictions_that_need_it(ck):
    text = memory_text()
    res = ablate(ck, "L0.c.0", text, concept=CLOSING, n_random=7, block=40)
    t = res.table.iloc[0]
    assert t.delta_in > 2.0 and t.lo_in > 1.0  # many bits lost on the letters that need the memory
    assert abs(t.delta_out) < t.delta_in / 4
    random = res.table.iloc[1:]
    assert len(random) == 7 and not random.units.str.contains(r"L0\.c\.0\b").any()
    assert np.allclose(random[["delta_all", "delta_in", "delta_out"]].to_numpy(), 0.0, atol=1e-6)
    assert res.rank == 1 and res.p_value == pytest.approx(1 / 8)
    # mean mode holds the unit's mean over the text, of the carried c
    c = run_with_cache(ck.model, torch.as_tensor(ck.vocab.encode(text)).view(1, -1), ["L0.c"]).cache["L0.c"]
    assert res.values["L0.c.0"] == pytest.approx(float(c[0, :, 0].mean()), abs=1e-5)
    # per-symbol Δ: NaN for the first, the most changed characters are closing letters
    assert np.isnan(res.delta[0]) and len(res.delta) == len(text)
    assert res.inside[res.top.position.to_numpy()[:5]].all()
    d = res.to_dict()
    assert d["summary"]["rank"] == 1 and len(d["sets"]) == 8 and json.dumps(d)


def test_an_unused_unit_is_a_null_result(ck):
    res = ablate(ck, "L0.h.5", memory_text(), concept=CLOSING, n_random=7, mode="value=3")
    t = res.table.iloc[0]
    for part in ("all", "in", "out"):
        assert t[f"lo_{part}"] <= 0.0 <= t[f"hi_{part}"]
    assert res.p_value == 1.0
    # holding the memory unit's h at its sign-flipped value is worse than holding it at zero
    zero = ablate(ck, "L0.h.0", memory_text(), concept=CLOSING, n_random=0, mode="zero")
    assert zero.table.delta_in[0] > 1.0 and zero.n_random == 0


def test_block_bootstrap_intervals_cover_zero_and_widen_with_dependence():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=20_000)
    walk = np.convolve(noise, np.ones(50) / np.sqrt(50), mode="same")  # strongly autocorrelated, mean 0
    everything = np.ones(len(noise), dtype=bool)
    (lo, hi), = block_bootstrap(noise, [everything], block=200)
    assert lo < 0 < hi
    (lo1, hi1), = block_bootstrap(walk, [everything], block=1)
    (lob, hib), = block_bootstrap(walk, [everything], block=500)
    assert hib - lob > 3 * (hi1 - lo1)  # single characters would claim far too much certainty
    assert lob < 0 < hib


def test_bad_input_is_one_line(ck):
    text = memory_text(20)
    for kw, msg in ((dict(units="L0.f.0"), "carries nothing"), (dict(units="L0.c.8"), "no unit"),
                    (dict(units="L0.h.1", mode="value=nan"), "finite"), (dict(units="L0.h.1", mode="median"),
                                                                         "mean, zero or value"),
                    (dict(units="L0.h.1", n_random=8), "only 7 other units"),
                    (dict(units="L0.h.1", concept="zzz", n_random=3), "matches nothing"),
                    (dict(units=[]), "at least one unit")):
        with pytest.raises(ProbeError, match=msg):
            ablate(ck, text=text, **kw)


@pytest.fixture(scope="module")
def saved(ck, tmp_path_factory):
    dest = tmp_path_factory.mktemp("ck") / "memory"
    checkpoint.save(dest, ck.model, ck.meta)
    return dest


def test_cli_ablate_writes_everything_or_nothing(saved, tmp_path, capsys):
    text = memory_text(60)
    out, js, csv = tmp_path / "abl", tmp_path / "a.json", tmp_path / "sets.csv"
    rc = main(["ablate", str(saved), "--text", text, "--unit", "L0.c.0", "--pattern", CLOSING, "--random", "5",
               "--block", "30", "--out", str(out), "--json", str(js), "--csv", str(csv)])
    printed = capsys.readouterr().out
    assert rc == 0 and "rank 1 of 6" in printed and "inside" in printed
    assert sorted(p.name for p in out.iterdir()) == ["ablation.json", "delta-heatmap.html", "delta.npy",
                                                     "per-symbol.csv", "sets.csv", "top.csv"]
    assert len(np.load(out / "delta.npy")) == len(text)
    assert json.loads(js.read_text())["summary"]["units"] == ["L0.c.0"]
    assert csv.read_text().startswith("set,units,delta_all")
    for argv, msg in ((["--unit", "L0.i.0"], "--unit L0.i.0: gates cannot be held"),
                      (["--unit", "L0.h.0", "--random", "9"], "--random is 9"),
                      (["--unit", "L0.h.0", "--mode", "value=inf"], "--mode"),
                      (["--unit", "L0.h.0", "--pattern", "zzz", "--random", "3"], "matches nothing")):
        bad = tmp_path / "bad"
        rc = main(["ablate", str(saved), "--text", text, "--out", str(bad), "--json", str(tmp_path / "b.json")]
                  + argv)
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err
        assert not bad.exists() and not (tmp_path / "b.json").exists()


def test_cli_sample_clamp(saved, capsys):
    assert main(["sample", str(saved), "--prime", "a..", "--length", "30", "--clamp", "L0.c.0=-1",
                 "--argmax", "--no-prime-echo"]) == 0
    held = capsys.readouterr().out
    assert main(["sample", str(saved), "--prime", "a..", "--length", "30", "--argmax", "--no-prime-echo"]) == 0
    free = capsys.readouterr().out
    assert "a" not in held and "b" in held and free != held
    assert main(["sample", str(saved), "--clamp", "L0.f.0=1"]) == 2
    assert "--clamp L0.f.0: gates cannot be held" in capsys.readouterr().err


def test_mean_pass_and_reused_lower_layers_match_the_plain_walk(monkeypatch):
    """The mean of a held c comes from the fused layers (c rebuilt from their gates) and the held pass starts
    at the held layer from the mean pass's inputs: both equal the stepped, from-the-bottom computation."""
    import probe.analysis.ablate as ab

    vocab = Vocab.from_text("abc. ")
    torch.manual_seed(3)
    m = CharRNN(ModelConfig(vocab_size=vocab.size, rnn_size=10, num_layers=3, embed_size=4, dropout=0.0)).eval()
    ck2 = Checkpoint(path=None, meta={"model_config": m.cfg.to_json(), "vocab": vocab.to_json()}, model=m, vocab=vocab)
    text = "".join(np.random.default_rng(0).choice(list("abc. "), 900))
    monkeypatch.setattr(ab, "CHUNK", 256)  # several chunks: the carried state and c0 matter
    units = ["L1.c.2", "L1.h.5", "L2.c.0"]
    reused = ablate(ck2, units, text, n_random=3, n_boot=100)
    c = run_with_cache(m, torch.as_tensor(vocab.encode(text)).view(1, -1), ["L1.c", "L1.h", "L2.c"]).cache
    for u in units:
        layer, kind, i = u.split(".")
        assert reused.values[u] == pytest.approx(float(c[f"{layer}.{kind}"][0, :, int(i)].mean()), abs=1e-5)
    monkeypatch.setattr(ab, "INPUT_BUDGET", 0)  # no inputs kept: the held pass runs from the embedding
    again = ablate(ck2, units, text, n_random=3, n_boot=100)
    assert np.allclose(again.table[["delta_all"]].to_numpy(), reused.table[["delta_all"]].to_numpy(), atol=1e-7)
    assert abs(reused.table.delta_all[0]) > 1e-5  # the held units do change the predictions
