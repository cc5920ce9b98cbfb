"""Ablation beside correlation: `find-neurons --ablate`, `probe report --ablate`, the dashboard's neuron card.

All on the hand-built memory LSTM of test_ablate (unit 0's cell carries the block's letter; the other units
have no weights), recorded over its own text.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from probe.analysis.ablate import ablate_each, add_ablation
from probe.analysis.concepts import as_concept
from probe.analysis.neurons import find_neurons
from probe.cli.main import main
from probe.errors import ProbeError
from probe.model import checkpoint
from probe.record.recorder import record
from probe.record.recording import Recording
from tests.test_ablate import CLOSING, memory_model, memory_text

A_BLOCK = r"a\.*a"  # a block of a's: unit 0's cell is +1 over it (it tracks it); only the closing a needs it


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    ck = memory_model()
    checkpoint.save(root / "memory", ck.model, ck.meta)
    text = memory_text(120)
    record(root / "memory", text=text, out=root / "rec")
    return root / "memory", root / "rec", text


def test_ablate_each_shares_one_null_and_ranks_each_unit(setup):
    ck_path, _, text = setup
    res = ablate_each(ck_path, ["L0.c.0", "L0.h.3"], text, concept=CLOSING, n_random=5, block=30)
    assert list(res.unit) == ["L0.c.0", "L0.h.3"]
    used, unused = res.iloc[0], res.iloc[1]
    assert used.abl_in > 1.0 and used.abl_in_lo > 0.5 and used.abl_rank == 1 and used.abl_p == pytest.approx(1 / 6)
    assert unused.abl_in == pytest.approx(0.0, abs=1e-6) and unused.abl_p == 1.0
    assert unused.abl_in_lo <= 0.0 <= unused.abl_in_hi
    with pytest.raises(ProbeError, match="binary concept"):
        ablate_each(ck_path, ["L0.c.0"], text, concept="column", n_random=2)


def test_add_ablation_puts_the_effect_beside_the_search(setup):
    ck_path, rec_path, _ = setup
    rec = Recording.open(rec_path)
    search = find_neurons(rec, as_concept(A_BLOCK), n_perm=20)
    top = search.table.unit.head(4).tolist()
    assert "L0.c.0" in top
    out = add_ablation(search, rec, 4, n_random=4, block=30)  # the checkpoint named in the recording
    assert list(out.table.unit) == list(search.table.unit)  # same ranking, columns added
    row = out.table.set_index("unit").loc["L0.c.0"]
    assert row.abl_in > 0.05 and row.abl_in > row.abl_out and row.abl_rank == 1 and row.abl_p == pytest.approx(0.2)
    gates = [u for u in top if u.split(".")[1] not in ("h", "c")]
    assert out.table.set_index("unit").loc[gates, "abl_in"].isna().all()  # gates cannot be held
    assert out.table.abl_in.iloc[4:].isna().all()  # only the top 4
    assert "abl_in" not in search.table  # the search itself is unchanged
    d = out.to_dict()
    assert {"abl_in", "abl_p"} <= set(d["units"][0]) and json.dumps(d)


def test_cli_find_neurons_ablate(setup, tmp_path, capsys):
    ck_path, rec_path, _ = setup
    js, csv = tmp_path / "units.json", tmp_path / "units.csv"
    rc = main(["find-neurons", str(rec_path), "--pattern", A_BLOCK, "--ablate", "3", "--random", "4",
               "--n-perm", "20", "--json", str(js), "--csv", str(csv), "--checkpoint", str(ck_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "Δloss in [95% CI]" in out and "ablation of the top 3" in out
    line = next(ln for ln in out.splitlines() if " L0.c.0 " in ln)
    assert "[" in line  # its Δloss and interval printed in its row
    units = {u["unit"]: u for u in json.loads(js.read_text())["units"]}
    assert units["L0.c.0"]["abl_rank"] == 1 and units["L0.c.0"]["abl_in"] > 0.05
    assert "abl_in_lo" in csv.read_text().splitlines()[0]
    # bad input: one line, exit 2, nothing written
    bad = tmp_path / "bad.json"
    for argv, msg in ((["--concept", "column", "--ablate", "2"], "--ablate needs a binary concept"),
                      (["--pattern", A_BLOCK, "--ablate", "2", "--random", "9"], "--random is 9"),
                      (["--pattern", A_BLOCK, "--ablate", "-1"], "--ablate"),
                      (["--pattern", A_BLOCK, "--ablate", "2", "--checkpoint", str(tmp_path / "nope")], "--checkpoint")):
        rc = main(["find-neurons", str(rec_path), "--n-perm", "20", "--json", str(bad)] + argv)
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err
        assert not bad.exists()


def test_report_shows_tracks_it_beside_is_used_for_it(setup, tmp_path, capsys):
    from probe.report import build_report
    ck_path, rec_path, _ = setup
    quiet = lambda msg: None  # noqa: E731
    out = build_report(rec_path, [A_BLOCK, "column"], tmp_path / "rep", images=False, embedding="none",
                       ablate=3, say=quiet)
    page = (out / "index.html").read_text()
    assert "Tracks it, and is it used?" in page and "Δ bits/char inside [95% CI]" in page
    assert "column is continuous" in page  # no ablation table for a continuous concept, said so
    tables = json.loads((out / "report.json").read_text())["tables"]
    ablation = [t for t in tables if t.endswith("-ablation")]
    assert len(ablation) == 1
    import pandas as pd
    df = pd.read_csv(out / "tables" / f"{ablation[0]}.csv")
    assert len(df) == 3 and {"score", "abl_in", "abl_p"} <= set(df.columns)
    if "L0.c.0" in set(df.unit):
        assert df.set_index("unit").loc["L0.c.0", "abl_rank"] == 1
    from probe.report import check_ablation
    assert check_ablation(Recording.open(rec_path), 0, 20_000, None) is None  # off by default: no section
    # bad input before any file: a checkpoint that is not the recorded model, a negative count
    other = tmp_path / "other"
    from probe.model.charrnn import CharRNN, ModelConfig
    vocab = memory_model().vocab
    small = CharRNN(ModelConfig(vocab_size=vocab.size, rnn_size=6, num_layers=1, embed_size=4))
    checkpoint.save(other, small, {"model_config": small.cfg.to_json(), "vocab": vocab.to_json()})
    capsys.readouterr()
    rc = main(["report", str(rec_path), "--concepts", A_BLOCK, "--out", str(tmp_path / "bad"), "--no-images",
               "--embedding", "none", "--ablate", "2", "--checkpoint", str(other)])
    err = capsys.readouterr().err
    assert rc == 2 and "--checkpoint" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()
    rc = main(["report", str(rec_path), "--out", str(tmp_path / "bad"), "--ablate", "-1"])
    assert rc == 2 and "--ablate" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_dashboard_service_ablates_the_card_unit_on_the_window(setup):
    from dashboards.service import DashboardService
    ck_path, rec_path, text = setup
    svc = DashboardService(rec_path, window_rows=400)  # the checkpoint named in the recording
    fig, summary, numbers = svc.ablation(0, "c", 0, 0, pattern=CLOSING)
    assert numbers["start"] == 0 and numbers["stop"] == 400 and numbers["symbols"] == 400
    assert numbers["delta_in"] > 1.0 and numbers["rank"] == 1 and numbers["n_random"] == 7
    assert "L0.c.0 held at its mean" in summary and "inside /" in summary and "rank 1 of 8" in summary
    heat = np.concatenate([np.asarray(t.z, dtype=float).ravel() for t in fig.data if getattr(t, "z", None) is not None])
    assert np.nanmax(heat) > 1.0  # the window's characters colored by Δloss: the closing letters lose bits
    again = svc.ablation(0, "c", 0, 0, pattern=CLOSING)[2]
    assert again == numbers  # cached per unit, window and concept
    # an unused unit; a concept absent from the window is said, not an error
    _, summary2, n2 = svc.ablation(0, "h", 4, 400, builtin="url")
    assert abs(n2["delta_all"]) < 1e-6 and n2["p_value"] > 0.5 and "delta_in" not in n2
    assert "url does not occur in this window" in summary2
    with pytest.raises(ProbeError, match="matches nothing"):
        svc.ablation(0, "h", 4, 400, pattern="zzz")
    for args, msg in (((0, "f", 0, 0), "gates cannot be held"), ((0, "c", 99, 0), "unit"),
                      ((0, "c", 0, 10 ** 9), "outside the text"), ((0, "c", "x", 0), "whole number")):
        with pytest.raises(ProbeError, match=msg):
            svc.ablation(*args)
    with pytest.raises(ProbeError):  # a model that is not there
        DashboardService(rec_path, str(ck_path) + "-gone").ablation(0, "c", 0, 0)


def test_dashboard_ablation_callback(setup):
    from dashboards.app import create_app
    from tests.test_dashboard import _post
    _, rec_path, _ = setup
    app = create_app(rec_path)
    client = app.server.test_client()
    state = {"layer.value": 0, "kind.value": "c", "unit-index.value": 0, "win-pos.data": {"start": 0},
             "regex.value": CLOSING}
    out = _post(client, app, "..ablate-body.children", {"ablate-btn.n_clicks": 1}, "ablate-btn.n_clicks", state)
    resp = out["response"]
    assert resp["ablate-msg"]["children"] == "" and "rank 1 of" in resp["ablate-summary"]["children"]
    bad = _post(client, app, "..ablate-body.children", {"ablate-btn.n_clicks": 1}, "ablate-btn.n_clicks",
                dict(state, **{"kind.value": "i"}))
    assert "gates cannot be held" in bad["response"]["ablate-msg"]["children"]
