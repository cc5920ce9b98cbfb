"""Figure builders: content checks on synthetic recordings with planted units and on real tiny recordings."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from probe.errors import ProbeError
from probe.figures import (Passage, embedding_figure, probe_figure, samples_table, saturation_figure,
                           sparse_figure, text_heatmap, training_curve, unit_heatmap, wrap_positions)
from probe.figures.colors import GUESS_SPACE, NEWLINE, SPACE, TAB, display_char
from probe.record.recording import Recording
from tests.figures_fixtures import inside_links, make_recording


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> Recording:
    return Recording.open(make_recording(tmp_path_factory.mktemp("rec") / "syn"))


def _traces(fig, kind):
    return [t for t in fig.data if t.type == kind]


def _text_cells(fig):
    """{(row, col): value} of the activation heatmap's painted cells."""
    z = np.asarray(fig.data[0].z, dtype=float)
    return {(int(r), int(c)): z[r, c] for r, c in zip(*np.nonzero(np.isfinite(z)))}


def test_wrap_positions_keeps_newlines_and_wraps_long_lines():
    lines, cols = wrap_positions(list("abcdef\nxy"), width=4)
    assert list(zip(lines, cols)) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1)]
    lines, cols = wrap_positions(list("ab\n\ncd"), width=10)  # an empty line stays a line
    assert list(lines) == [0, 0, 0, 1, 2, 2]


def test_text_heatmap_cells_follow_the_unit(rec):
    start, stop = 10, 300
    fig = text_heatmap(rec, "L1.c.3", start, stop, width=50)
    values = rec.unit("L1.c.3", start, stop)
    lines, cols = wrap_positions(list(rec.text[start:stop]), 50)
    z = np.asarray(fig.data[0].z, dtype=float)
    np.testing.assert_allclose(z[lines, cols], values, rtol=1e-6)
    assert np.isfinite(z).sum() == stop - start  # nothing else painted
    # inside [[links]] the planted unit is high: those cells sit on the green end of a scale centred on 0
    link = inside_links(rec.text)[start:stop]
    assert z[lines[link], cols[link]].min() > 0.5 and z[lines[~link], cols[~link]].max() < -0.5
    hm = fig.data[0]
    assert hm.zmin == -hm.zmax and hm.colorscale[0][1] == "#2166ac" and hm.colorscale[-1][1] == "#1a7837"
    assert "L1.c.3" in hm.colorbar.title.text


def test_text_heatmap_shows_whitespace(rec):
    fig = text_heatmap(rec, "L0.c.0", 0, 200, width=120)
    chars = _traces(fig, "scatter")[0]
    shown, text = list(chars.text), rec.text[:200]
    assert len(shown) == 200
    for ch, s in zip(text, shown):
        assert s == {"\n": NEWLINE, " ": SPACE, "\t": TAB}.get(ch, ch)
    # the character after a newline starts a new line at column 0
    i = text.index("\n") + 1
    assert chars.x[i] == 0 and chars.y[i] > chars.y[i - 1]
    # runs of spaces are kept: "  " in "Indented  line" -> two markers side by side
    j = text.index("Indented  line") + len("Indented")
    assert shown[j:j + 2] == [SPACE, SPACE] and chars.x[j + 1] == chars.x[j] + 1


def test_text_heatmap_topk_rows_hold_recorded_guesses(rec):
    start, stop = 0, 120
    fig = text_heatmap(rec, "L1.c.3", start, stop, topk=True, width=200)
    guesses = rec.topk(start, stop)
    heat = _traces(fig, "heatmap")
    assert len(heat) == 2
    pz = np.asarray(heat[1].z, dtype=float)
    scat = _traces(fig, "scatter")
    g = scat[1]  # the guess symbols
    assert len(g.text) == 5 * (stop - start)
    block = fig.layout.meta["block"]
    lines, cols = wrap_positions(list(rec.text[start:stop]), 200)
    for i in (0, 5, 60, 119):
        for j in range(5):
            sym, prob = guesses[i][j]
            y = lines[i] * block + 1 + j
            assert pz[y, cols[i]] == pytest.approx(prob, rel=1e-3)
            k = list(zip(g.x, g.y)).index((cols[i], y))
            assert g.text[k] == display_char(sym, guess=True)
    # the recording's top guess is the true next character, so row 1 spells the text shifted by one
    top = {(x, y): t for x, y, t in zip(g.x, g.y, g.text)}
    spelled = [top[(cols[i], lines[i] * block + 1)] for i in range(stop - start - 1)]
    assert spelled == [display_char(c, guess=True) for c in rec.text[start + 1:stop]]
    assert heat[1].colorscale[-1][1] == "#b2182b" and heat[1].zmin == 0 and heat[1].zmax == 1
    assert GUESS_SPACE in g.text


