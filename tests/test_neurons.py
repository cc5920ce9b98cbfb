"""find_neurons on synthetic recordings where the truth is known, and its error paths."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from probe.analysis import concepts
from probe.analysis import neurons
from probe.cli.main import main
from probe.errors import ProbeError
from probe.record.recording import Recording
from tests.synthetic_recordings import make_recording, noise_arrays, wiki_like_text

TEXT = wiki_like_text(150)
N = len(TEXT)
LINK = concepts.get("wiki-link").labels(TEXT).astype(np.float32)
COL = concepts.column(TEXT).astype(np.float32)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Recording:
    """2 layers x 8 units x (h, c): L1.c.3 copies the wiki-link concept, L0.h.5 is minus the column,
    L0.c.2 is weakly related to links (AUC ~0.75); everything else is smooth noise."""
    rng = np.random.default_rng(1)
    arr = noise_arrays(N, smooth=5)
    arr["L1.c"][:, 3] = LINK * 2 + 0.3 * rng.standard_normal(N)
    arr["L0.h"][:, 5] = -COL / 50 + 0.05 * rng.standard_normal(N)
    arr["L0.c"][:, 2] = LINK * 0.9 + rng.standard_normal(N)
    return Recording.open(make_recording(tmp_path_factory.mktemp("rec") / "planted", TEXT, arr))


@pytest.fixture(scope="module")
def noise(tmp_path_factory) -> Recording:
    return Recording.open(make_recording(tmp_path_factory.mktemp("rec") / "noise", TEXT,
                                         noise_arrays(N, hidden=16, smooth=8, seed=3), hidden=16))


def test_planted_unit_ranks_first_with_auc_one(planted):
    res = neurons.find_neurons(planted, concepts.get("wiki-link"), n_perm=50)
    top = res.table.iloc[0]
    assert top.unit == "L1.c.3" and top.metric == "auc"
    assert top.score > 0.99 and top.sign == 1
    assert top.p_value == pytest.approx(1 / 51)
    assert top.mean_in > 1.5 and abs(top.mean_out) < 0.2
    assert res.n_units == 32 and len(res.table) == 32
    assert 0.5 < res.chance < 0.7
    noise_units = res.table[~res.table.unit.isin(["L1.c.3", "L0.c.2"])]
    assert (noise_units.p_value > 0.05).all()
    assert set(res.table.columns) >= {"unit", "layer", "kind", "index", "metric", "score", "sign", "select_score",
                                      "chance", "p_value", "mean_in", "mean_out", "r_pb", "cohen_d", "mi"}


def test_held_out_statistics_match_exact_computation(planted):
    res = neurons.find_neurons(planted, concepts.get("wiki-link"), n_perm=20)
    r0, r1 = res.report_rows
    y = LINK[r0:r1]
    for unit in ["L0.c.2", "L1.h.4"]:
        row = res.table.set_index("unit").loc[unit]
        x = planted.unit(unit, r0, r1)
        auc = roc_auc_score(y, x)
        assert row.auc == pytest.approx(auc, abs=0.003)
        assert row.score == pytest.approx(max(auc, 1 - auc), abs=0.003)
        assert row.mean_in == pytest.approx(x[y == 1].mean(), abs=1e-4)
        assert row.mean_out == pytest.approx(x[y == 0].mean(), abs=1e-4)
        assert row.r_pb == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-4)
    s0, s1 = res.select_rows
    assert (s0, s1, r1) == (0, r0, N)
    x = planted.unit("L0.c.2", s0, s1)
    assert res.table.set_index("unit").loc["L0.c.2"].select_score == pytest.approx(
        roc_auc_score(LINK[s0:s1], x), abs=0.003)


def test_weak_unit_is_significant(planted):
    row = neurons.find_neurons(planted, concepts.get("wiki-link"), n_perm=50).table.set_index("unit").loc["L0.c.2"]
    assert 0.65 < row.score < 0.85 and row.p_value < 0.05


def test_continuous_concept_recovered_by_pearson(planted):
    res = neurons.find_neurons(planted, concepts.get("column"), n_perm=30)
    top = res.table.iloc[0]
    assert top.unit == "L0.h.5" and top.metric == "pearson" and top.sign == -1
    r0, r1 = res.report_rows
    x = planted.unit("L0.h.5", r0, r1)
    assert top.pearson == pytest.approx(np.corrcoef(x, COL[r0:r1])[0, 1], abs=1e-4)
    assert top.spearman == pytest.approx(spearmanr(x, COL[r0:r1]).statistic, abs=0.02)
    assert top.score > 0.95 and top.p_value == pytest.approx(1 / 31)
    assert np.isnan(top.mean_in)
    assert (res.table.p_value.iloc[1:] > 0.05).all()


def test_pure_noise_is_not_significant(noise):
    res = neurons.find_neurons(noise, concepts.get("wiki-link"), n_perm=60)
    assert (res.table.p_value > 0.05).all()
    assert res.table.score.max() < res.null_max.max() + 0.02
    assert np.isfinite(res.table[["score", "select_score", "p_value", "mi", "cohen_d"]].to_numpy()).all()


def test_chunking_and_kernel_do_not_change_results(planted, monkeypatch):
    c = concepts.get("wiki-link")
    a = neurons.find_neurons(planted, c, n_perm=10, chunk_rows=16384).table.set_index("unit").sort_index()
    b = neurons.find_neurons(planted, c, n_perm=10, chunk_rows=333).table.set_index("unit").sort_index()
    monkeypatch.setattr(neurons, "_accumulate", neurons._accumulate_numpy)
    d = neurons.find_neurons(planted, c, n_perm=10, chunk_rows=1000).table.set_index("unit").sort_index()
    for other in (b, d):
        for col in ["score", "select_score", "p_value", "mean_in", "mi", "chance"]:
            np.testing.assert_allclose(a[col], other[col], rtol=1e-5, atol=1e-6)


def test_permutation_null_is_seeded(planted):
    c = concepts.get("wiki-link")
    a = neurons.find_neurons(planted, c, n_perm=10, seed=1).null_max
    b = neurons.find_neurons(planted, c, n_perm=10, seed=1).null_max
    e = neurons.find_neurons(planted, c, n_perm=10, seed=2).null_max
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, e)


def test_concept_given_by_name_or_regex_string(planted):
    by_name = neurons.find_neurons(planted, "wiki-link", n_perm=5)
    by_regex = neurons.find_neurons(planted, r"\[\[[^\]]*\]\]", n_perm=5)
    assert by_name.concept.name == "wiki-link" and by_name.table.iloc[0].unit == by_regex.table.iloc[0].unit == "L1.c.3"


def test_kinds_and_layers_filter(planted):
    res = neurons.find_neurons(planted, concepts.get("wiki-link"), kinds=["c"], layers=[1], n_perm=5)
    assert set(res.table.unit.str[:4]) == {"L1.c"} and res.n_units == 8


def test_float16_with_overflowed_cells(tmp_path):
    arr = noise_arrays(N, smooth=3)
    c = arr["L1.c"]
    c[:, 0] = LINK * 3.0
    c[100:200, 1] = np.inf
    c[300:310, 1] = np.nan
    rec = Recording.open(make_recording(tmp_path / "r16", TEXT, arr, dtype=np.float16))
    res = neurons.find_neurons(rec, concepts.get("wiki-link"), n_perm=10)
    assert res.table.iloc[0].unit == "L1.c.0"
    assert np.isfinite(res.table[["score", "p_value", "mean_in", "mean_out"]].to_numpy()).all()


# ----------------------------------------------------------------------------- errors

def test_concept_matching_nothing_or_everything(planted):
    with pytest.raises(ProbeError, match="matches nothing"):
        neurons.find_neurons(planted, concepts.get("zzzq"))
    with pytest.raises(ProbeError, match="matches everything"):
        neurons.find_neurons(planted, concepts.get(r"[\s\S]"))
    with pytest.raises(ProbeError, match="absent"):
        neurons.find_neurons(planted, concepts.get("indent"))


def test_concept_only_in_one_part(planted):
    first = TEXT[:200]  # only in the select part
    with pytest.raises(ProbeError, match="never present in the report part"):
        neurons.find_neurons(planted, concepts.from_regex(f"^{first[:50]}".replace("[", r"\[")
                                                         .replace("]", r"\]").replace(".", r"\.")))


def test_missing_kind_or_layer(planted):
    with pytest.raises(ProbeError, match="has no 'f' arrays"):
        neurons.find_neurons(planted, concepts.get("wiki-link"), kinds=["f"])
    with pytest.raises(ProbeError, match="no layer 5"):
        neurons.find_neurons(planted, concepts.get("wiki-link"), layers=[5])


# ----------------------------------------------------------------------------- CLI

def test_cli_table_json_csv(planted, tmp_path, capsys):
    js, csv = tmp_path / "r.json", tmp_path / "r.csv"
    rc = main(["find-neurons", str(planted.path), "--pattern", r"\[\[.*?\]\]", "--top", "5", "--n-perm", "20",
               "--json", str(js), "--csv", str(csv)])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    first = next(l for l in lines if l.strip().startswith("1 "))
    assert "L1.c.3" in first and "*" in first
    assert "chance level" in out and "held-out" in out
    doc = json.loads(js.read_text())
    assert doc["units"][0]["unit"] == "L1.c.3" and doc["summary"]["n_units"] == 32
    assert csv.read_text().splitlines()[1].split(",")[1] == "L1.c.3"


@pytest.mark.parametrize("argv, message", [
    (["--pattern", "[["], "invalid regex '[[': unterminated character set at position 0"),
    (["--pattern", "qqqzzz"], "matches nothing"),
    (["--pattern", r"[\s\S]"], "matches everything"),
    (["--concept", "indent"], "absent from it"),
    (["--concept", "nope"], "unknown concept 'nope'"),
    (["--concept", "url", "--kinds", "i"], "has no 'i' arrays"),
    (["--concept", "url", "--layers", "x"], "--layers must be a comma-separated list"),
])
def test_cli_errors_are_one_line(planted, capsys, argv, message):
    assert main(["find-neurons", str(planted.path)] + argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("probe find-neurons: error:")


def test_cli_missing_recording(tmp_path, capsys):
    assert main(["find-neurons", str(tmp_path / "none"), "--concept", "url"]) == 2
    assert "no such recording" in capsys.readouterr().err


# ----------------------------------------------------------------------------- a real tiny byte-level model

@pytest.mark.slow
def test_real_byte_recording_with_gates(tiny_byte_lstm, wiki_bytes, tmp_path, capsys):
    from probe.record.recorder import record
    text = wiki_bytes[:4000].decode("utf-8", "ignore")
    r = record(tiny_byte_lstm, text, tmp_path / "rec")
    rec = r if isinstance(r, Recording) else Recording.open(tmp_path / "rec")
    assert rec.by_bytes
    res = neurons.find_neurons(rec, concepts.get("xml-tag"), n_perm=20)
    assert res.n_units == 2 * 16 * len(rec.kinds) and {"h", "c", "f"} <= set(res.table.kind)
    assert np.isfinite(res.table[["score", "select_score", "p_value", "mi"]].to_numpy()).all()
    # held-out AUC of a unit equals the exact AUC over the report rows (labels mapped bytes -> characters)
    y = rec.row_labels(concepts.get("xml-tag").labels(rec.text))
    r0, r1 = res.report_rows
    row = res.table.iloc[0]
    x = rec.unit(row.unit, r0, r1)
    assert row.auc == pytest.approx(roc_auc_score(y[r0:r1], x), abs=0.005)
    assert main(["find-neurons", str(rec.path), "--concept", "xml-tag", "--kinds", "f", "--n-perm", "10"]) == 0
    assert ".f." in capsys.readouterr().out
