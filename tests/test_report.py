"""probe report: the folder it writes, the analyses it calls, and bad input that must leave nothing behind."""
from __future__ import annotations

import json
import re
import shutil
import sys
import types

import numpy as np
import pandas as pd
import pytest

from probe.cli.main import main
from probe.errors import ProbeError
from probe.record.recording import Recording
from probe.report import build_report, concept_passage, line_start
from tests.figures_fixtures import make_recording

needs_chrome = pytest.mark.skipif(not shutil.which("chromium") and not shutil.which("google-chrome"),
                                  reason="no Chrome/Chromium installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def rec_path(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("rec") / "syn")


@pytest.fixture
def fake_analyses(monkeypatch):
    """Stand-ins for probe.analysis.probes / saturation / embedding with the documented shapes (calls are recorded)."""
    calls = []

    def fit_probes(rec, concept, *, untrained="auto", seed=0):
        calls.append(("fit_probes", concept.name))
        table = pd.DataFrame(dict(layer=[0, 0, 1, 1], kind=list("hchc"), metric="auc", probe=[.7, .8, .9, .99],
                                  majority=.5, best_unit=[.6, .7, .8, .99], untrained=.55, control=.52,
                                  selectivity=[.18, .28, .38, .47]))
        sparse = pd.DataFrame([dict(layer=1, kind="c", k=k, score=.9 + .01 * k) for k in (1, 2, 4, 8)])
        return types.SimpleNamespace(table=table, sparse=sparse)

    def gate_saturation(rec):
        calls.append(("gate_saturation",))
        return pd.DataFrame(dict(layer=[0, 0, 1], gate=list("ifo"), index=[0, 1, 2], left=[.1, .2, .3],
                                 right=[.7, .6, .5]))

    def embed_states(rec, *, layer, kind="h", method="pca", concept=None, n=5000, seed=0):
        calls.append(("embed_states", layer, kind, method, getattr(concept, "name", concept)))
        m = min(n, rec.n_rows)
        return pd.DataFrame(dict(x=np.arange(m, dtype=float), y=np.zeros(m), row=np.arange(m),
                                 char=rec.row_strings(0, m), label=np.zeros(m, dtype=np.uint8)))

    for name, fn in (("probes", fit_probes), ("saturation", gate_saturation), ("embedding", embed_states)):
        mod = types.ModuleType(f"probe.analysis.{name}")
        setattr(mod, fn.__name__, fn)
        monkeypatch.setitem(sys.modules, f"probe.analysis.{name}", mod)
    return calls


def _quiet(msg):
    pass


def test_report_html_tables_and_sections(rec_path, tmp_path, fake_analyses):
    out = build_report(rec_path, ["wiki-link", "column"], tmp_path / "rep", images=False, say=_quiet)
    html = (out / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", html) and html.count("plotly.js v") >= 1  # inlined, offline
    for heading in ("Model", "Concept: wiki-link", "Concept: column", "Gate saturation", "Embedding"):
        assert f">{heading}</h2>" in html
    units = pd.read_csv(out / "tables" / "wiki-link-units.csv")
    assert units["unit"].iloc[0] == "L1.c.3" and units["score"].iloc[0] > 0.99  # the planted unit wins
    assert units["chance"].iloc[0] < 0.8 and "Chance level" in html
    assert pd.read_csv(out / "tables" / "column-units.csv")["unit"].iloc[0] == "L0.c.0"
    bpc = pd.read_csv(out / "tables" / "bits-per-char.csv")
    assert bpc["bits_per_char"].iloc[0] == pytest.approx(0.737, abs=1e-3)
    assert set(pd.read_csv(out / "tables" / "wiki-link-probes.csv").columns) >= {"probe", "control"}
    meta = json.loads((out / "report.json").read_text())
    assert "wiki-link-heatmap-1-L1_c_3" in meta["figures"] and "gate-saturation" in meta["figures"]
    assert ("embed_states", 1, "h", "pca", "wiki-link") in fake_analyses
    assert list((out / "figures").iterdir()) == []  # images=False
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no temporary folder left


@needs_chrome
def test_report_writes_png_and_svg_for_every_figure(rec_path, tmp_path, fake_analyses):
    out = build_report(rec_path, ["wiki-link"], tmp_path / "rep", heat_units=1, say=_quiet)
    figures = json.loads((out / "report.json").read_text())["figures"]
    for name in figures:
        assert (out / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert b"<svg" in (out / "figures" / f"{name}.svg").read_bytes()[:500]


def test_concept_passage_opens_on_the_concept():
    y = np.zeros(1000)
    y[700:720] = 1
    y[300:302] = 1
    s, e = concept_passage(y, (500, 1000), 100)
    assert 500 <= s <= 700 < 720 <= e and e - s == 100
    assert concept_passage(np.arange(1000.0), (500, 1000), 100) == (500, 600)


def test_line_start_snaps_back_to_a_newline(rec_path):
    rec = Recording.open(rec_path)
    i = rec.text.index("\n", 200) + 1  # a line start
    assert line_start(rec, i + 7) == i and line_start(rec, i) == i
    assert line_start(rec, i + 7, lower=i + 1) == i + 7  # never before the held-out part


def _cli(capsys, *argv):
    rc = main(["report", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, err


@pytest.mark.parametrize("concepts, message", [
    ("wiki-link,zzz-nothing-matches", "matches nothing"),
    ("(unclosed", "regex"),
])
def test_report_bad_concepts_write_nothing(rec_path, tmp_path, capsys, concepts, message):
    rc, err = _cli(capsys, rec_path, "--concepts", concepts, "--out", tmp_path / "rep", "--no-images")
    assert rc == 2 and message in err.lower() and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_report_bad_output_folders(rec_path, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    rc, err = _cli(capsys, rec_path, "--out", tmp_path / "afile" / "rep", "--no-images", "--embedding", "none")
    assert rc == 2 and "cannot create" in err and err.count("\n") == 1
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    rc, err = _cli(capsys, rec_path, "--out", full, "--no-images", "--embedding", "none")
    assert rc == 2 and "--overwrite" in err and (full / "keep.txt").read_text() == "mine"
    rc, err = _cli(capsys, tmp_path / "no-such-rec", "--out", tmp_path / "rep")
    assert rc == 2 and "no such recording" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "full"]


def test_report_failure_midway_leaves_nothing(rec_path, tmp_path, monkeypatch, fake_analyses):
    def boom(rec):
        raise ProbeError("saturation failed")
    mod = types.ModuleType("probe.analysis.saturation")
    mod.gate_saturation = boom
    monkeypatch.setitem(sys.modules, "probe.analysis.saturation", mod)
    with pytest.raises(ProbeError, match="saturation failed"):
        build_report(rec_path, ["wiki-link"], tmp_path / "rep", images=False, embedding="none", say=_quiet)
    assert list(tmp_path.iterdir()) == []


def test_report_overwrite_replaces(rec_path, tmp_path, fake_analyses):
    out = tmp_path / "rep"
    build_report(rec_path, [], out, images=False, say=_quiet)
    (out / "stale.txt").write_text("old")
    build_report(Recording.open(rec_path), ["column"], out, images=False, overwrite=True, say=_quiet)
    assert not (out / "stale.txt").exists() and (out / "tables" / "column-units.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_report_on_a_byte_model_recording(tiny_byte_lstm, tmp_path, fake_analyses):
    from probe.record.recorder import record
    text = ("Voir [[Zürich]] et [[Genève]], http://exemple.fr/été puis la suite du texte.\n" * 30)
    rec = record(tiny_byte_lstm, text, tmp_path / "rec")
    out = build_report(rec, ["wiki-link"], tmp_path / "rep", images=False, say=_quiet)
    bpc = pd.read_csv(out / "tables" / "bits-per-char.csv").iloc[0]
    assert bpc["bits_per_char"] > bpc["bits_per_symbol"]  # more bytes than characters
    html = (out / "index.html").read_text(encoding="utf-8")
    # the heatmaps draw characters, not bytes: "ü" is one character, no raw UTF-8 byte shows
    assert '"\\u00fc"' in html or '"ü"' in html


def test_report_concepts_with_the_same_file_name_do_not_clash(rec_path, tmp_path, fake_analyses):
    out = build_report(rec_path, ["Alan Turing", "Alan.Turing"], tmp_path / "rep", images=False,
                       embedding="none", say=_quiet)
    tables = sorted(p.name for p in (out / "tables").iterdir())
    assert "Alan-Turing-units.csv" in tables and "Alan-Turing-2-units.csv" in tables
    html = (out / "index.html").read_text(encoding="utf-8")
    assert 'id="concept-Alan-Turing"' in html and 'id="concept-Alan-Turing-2"' in html