def test_text_heatmap_from_arrays_and_bad_input():
    chars = list("ab\ncd")
    fig = text_heatmap(chars, values=[0.0, 0.5, 1.0, -1.0, 0.2], unit="live",
                       topk=[[("x", 0.9), ("y", 0.1)]] * 5)
    assert _text_cells(fig)[(0, 1)] == pytest.approx(0.5)
    assert _text_cells(fig)[(fig.layout.meta["block"], 0)] == pytest.approx(-1.0)
    assert list(_traces(fig, "scatter")[1].text).count("x") == 5
    with pytest.raises(ProbeError, match="2 values for 5"):
        Passage(chars=chars, values=[1, 2])
    with pytest.raises(ProbeError, match="empty"):
        Passage(chars=[], values=[])


def test_text_heatmap_rejects_bad_units_and_ranges(rec):
    for unit, msg in (("L5.c.0", "layers"), ("L0.c.99", "units run"), ("L0.x.1", "kinds"), ("foo", "bad unit")):
        with pytest.raises(ProbeError, match=msg):
            text_heatmap(rec, unit, 0, 10)
    for a, b, msg in ((5, 5, "empty"), (0, rec.n_rows + 1, "past the end"), (rec.n_rows, rec.n_rows + 5, "past")):
        with pytest.raises(ProbeError, match=msg):
            text_heatmap(rec, "L0.c.0", a, b)


def test_unit_heatmap_marks_concept_and_normalizes(rec):
    units = ["L1.c.3", "L0.c.0", "L0.h.1"]
    labels = inside_links(rec.text)
    fig = unit_heatmap(rec, units, 0, 90, labels=labels, concept="wiki-link")
    strip, main = fig.data
    np.testing.assert_array_equal(np.asarray(strip.z)[0], labels[:90].astype(float))
    z = np.asarray(main.z)
    raw = rec.units(units, 0, 90)
    # L1.c.3 takes both signs: divided by its max |value|; the column and the ramp are one-sided: min-max
    np.testing.assert_allclose(z[0], raw[:, 0] / np.abs(raw[:, 0]).max(), rtol=1e-5)
    for i in (1, 2):
        lo, hi = raw[:, i].min(), raw[:, i].max()
        np.testing.assert_allclose(z[i], 2 * (raw[:, i] - lo) / (hi - lo) - 1, rtol=1e-5, atol=1e-6)
    assert list(main.y) == units and z.min() == pytest.approx(-1.0) and z.max() == pytest.approx(1.0)
    assert list(fig.layout.xaxis2.ticktext)[:5] == ["S", "e", "e", SPACE, "["]


def _probe_table():
    return pd.DataFrame(dict(layer=[0, 0, 1, 1], kind=list("hchc"), metric="auc", probe=[.8, .85, .9, .97],
                             majority=.5, best_unit=[.7, .9, .8, .99], untrained=[.6, .62, .6, .61],
                             control=[.55, .5, .52, .51], selectivity=[.25, .35, .38, .46]))


def test_probe_and_sparse_figures():
    fig = probe_figure(_probe_table())
    assert list(fig.data[0].x) == ["L0.h", "L0.c", "L1.h", "L1.c"] and list(fig.data[0].y) == [.8, .85, .9, .97]
    names = [t.name for t in fig.data]
    assert names[1:] == ["majority class", "best single unit", "untrained model", "control task"]
    assert "AUC" in fig.layout.yaxis.title.text
    no_untrained = _probe_table().assign(untrained=np.nan)
    assert "untrained model" not in [t.name for t in probe_figure(no_untrained).data]
    sp = pd.DataFrame([dict(layer=l, kind=k, k=kk, score=0.5 + 0.01 * kk) for l in (0, 1) for k in "hc"
                       for kk in (1, 2, 4, 8)])
    fig = sparse_figure(sp, metric="auc")
    assert [t.name for t in fig.data] == ["L0.c", "L0.h", "L1.c", "L1.h"]
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.ticktext) == ["1", "2", "4", "8"]


