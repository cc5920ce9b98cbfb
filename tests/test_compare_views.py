"""The comparison views: a recording against an n-gram (library), the report's baseline section and the
dashboard's Δloss coloring (through the service layer)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from probe.analysis.compare import (compare, compare_recording, ngram_char_bits, recording_char_bits,
                                    recording_text, side_bits, parse_side)
from probe.analysis.error_classes import after_word_starter, breakdown
from probe.cli.main import main
from probe.errors import ProbeError
from probe.model import checkpoint as ckpt
from probe.report import build_report
from dashboards.inputs import as_baseline
from dashboards.service import DashboardService


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ngram-cache")


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch, cache):
    monkeypatch.setenv("PROBE_CACHE", str(cache))  # fit_cached's default folder: never the user's cache


@pytest.fixture(scope="module")
def text(small_text_file) -> str:
    return small_text_file.read_text()[6000:8500]


@pytest.fixture(scope="module")
def rec(tiny_lstm, text, tmp_path_factory):
    from probe.record.recorder import record
    return record(tiny_lstm, text, tmp_path_factory.mktemp("rec") / "rec", gates=False, topk=2)


def _quiet(msg):
    pass


def test_a_recording_gives_the_model_loss_of_a_fresh_run(rec, tiny_lstm, text, cache):
    ck = ckpt.load(tiny_lstm)
    fresh = side_bits(parse_side(str(tiny_lstm)), recording_text(rec), ck)
    got = recording_char_bits(rec)
    assert np.isnan(got[0]) and np.isnan(fresh[0]) and len(got) == len(text)
    np.testing.assert_allclose(got[1:], fresh[1:], rtol=2e-3, atol=2e-3)
    cmp = compare_recording(rec, "ngram:3", n_boot=100, cache=cache)
    np.testing.assert_allclose(cmp.b_bits[1:], ngram_char_bits(3, recording_text(rec), ck, cache=cache)[1:])
    direct = compare(tiny_lstm, "ngram:3", text, n_boot=100, cache=cache)
    a, b = cmp.summary.iloc[0], direct.summary.iloc[0]
    assert a.region == "all" and a.n_chars == b.n_chars == len(text) - 1
    assert a.delta_bpc == pytest.approx(b.delta_bpc, abs=2e-3)


def test_a_byte_recording_sums_its_bytes_per_character(tiny_byte_lstm, tmp_path, cache):
    from probe.record.recorder import record
    text = "Voir [[Zürich]] et [[Genève]] puis la suite.\n" * 8
    r = record(tiny_byte_lstm, text, tmp_path / "rec", gates=False, topk=0)
    bits = recording_char_bits(r)
    fresh = side_bits(parse_side(str(tiny_byte_lstm)), recording_text(r), ckpt.load(tiny_byte_lstm))
    assert len(bits) == len(text) < r.n_rows
    np.testing.assert_allclose(bits[1:], fresh[1:], rtol=2e-3, atol=2e-3)
    u = text.index("ü")
    loss = np.asarray(r.loss_bits, dtype=np.float64)
    row = int(r.row_of_char(u))
    assert bits[u] == pytest.approx(loss[row - 1] + loss[row], rel=1e-6)  # two bytes, one character


def test_report_section_against_an_ngram(rec, tmp_path):
    out = build_report(rec, [], tmp_path / "rep", images=False, embedding="none", baseline="ngram:3",
                       say=_quiet)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert ">Against ngram:3</h2>" in page and "Error breakdown" in page
    summary = pd.read_csv(out / "tables" / "baseline-summary.csv")
    delta = ngram_char_bits(3, recording_text(rec), ckpt.load(rec.meta["checkpoint"]["path"])) - \
        recording_char_bits(rec)
    assert summary.region[0] == "all" and summary.delta_bpc[0] == pytest.approx(np.nanmean(delta), abs=1e-9)
    assert summary.ci_low[0] <= summary.delta_bpc[0] <= summary.ci_high[0]
    errors = pd.read_csv(out / "tables" / "errors.csv")
    p = 2.0 ** -recording_char_bits(rec)
    assert errors.n_errors.sum() == int(np.sum(p[1:] < 0.5)) > 0  # the recording's own probabilities
    meta = json.loads((out / "report.json").read_text())
    assert meta["baseline"] == "ngram:3"
    assert {"baseline-delta-heatmap", "errors"} <= set(meta["figures"])
    assert {"baseline-summary", "baseline-by-char", "baseline-contexts", "errors"} <= set(meta["tables"])
    plain = build_report(rec, [], tmp_path / "plain", images=False, embedding="none", say=_quiet)
    assert "baseline" not in json.loads((plain / "report.json").read_text())  # off by default


@pytest.mark.parametrize("baseline, message", [
    ("ngram:0", "--baseline 'ngram:0': the n-gram order must be a positive integer"),
    ("ngram:x", "positive integer"),
    ("ngram:99999", "fewer than the order 99999"),
    ("no/such/run", "no such"),
])
def test_report_bad_baseline_writes_nothing(rec, tmp_path, capsys, baseline, message):
    dest = tmp_path / "out"
    dest.mkdir()
    rc = main(["report", str(rec.path), "--out", str(dest / "rep"), "--no-images", "--embedding", "none",
               "--baseline", baseline])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("probe report: error:") and message in err and err.count("\n") == 1
    assert list(dest.iterdir()) == []


def test_report_baseline_needs_the_recordings_checkpoint(tmp_path):
    from tests.figures_fixtures import make_recording
    path = make_recording(tmp_path / "syn")  # names a checkpoint that is not there
    with pytest.raises(ProbeError, match="names no checkpoint that is still there"):
        build_report(path, [], tmp_path / "rep", images=False, embedding="none", baseline="ngram:3", say=_quiet)
    assert not (tmp_path / "rep").exists()


def test_breakdown_takes_known_model_bits(tiny_lstm, rec, cache):
    t = recording_text(rec)
    bits = recording_char_bits(rec)
    b = breakdown(tiny_lstm, t, model_bits=bits, cache=cache)
    assert b.n_errors == int(np.sum(2.0 ** -bits[1:] < 0.5))
    with pytest.raises(ProbeError, match="model_bits holds 3 values"):
        breakdown(tiny_lstm, t, model_bits=np.zeros(3), cache=cache)


def test_word_model_counts_the_escaped_quote():
    text = 'a b\n&quot;Word&quot; "x \'y'
    starts = after_word_starter(text)
    assert set(np.flatnonzero(starts).tolist()) == {2, 4, 10, 20, 21, 22, 24, 25}
    assert text[10] == "W" and text[20] == " "  # both follow &quot;


# ------------------------------------------------------------------------ dashboard service

def test_as_baseline():
    assert as_baseline("ngram:5") == 5 and as_baseline(" NGRAM : 12 ") == 12
    for bad, msg in [("ngram:0", "between 1 and 20"), ("ngram:21", "between 1 and 20"), ("ngram:x", "ngram:N"),
                     ("5", "ngram:N"), (5, "must be text"), (None, "type a baseline"), ("ngram:\u00b2", "ngram:N"),
                     ("ngram:" + "9" * 50, "limited to 40"), (["ngram:3"], "must be text")]:
        with pytest.raises(ProbeError, match=msg):
            as_baseline(bad)


def test_service_colors_the_window_by_delta_loss(rec, tiny_lstm):
    svc = DashboardService(rec.path, tiny_lstm, window_rows=500)
    fig, summary = svc.delta_window("ngram:3", 500)
    delta = ngram_char_bits(3, recording_text(rec), ckpt.load(tiny_lstm)) - recording_char_bits(rec)
    assert fig.layout.meta["figure"] == "delta_heatmap" and (fig.layout.meta["start"], fig.layout.meta["stop"]) \
        == (500, 1000)
    assert f"{np.nanmean(delta[500:1000]):+.3f} bits/char in characters 500–999" in summary
    spec, cached = svc.baseline_delta("ngram:3")
    assert spec == "ngram:3" and cached is svc.baseline_delta(" ngram:3 ")[1]  # computed once
    np.testing.assert_allclose(cached[1:], delta[1:])
    last = svc.delta_window("ngram:3", rec.n_rows - 1)[0]
    assert (last.layout.meta["start"], last.layout.meta["stop"]) == (rec.n_rows - 1, rec.n_rows)


@pytest.mark.parametrize("baseline, start, msg", [
    ("ngram:0", 0, "between 1 and 20"),
    ("kenlm", 0, "ngram:N"),
    ("ngram:3", -1, "outside the text"),
    ("ngram:3", 10 ** 9, "outside the text"),
    ("ngram:3", "x", "whole number"),
])
def test_service_refuses_bad_delta_inputs(rec, tiny_lstm, baseline, start, msg):
    svc = DashboardService(rec.path, tiny_lstm)
    with pytest.raises(ProbeError, match=msg):
        svc.delta_window(baseline, start)


def test_service_without_a_checkpoint_says_so(tmp_path):
    from tests.figures_fixtures import make_recording
    svc = DashboardService(make_recording(tmp_path / "syn"))
    with pytest.raises(ProbeError, match="--checkpoint"):
        svc.delta_window("ngram:3", 0)


def test_compare_readme_picks_the_best_ngram_and_sets_shares_beside_the_paper(rec, tiny_lstm, tmp_path, cache):
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "compare_readme", Path(__file__).resolve().parent.parent / "scripts" / "compare_readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = tmp_path / "tiny"
    bpc = {}
    for n in (1, 3):
        cmp = compare_recording(rec, f"ngram:{n}", n_boot=50, cache=cache)
        bpc[n] = cmp.summary.bpc_b[0]
        (model / f"compare-ngram{n}").mkdir(parents=True)
        (model / f"compare-ngram{n}" / "compare.json").write_text(json.dumps(cmp.to_dict(), default=float))
    eb = breakdown(tiny_lstm, recording_text(rec), model_bits=recording_char_bits(rec), cache=cache)
    (model / "errors").mkdir()
    (model / "errors" / "errors.json").write_text(json.dumps(eb.to_dict(), default=float))
    text = mod.build(tmp_path)
    best = min(bpc, key=bpc.get)
    row = next(line for line in text.splitlines() if line.startswith("| tiny |"))
    assert row.endswith(f"({best}-gram) |") and f"{bpc[1]:.3f}" in row and f"{bpc[3]:.3f}" in row
    assert "| paper: best LSTM | War and Peace, test split | 330K | 1.554 |" in text
    word = next(line for line in text.splitlines() if line.startswith("| word model |"))
    share = eb.table[eb.table.group == "word model"].share.sum()
    assert word == f"| word model | {share:.1%} | 37% |"


def test_delta_callback_over_http(rec, tiny_lstm):
    from dashboards.app import create_app
    from tests.test_dashboard import _post
    app = create_app(rec.path, tiny_lstm)
    c = app.server.test_client()
    ok = _post(c, app, "..delta-body.children", {"delta-btn.n_clicks": 1, "win-pos.data": {"start": 0}},
               "delta-btn.n_clicks", {"delta-baseline.value": "ngram:3"})["response"]
    assert ok["delta-msg"]["children"] == "" and "bits/char in characters 0–" in ok["delta-summary"]["children"]
    assert ok["delta-body"]["children"]["props"]["figure"]["layout"]["meta"]["figure"] == "delta_heatmap"
    bad = _post(c, app, "..delta-body.children", {"delta-btn.n_clicks": 2, "win-pos.data": {"start": 0}},
                "delta-btn.n_clicks", {"delta-baseline.value": "ngram:0"})["response"]
    assert "between 1 and 20" in bad["delta-msg"]["children"] and "delta-body" not in bad
    moved = _post(c, app, "..delta-body.children", {"win-pos.data": {"start": 0}}, "win-pos.data",
                  {"delta-baseline.value": "ngram:3", "delta-body.children": None})
    assert moved is None  # the window moved before any Δloss view was asked for: nothing to do
