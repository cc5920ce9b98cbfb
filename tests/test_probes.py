"""Linear probes, their baselines and the control task, on synthetic and real tiny recordings."""
from __future__ import annotations

import numpy as np
import pytest

from probe.analysis import concepts
from probe.cli.main import main
from probe.errors import ProbeError
from probe.analysis.probes import control_labels, fit_probes, row_types, sparse_ks
from probe.record.recording import Recording
from tests.synthetic_recordings import make_recording, noise_arrays, wiki_like_text

TEXT = wiki_like_text(100, seed=4)
N = len(TEXT)
LINK = concepts.get("wiki-link").labels(TEXT)


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> Recording:
    rng = np.random.default_rng(0)
    arr = noise_arrays(N, hidden=8, smooth=4, seed=5)
    arr["L1.h"][:, 6] = LINK * 1.0 + 0.2 * rng.standard_normal(N)   # one unit carries the concept
    arr["L0.h"][:, 1] = concepts.column(TEXT) / 40.0 + 0.05 * rng.standard_normal(N)
    return Recording.open(make_recording(tmp_path_factory.mktemp("p") / "rec", TEXT, arr, hidden=8))


def test_probe_beats_baselines_where_the_concept_is(rec):
    rep = fit_probes(rec, concepts.get("wiki-link"), seed=0)
    t = rep.table.set_index(["layer", "kind"])
    assert list(rep.table.columns)[:9] == ["layer", "kind", "metric", "probe", "majority", "best_unit",
                                           "untrained", "control", "selectivity"]
    top = t.loc[(1, "h")]
    assert top.metric == "accuracy" and top.probe > 0.97 and top.best_unit > 0.97
    assert top.best_unit_name == "L1.h.6"
    assert top.majority == pytest.approx(1 - LINK[rep.test_rows[0]:].mean(), abs=0.02)
    assert top.selectivity == pytest.approx(top.probe - top.control)
    assert top.selectivity > 0.05
    noise_layer = t.loc[(0, "c")]
    assert noise_layer.probe < top.probe - 0.05
    assert rep.table.untrained.isna().all()
    sp = rep.sparse[(rep.sparse.layer == 1) & (rep.sparse.kind == "h")]
    assert sp.k.tolist() == [1, 2, 4, 8] and sp.score.iloc[0] > 0.97


def test_continuous_probe_uses_r2(rec):
    rep = fit_probes(rec, concepts.get("column"), kinds=["h"], layers=[0], sparse=False)
    row = rep.table.iloc[0]
    assert rep.task == "continuous" and row.metric == "r2" and row.probe > 0.9 and abs(row.majority) < 0.1
    assert row.best_unit_name == "L0.h.1"


def test_integer_concept_is_categorical(rec):
    rep = fit_probes(rec, concepts.get("bracket-depth"), kinds=["h"], layers=[1], sparse=False)
    assert rep.task == "categorical" and rep.table.iloc[0].probe > 0.9


def test_control_task_is_per_type_and_seeded():
    types = list("abcabcaab")
    y = np.array([0, 0, 0, 1, 1, 0, 0, 0, 1])
    a, b = control_labels(types, y, seed=3), control_labels(types, y, seed=3)
    np.testing.assert_array_equal(a, b)
    for t in set(types):  # every row of a type carries the same label
        assert len({int(v) for v, tt in zip(a, types) if tt == t}) == 1
    draws = {tuple(control_labels(types, y, seed=s)) for s in range(20)}
    assert len(draws) > 1
    assert set(np.unique(control_labels(list("abcdefghij") * 5, np.array([3, 7]), seed=1))) <= {3, 7}


def test_row_types_use_previous_characters(rec):
    assert row_types(rec, np.array([0, 5]), k=1) == [TEXT[0], TEXT[5]]
    assert row_types(rec, np.array([0, 5]), k=3) == [TEXT[0], TEXT[3:6]]


def test_sparse_ks():
    assert sparse_ks(16) == [1, 2, 4, 8, 16] and sparse_ks(12) == [1, 2, 4, 8, 12] and sparse_ks(1) == [1]


def test_probe_errors(rec):
    with pytest.raises(ProbeError, match="has no 'f' arrays"):
        fit_probes(rec, concepts.get("wiki-link"), kinds=["f"])
    with pytest.raises(ProbeError, match="matches nothing"):
        fit_probes(rec, concepts.get("zzzq"))
    with pytest.raises(ProbeError, match="no such recording"):
        fit_probes(rec, concepts.get("wiki-link"), untrained="/nonexistent/rec")


def test_auto_untrained_without_checkpoint_is_a_note(rec):
    rep = fit_probes(rec, concepts.get("wiki-link"), layers=[1], kinds=["h"], untrained="auto", sparse=False)
    assert rep.table.untrained.isna().all() and "no untrained baseline" in rep.notes[0]


def test_cli_fit_probe(rec, capsys):
    assert main(["fit-probe", str(rec.path), "--concept", "wiki-link", "--layers", "1"]) == 0
    out = capsys.readouterr().out
    assert "selectivity" in out and "L1.h.6" in out and "sparse probe" in out
    assert main(["fit-probe", str(rec.path), "--pattern", "("]) == 2
    assert "invalid regex '(': missing ), unterminated subpattern" in capsys.readouterr().err


# ----------------------------------------------------------------------------- a real tiny model

@pytest.fixture(scope="module")
def real_rec(tiny_lstm, shakespeare_text, tmp_path_factory) -> Recording:
    from probe.record.recorder import record
    out = tmp_path_factory.mktemp("real") / "rec"
    r = record(tiny_lstm, shakespeare_text[:3000], out)
    return r if isinstance(r, Recording) else Recording.open(out)


@pytest.mark.slow
def test_real_recording_probe_with_untrained_baseline(real_rec):
    rep = fit_probes(real_rec, concepts.get("column"), kinds=["h", "c"], untrained="auto", sparse=False)
    assert rep.notes == [] and rep.table.untrained.notna().all()
    assert (real_rec.path.parent / f".{real_rec.path.name}.untrained" / "meta.json").exists()
    assert np.isfinite(rep.table[["probe", "control", "selectivity"]].to_numpy()).all()
    again = fit_probes(real_rec, concepts.get("column"), kinds=["h"], layers=[0], untrained="auto", sparse=False)
    assert again.table.untrained.iloc[0] == pytest.approx(
        rep.table.set_index(["layer", "kind"]).loc[(0, "h")].untrained)  # cached, same numbers


@pytest.mark.slow
def test_real_recording_find_neurons(real_rec):
    from probe.analysis.neurons import find_neurons
    res = find_neurons(real_rec, concepts.get("line-end-distance"), n_perm=20)
    assert res.n_units == 2 * 16 * len(real_rec.kinds)
    assert np.isfinite(res.table[["score", "p_value"]].to_numpy()).all()
    assert set(res.table.kind) == set(real_rec.kinds)