def test_saturation_embedding_training_figures():
    sat = pd.DataFrame(dict(layer=[0, 0, 1, 1], gate=list("ifif"), index=[0, 0, 0, 0], left=[.1, .2, .3, .4],
                            right=[.5, .6, .7, .8]))
    fig = saturation_figure(sat)
    pts = [t for t in fig.data if t.mode == "markers"]
    assert [(t.name, list(t.x), list(t.y)) for t in pts] == [
        ("input gate", [.1], [.5]), ("forget gate", [.2], [.6]), ("input gate", [.3], [.7]),
        ("forget gate", [.4], [.8])]
    emb = pd.DataFrame(dict(x=[0., 1, 2, 3], y=[1., 0, 1, 0], row=[0, 1, 2, 3], char=list("a[[b"),
                            label=np.array([0, 1, 1, 0], dtype=np.uint8)))
    fig = embedding_figure(emb, concept="wiki-link")
    assert [(t.name, list(t.x)) for t in fig.data] == [("outside wiki-link", [0, 3]), ("in wiki-link", [1, 2])]
    as_float = embedding_figure(emb.assign(label=[0.0, 1.0, 1.0, 0.0]), concept="url")  # 0/1 floats: categories
    assert [t.name for t in as_float.data] == ["outside url", "in url"]
    cont = embedding_figure(emb.assign(label=[0.1, 0.5, 2.0, 7.5]), concept="column")  # float: a color scale
    assert len(cont.data) == 1 and list(cont.data[0].marker.color) == [0.1, 0.5, 2.0, 7.5]
    assert cont.data[0].marker.colorbar.title.text == "column"
    metrics = [dict(step=s, train_loss=2.0, val_loss=1.5, val_bpc=1.5 / np.log(2)) for s in (10, 20, 30)]
    fig = training_curve({"metrics": metrics})
    assert list(fig.data[0].y) == pytest.approx([2 / np.log(2)] * 3) and fig.data[1].name == "validation"
    fig = samples_table({"samples": [dict(step=s, text=f"s{s}\nline\ttab") for s in range(20)]}, max_rows=5)
    assert fig.layout.meta["steps"] == [0, 5, 10, 14, 19]
    texts = [a.text for a in fig.layout.annotations]
    assert any(NEWLINE + "<br>" in t and "→" in t for t in texts)
    with pytest.raises(ValueError):
        training_curve({"metrics": []})


def test_figures_from_a_real_recording(tiny_lstm, tmp_path):
    from probe.record.recorder import record
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 3
    rec = record(tiny_lstm, text, tmp_path / "rec")
    fig = text_heatmap(rec, "L1.c.5", 0, len(text), topk=True, width=60)
    lines, cols = wrap_positions(list(text), 60)
    block = fig.layout.meta["block"]
    z = np.asarray(fig.data[0].z, dtype=float)
    np.testing.assert_allclose(z[lines * block, cols], rec.unit("L1.c.5"), rtol=1e-6)
    guesses = rec.topk()
    pz = np.asarray(fig.data[1].z, dtype=float)
    np.testing.assert_allclose(pz[lines * block + 1, cols], [g[0][1] for g in guesses], rtol=1e-3)


def test_text_heatmap_byte_model_is_per_character(tiny_byte_lstm, tmp_path):
    from probe.record.recorder import record
    text = "café — naïve [[Zürich]]\n" * 4
    rec = record(tiny_byte_lstm, text, tmp_path / "rec")
    assert rec.n_rows == len(text.encode("utf-8"))
    fig = text_heatmap(rec, "L0.h.2", 0, rec.n_rows, width=40)
    chars = list(_traces(fig, "scatter")[0].text)
    assert chars == [display_char(c) for c in text]
    # each character is colored by the state after its last byte
    last_rows = np.cumsum([len(c.encode("utf-8")) for c in text]) - 1
    lines, cols = wrap_positions(list(text), 40)
    z = np.asarray(fig.data[0].z, dtype=float)
    np.testing.assert_allclose(z[lines, cols], rec.unit("L0.h.2")[last_rows], rtol=1e-6)


def test_color_range_rules():
    from probe.figures.colors import symmetric_range
    assert symmetric_range(np.array([0.1, 0.9])) == (0.0, 1.0)  # gates
    assert symmetric_range(np.array([-2.0, 0.5, 1.0])) == (-2.0, 2.0)  # both signs: centred on 0
    assert symmetric_range(np.array([-150.0, -90.0, -20.0])) == (-150.0, -20.0)  # one-sided: its own range


def test_text_colors_stay_legible():
    chars = list("a b c")
    fig = text_heatmap(chars, values=[-1.0, -1.0, 0.0, 0.0, 1.0], unit="u", zrange=(-1, 1))
    colors = list(_traces(fig, "scatter")[0].textfont.color)
    # white on the strong ends of the scale, dark on pale cells, whitespace markers faint on pale cells
    assert colors == ["#ffffff", "#ffffff", "#111111", "#9a9a9a", "#ffffff"]


def test_display_char_markers():
    assert [display_char(c) for c in ("\n", " ", "\t", "\x01", "a", "")] == [NEWLINE, SPACE, TAB, "\u00b7", "a", ""]
    assert display_char(" ", guess=True) == GUESS_SPACE and display_char("\\xc3", guess=True) == "\u2026"
