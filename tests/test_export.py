"""Export formats (.html offline, .png, .svg, .pdf via kaleido + Chromium) and the `probe heatmap` command."""
from __future__ import annotations

import re
import shutil

import plotly.graph_objects as go
import pytest

from probe.cli.main import main
from probe.errors import ProbeError
from probe.figures.export import find_chrome, format_of, write_figure, write_figures
from probe.record.recording import Recording
from tests.figures_fixtures import make_recording

needs_chrome = pytest.mark.skipif(not any(shutil.which(n) for n in ("chromium", "google-chrome", "chrome")),
                                  reason="no Chrome/Chromium installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def rec_path(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("rec") / "syn")


def _fig():
    return go.Figure(go.Bar(x=["a", "b"], y=[1, 2]), layout=dict(title="export test", width=300, height=200))


def _no_leftovers(folder):
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


def test_html_is_self_contained_and_offline(tmp_path):
    path = write_figure(_fig(), tmp_path / "f.html")
    html = path.read_text(encoding="utf-8")
    assert "Plotly.newPlot" in html and re.search(r"plotly\.js v\d+\.\d+", html)  # plotly.js is inlined
    assert not re.search(r"<script[^>]+src=", html)  # no external script (no CDN)
    assert 'src="https://cdn.plot.ly' not in html and len(html) > 1_000_000
    assert _no_leftovers(tmp_path) == []


@needs_chrome
def test_static_formats_in_one_session(tmp_path):
    fig = _fig()
    paths = write_figures([(fig, tmp_path / "f.png"), (fig, tmp_path / "f.svg"), (fig, tmp_path / "f.pdf")])
    png, svg, pdf = (p.read_bytes() for p in paths)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 600  # width 300 at scale 2
    assert b"<svg" in svg[:500] and b"export test" in svg
    assert pdf[:5] == b"%PDF-"
    assert _no_leftovers(tmp_path) == []


def test_unsupported_format_and_bad_folders(tmp_path):
    with pytest.raises(ProbeError, match=r"unsupported format \.jpg; use one of \.html, \.png, \.svg, \.pdf"):
        format_of("x.jpg")
    with pytest.raises(ProbeError, match="no extension"):
        format_of("x")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ProbeError, match="does not exist"):
        write_figure(_fig(), tmp_path / "afile" / "f.html")
    # one bad path: nothing at all is written, not even the good one
    with pytest.raises(ProbeError):
        write_figures([(_fig(), tmp_path / "good.html"), (_fig(), tmp_path / "missing" / "f.png")])
    assert not (tmp_path / "good.html").exists()


def test_missing_chrome_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ProbeError, match="install chromium: apt-get install chromium"):
        find_chrome()
    with pytest.raises(ProbeError, match="install chromium"):
        write_figure(_fig(), tmp_path / "f.png")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "nope"))
    with pytest.raises(ProbeError, match="BROWSER_PATH"):
        find_chrome()


# --------------------------------------------------------------------------- probe heatmap

def _run(capsys, *argv):
    rc = main(["heatmap", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_heatmap_command_html(rec_path, tmp_path, capsys):
    out = tmp_path / "h.html"
    rc, stdout, err = _run(capsys, rec_path, "--unit", "L1.c.3", "--range", "0:300", "--topk", "--out", out)
    assert rc == 0, err
    html = out.read_text(encoding="utf-8")
    assert "L1.c.3" in html and "p(next)" in html


@needs_chrome
def test_heatmap_command_png(rec_path, tmp_path, capsys):
    out = tmp_path / "h.png"
    rc, _, err = _run(capsys, rec_path, "--unit", "L0.c.0", "--range", "100:400", "--width", "60", "--out", out)
    assert rc == 0, err
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, message", [
    (["--unit", "L9.c.0"], "no unit L9.c.0"),
    (["--unit", "L0.c.8"], "units run from 0 to 7"),
    (["--unit", "cell3"], "bad unit name"),
    (["--unit", "L0.c.0", "--range", "50:50"], "is empty"),
    (["--unit", "L0.c.0", "--range", "100:99999"], "past the end"),
    (["--unit", "L0.c.0", "--range", "99999:"], "past the end"),
    (["--unit", "L0.c.0", "--range", "a:b"], "integers"),
    (["--unit", "L0.c.0", "--width", "0"], "--width"),
])
def test_heatmap_bad_input(rec_path, tmp_path, capsys, args, message):
    out = tmp_path / "h.html"
    rc, _, err = _run(capsys, rec_path, *args, "--out", out)
    assert rc == 2 and message in err
    assert err.count("\n") == 1 and err.startswith("probe heatmap: error:")
    assert list(tmp_path.iterdir()) == []


def test_heatmap_bad_output(rec_path, tmp_path, capsys):
    rc, _, err = _run(capsys, rec_path, "--unit", "L0.c.0", "--out", tmp_path / "h.gif")
    assert rc == 2 and "unsupported format .gif" in err and err.count("\n") == 1
    (tmp_path / "f").write_text("")
    rc, _, err = _run(capsys, rec_path, "--unit", "L0.c.0", "--out", tmp_path / "f" / "h.html")
    assert rc == 2 and "does not exist" in err and err.count("\n") == 1
    rc, _, err = _run(capsys, tmp_path / "nothing", "--unit", "L0.c.0", "--out", tmp_path / "h.html")
    assert rc == 2 and "no such recording" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_default_range_fits_a_short_recording(rec_path, tmp_path, capsys):
    n = Recording.open(rec_path).n_rows
    assert n < 2000
    rc, _, err = _run(capsys, rec_path, "--unit", "L0.h.1", "--out", tmp_path / "h.html")
    assert rc == 0, err


def test_heatmap_topk_needs_recorded_guesses(tmp_path, capsys):
    rec = make_recording(tmp_path / "nok", topk=False)
    rc, _, err = _run(capsys, rec, "--unit", "L0.c.0", "--topk", "--out", tmp_path / "h.html")
    assert rc == 2 and "no top-k predictions" in err and not (tmp_path / "h.html").exists()
