"""Gate saturation, PCA/UMAP embeddings and neuron cards on synthetic recordings with planted values."""
from __future__ import annotations

import json

import numpy as np
import pytest

from probe.analysis import concepts
from probe.cli.main import main
from probe.analysis.embedding import embed_states
from probe.errors import ProbeError
from probe.analysis.neuron_card import neuron_card, separated_peaks
from probe.record.recording import Recording
from probe.analysis.saturation import gate_saturation
from tests.synthetic_recordings import make_recording, noise_arrays, wiki_like_text

TEXT = wiki_like_text(60, seed=7)
N = len(TEXT)
PEAKS = [150, 700, 1300, 2000]


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> Recording:
    """LSTM 2x8 with gates: L0.f.0 always 0.95, L0.f.1 always 0.05, L0.i.2 half 0.05 / half 0.5,
    L1.o.3 at 0.95 on a quarter of the steps; L1.h.4 has planted peaks (and troughs)."""
    arr = noise_arrays(N, hidden=8, kinds=("h", "c", "i", "f", "g", "o"), seed=2)
    for name in [k for k in arr if ".gates." not in k and k[3:] in ("i", "f", "g", "o")]:
        arr[name.replace(".", ".gates.", 1)] = arr.pop(name)
    f0 = arr["L0.gates.f"]
    f0[:, 0], f0[:, 1] = 0.95, 0.05
    arr["L0.gates.i"][:, 2] = np.where(np.arange(N) < N // 2, 0.05, 0.5)
    arr["L1.gates.o"][:, 3] = np.where(np.arange(N) % 4 == 0, 0.95, 0.5)
    arr["L0.gates.g"][:, 5] = -0.99  # tanh gate: left-saturated after mapping to [0, 1]
    h = arr["L1.h"]
    h[:, 4] = np.clip(h[:, 4], -0.5, 0.5)
    for i, p in enumerate(PEAKS):
        h[p, 4] = 0.9 + 0.02 * i
        h[p + 11, 4] = -0.9 - 0.02 * i
    return Recording.open(make_recording(tmp_path_factory.mktemp("v") / "rec", TEXT, arr))


def test_saturation_fractions_on_planted_gates(rec):
    df = gate_saturation(rec)
    assert list(df.columns) == ["layer", "gate", "index", "left", "right"]
    assert len(df) == 2 * 4 * 8
    s = df.set_index(["layer", "gate", "index"])
    assert tuple(s.loc[(0, "f", 0)]) == (0.0, 1.0)
    assert tuple(s.loc[(0, "f", 1)]) == (1.0, 0.0)
    assert s.loc[(0, "i", 2)].left == pytest.approx(0.5, abs=1 / N) and s.loc[(0, "i", 2)].right == 0
    assert s.loc[(1, "o", 3)].right == pytest.approx(0.25, abs=1 / N)
    assert s.loc[(0, "g", 5)].left == 1.0


def test_saturation_needs_gates(tmp_path, capsys):
    plain = make_recording(tmp_path / "nogates", TEXT, noise_arrays(N, hidden=8))
    with pytest.raises(ProbeError, match="holds no gates"):
        gate_saturation(Recording.open(plain))
    assert main(["saturation", str(plain)]) == 2
    assert "holds no gates" in capsys.readouterr().err


def test_cli_saturation(rec, capsys, tmp_path):
    assert main(["saturation", str(rec.path), "--csv", str(tmp_path / "s.csv")]) == 0
    out = capsys.readouterr().out
    assert "layer" in out and (tmp_path / "s.csv").read_text().startswith("layer,gate,index,left,right")


def test_pca_embedding_is_seeded_and_labelled(rec):
    c = concepts.get("wiki-link")
    a = embed_states(rec, layer=1, kind="h", method="pca", concept=c, n=500, seed=1)
    b = embed_states(rec, layer=1, kind="h", method="pca", concept=c, n=500, seed=1)
    assert list(a.columns) == ["x", "y", "row", "char", "label"] and len(a) == 500
    assert a.equals(b)
    assert (np.diff(a.row) > 0).all()
    labels = c.labels(TEXT)
    assert (a.label.to_numpy() == labels[a.row]).all()
    assert a.char.tolist() == [TEXT[r] for r in a.row]
    x = rec.get(1, "h")[a.row]
    assert np.var(a.x) == pytest.approx(np.linalg.svd(x - x.mean(0), compute_uv=False)[0] ** 2 / len(x), rel=1e-4)
    no_concept = embed_states(rec, layer=0, method="pca", n=10**6)
    assert len(no_concept) == N and no_concept.label.isna().all()


@pytest.mark.slow
def test_umap_embedding(rec):
    df = embed_states(rec, layer=0, method="umap", n=300, seed=0)
    assert len(df) == 300 and np.isfinite(df[["x", "y"]].to_numpy()).all()


def test_embedding_errors(rec, capsys):
    with pytest.raises(ProbeError, match="method must be one of"):
        embed_states(rec, layer=0, method="tsne")
    with pytest.raises(ProbeError, match="layers L0..L1"):
        embed_states(rec, layer=3)
    assert main(["embed", str(rec.path), "--layer", "0", "--kind", "z"]) == 2
    assert "this recording holds kinds" in capsys.readouterr().err


def test_cli_embed_csv(rec, tmp_path, capsys):
    out = tmp_path / "e.csv"
    assert main(["embed", str(rec.path), "--layer", "1", "--concept", "url", "--n", "200", "--csv", str(out)]) == 0
    assert out.read_text().splitlines()[0] == "x,y,row,char,label"
    assert "url=1" in capsys.readouterr().out


def test_neuron_card_finds_planted_peaks_both_tails(rec):
    card = neuron_card(rec, "L1.h.4", n_top=4, window=20)
    assert [t["row"] for t in card.top] == PEAKS[::-1]
    assert [b["row"] for b in card.bottom] == [p + 11 for p in PEAKS[::-1]]
    t = card.top[0]
    assert t["char"] == TEXT[PEAKS[-1]] and t["left"] == TEXT[PEAKS[-1] - 20:PEAKS[-1]]
    assert t["right"] == TEXT[PEAKS[-1] + 1:PEAKS[-1] + 11] and t["activation"] == pytest.approx(0.96, abs=1e-3)
    assert card.hist_counts.sum() == N and len(card.hist_edges) == len(card.hist_counts) + 1
    assert card.quantiles[1.0] == pytest.approx(0.96, abs=1e-3) and card.quantiles[0.0] == pytest.approx(-0.96, abs=1e-3)
    assert 0 < card.density < 1
    assert card.promoted == [] and "checkpoint" in card.note


def test_separated_peaks_skip_neighbours():
    v = np.zeros(100)
    v[[10, 11, 12, 50]] = [3, 5, 4, 2]
    assert separated_peaks(v, 3, min_gap=5)[:2] == [11, 50]


def test_neuron_errors(rec, capsys):
    for unit, msg in [("L9.h.0", "layers L0..L1"), ("L0.h.99", "units run from 0 to 7"), ("bogus", "bad unit name"),
                      ("L0.z.1", "holds kinds")]:
        assert main(["neuron", str(rec.path), unit]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1


def test_cli_neuron(rec, capsys, tmp_path):
    assert main(["neuron", str(rec.path), "L1.h.4", "--top", "3", "--json", str(tmp_path / "n.json")]) == 0
    out = capsys.readouterr().out
    peak_char = TEXT[PEAKS[-1]].replace("\n", "\\n")
    assert f"\u00ab{peak_char}\u00bb" in out and "quantiles" in out and "lowest" in out
    doc = json.loads((tmp_path / "n.json").read_text())
    assert doc["top"][0]["row"] == PEAKS[-1]


@pytest.mark.slow
def test_neuron_card_promoted_chars_on_a_real_model(tiny_lstm, shakespeare_text, tmp_path):
    from probe.record.recorder import record
    r = record(tiny_lstm, shakespeare_text[:1500], tmp_path / "real")
    r = r if isinstance(r, Recording) else Recording.open(tmp_path / "real")
    card = neuron_card(r, "L1.h.3", n_top=5)
    assert len(card.promoted) == 10 and len(card.suppressed) == 10
    weights = [w for _, w in card.promoted]
    assert weights == sorted(weights, reverse=True) and weights[0] > card.suppressed[0][1]
    from probe.model import checkpoint
    w = checkpoint.load(tiny_lstm).model.head.weight.detach().numpy()[:, 3]
    assert weights[0] == pytest.approx(float(w.max()))
    assert neuron_card(r, "L0.h.3").promoted == []
