"""The dashboard's Atlas tab: the table and its filters, a click -> that unit at its top context, `--unit` and
`?unit=` (names, best, best:CONCEPT, bad names as one line), and one browser test."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard_fixtures import COLUMN_UNIT, QUOTE_UNIT, make_recording, post_callback, synthetic_text  # noqa: E402

from dashboards.service import DashboardService  # noqa: E402
from probe.errors import ProbeError  # noqa: E402
from probe.names import Unit  # noqa: E402
from probe.record.recording import Recording  # noqa: E402

WINDOW = 2000
SPACE_UNIT = "L1.h.4"  # explained by "space" in the fake atlas, weakly


@dataclass
class FakeAtlas:
    """An Atlas-like object (probe.analysis.atlas.Atlas's interface): .table, .entry(unit), .best_unit(concept)."""

    table: pd.DataFrame

    def entry(self, unit: str) -> dict | None:
        rows = self.table[self.table["unit"] == unit]
        return None if rows.empty else rows.iloc[0].to_dict()

    def best_unit(self, concept: str | None = None) -> str:
        t = self.table if concept is None else self.table[self.table["concept"] == concept]
        if t.empty:
            raise ProbeError(f"no unit for {concept}")
        return str(t["unit"].iloc[0])


def fake_atlas(rec: Recording) -> FakeAtlas:
    """Every h and c unit: the planted quote and column units explained, one weak "space" unit, the rest noise."""
    rng = np.random.default_rng(0)
    quote_row = rec.text.index('"', 3000)  # a top context far from the start: opening it moves the window
    rows = []
    for u in rec.all_units(["h", "c"]):
        name = u.name
        concept, metric, score, chance, p, top = rng.choice(["letter", "newline"]), "auc", 0.5, 0.5, 1.0, [100]
        if name == QUOTE_UNIT:
            concept, score, p, top = "quote", 0.99, 0.001, [quote_row, 40]
        elif name == COLUMN_UNIT:
            concept, metric, score, chance, p, top = "column", "r", 0.5, 0.05, 0.001, [4500]
        elif name == SPACE_UNIT:
            concept, score, p, top = "space", 0.6, 0.01, [200]
        else:
            score = 0.5 + rng.uniform(0, 0.02)
        rows.append(dict(unit=name, layer=u.layer, kind=u.kind, index=u.index, concept=str(concept),
                         label_type="binary" if metric == "auc" else "continuous", metric=metric, score=score,
                         sign=1, chance=chance, p_value=p, explained=p <= 0.05, margin=score - chance,
                         second_concept="letter", second_score=0.51, act_min=-1.0, act_max=1.0, top_rows=top))
    table = pd.DataFrame(rows).sort_values("margin", ascending=False, kind="stable").reset_index(drop=True)
    return FakeAtlas(table)


@pytest.fixture(scope="module")
def rec_path(tmp_path_factory) -> Path:
    return make_recording(tmp_path_factory.mktemp("atlas") / "rec", synthetic_text(6000))


@pytest.fixture(scope="module")
def atlas(rec_path) -> FakeAtlas:
    return fake_atlas(Recording.open(rec_path))


@pytest.fixture(scope="module")
def svc(rec_path, atlas) -> DashboardService:
    return DashboardService(rec_path, atlas=atlas)


def quote_row(rec_path) -> int:
    return Recording.open(rec_path).text.index('"', 3000)


# ------------------------------------------------------------------ opening unit and position

def test_opens_on_the_atlas_best_unit_at_its_top_context(svc, rec_path):
    r = quote_row(rec_path)
    assert svc.initial.name == QUOTE_UNIT
    assert svc.initial_pos == {"start": r - WINDOW // 4, "mark": [r, r + 1]}
    assert "opens on L1.c.3: on quote, held-out auc 0.990 (chance 0.500)" in svc.opening_line()


def test_without_an_atlas_it_opens_as_before(rec_path):
    plain = DashboardService(rec_path)
    assert plain.atlas is None  # the synthetic recording has no atlas folder
    assert plain.initial == Unit(1, "c", 0) and plain.initial_pos == {"start": 0, "mark": None}
    assert "no atlas" in plain.opening_line()
    with pytest.raises(ProbeError, match="no atlas"):
        plain.atlas_table()
    assert DashboardService(rec_path, unit="L0.h.2").initial == Unit(0, "h", 2)


@pytest.mark.parametrize("spec,unit", [
    ("L0.h.2", "L0.h.2"), (" L1.f.7 ", "L1.f.7"), ("best", QUOTE_UNIT), ("best:column", COLUMN_UNIT),
    ("best:space", SPACE_UNIT),
])
def test_unit_specs(rec_path, atlas, spec, unit):
    assert DashboardService(rec_path, atlas=atlas, unit=spec).initial.name == unit


@pytest.mark.parametrize("spec,msg", [
    ("best:nothing", "no unit of the atlas is best explained by 'nothing'; its concepts include"),
    ("best:", "needs a concept after the colon"),
    ("L9.c.1", "no unit L9.c.1: the model has layers L0..L1"),
    ("L0.c.99", "no unit L0.c.99: units run from 0 to 15"),
    ("neuron7", "bad unit name 'neuron7'"),
    ("", "must name a unit"),
])
def test_bad_unit_specs_are_one_line_errors(rec_path, atlas, spec, msg):
    with pytest.raises(ProbeError) as e:
        DashboardService(rec_path, atlas=atlas, unit=spec)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_best_needs_an_atlas(rec_path):
    with pytest.raises(ProbeError, match="has no atlas"):
        DashboardService(rec_path, unit="best:quote")


# ------------------------------------------------------------------ the table and its filters

def test_atlas_table_lists_units_best_first(svc, atlas):
    rows, summary = svc.atlas_table()
    assert len(rows) == len(atlas.table) == 64
    assert [r["unit"] for r in rows[:3]] == [QUOTE_UNIT, COLUMN_UNIT, SPACE_UNIT]
    assert rows[0] == {"id": QUOTE_UNIT, "unit": QUOTE_UNIT, "concept": "quote", "metric": "auc", "score": 0.99,
                       "chance": 0.5, "margin": 0.49, "p_value": 0.001, "explained": "\u2713",
                       "second": "letter (0.510)"}
    margins = [r["margin"] for r in rows]
    assert margins == sorted(margins, reverse=True)
    assert "64 of 64 units" in summary and "3 of 64 explained" in summary
    assert svc.atlas_concepts()[:1] != [] and dict(svc.atlas_concepts())["quote"] == 1
    assert svc.atlas_sites() == ([0, 1], ["h", "c"])


@pytest.mark.parametrize("kw,units", [
    (dict(explained=["on"]), [QUOTE_UNIT, COLUMN_UNIT, SPACE_UNIT]),
    (dict(concept="column"), [COLUMN_UNIT]),
    (dict(layer=1, explained=["on"]), [QUOTE_UNIT, SPACE_UNIT]),
    (dict(kind="c", explained=["on"]), [QUOTE_UNIT]),
    (dict(layer=0, kind="h", explained=["on"]), [COLUMN_UNIT]),
    (dict(layer=0, kind="c", explained=["on"]), []),
])
def test_atlas_filters(svc, kw, units):
    rows, summary = svc.atlas_table(**kw)
    assert [r["unit"] for r in rows] == units
    assert summary.startswith(f"{len(units)} of 64 units")


def test_atlas_filters_by_layer_and_kind_keep_only_those(svc):
    rows, _ = svc.atlas_table(layer=1, kind="h")
    assert len(rows) == 16 and all(r["unit"].startswith("L1.h.") for r in rows)
    noise, _ = svc.atlas_table(concept="letter")
    assert noise and all(r["explained"] == "" for r in noise)
    assert all(r["concept"] in ("letter", "letter (off)") for r in noise)


@pytest.mark.parametrize("kw,msg", [
    (dict(concept="nope"), "no unit of the atlas is best explained by 'nope'"),
    (dict(concept=5), "concept must be text"),
    (dict(layer=7), "layer must be between 0 and 1"),
    (dict(layer="x"), "layer must be a whole number"),
    (dict(kind="f"), "kind must be one of h, c"),
    (dict(explained="on"), "explained only must be a list"),
    (dict(explained=["yes"]), "explained only must be one of on"),
])
def test_bad_filters_are_messages(svc, kw, msg):
    with pytest.raises(ProbeError, match=msg):
        svc.atlas_table(**kw)


# ------------------------------------------------------------------ clicking a row, the address

def test_opening_a_unit_goes_to_its_top_context(svc, rec_path):
    u, pos, line = svc.open_unit(COLUMN_UNIT)
    assert u == Unit(0, "h", 2) and pos == {"start": 4500 - WINDOW // 4, "mark": [4500, 4501]}
    assert line.startswith("L0.h.2: on column, held-out r 0.500 (chance 0.050), p = 0.001")
    u, pos, line = svc.open_unit("L0.f.3")  # a gate: not in the atlas, opened at the start
    assert u == Unit(0, "f", 3) and pos == {"start": 0, "mark": None} and line == ""
    w = svc.window(svc.open_unit(QUOTE_UNIT)[1]["start"], 1, "c", [quote_row(rec_path), quote_row(rec_path) + 1])
    assert w["chars"][quote_row(rec_path) - w["start"]] == '"'


@pytest.mark.parametrize("search,unit", [
    ("?unit=L0.h.2", "L0.h.2"), ("?x=1&unit=best:space", SPACE_UNIT), ("?unit=best", QUOTE_UNIT),
    ("?unit=L1.c.3&unit=L0.c.1", "L0.c.1"), ("unit=L0.h.5", "L0.h.5"),
])
def test_address_names_a_unit(svc, search, unit):
    assert svc.unit_from_address(search)[0].name == unit


@pytest.mark.parametrize("search", [None, "", "?", "?units=L0.h.2", "?x=1"])
def test_an_address_without_a_unit_changes_nothing(svc, search):
    assert svc.unit_from_address(search) is None


@pytest.mark.parametrize("search,msg", [
    ("?unit=L7.h.1", "no unit L7.h.1"), ("?unit=", "type the unit name first"), ("?unit=%2e%2e%2f", "bad unit name"),
    (["?unit=L0.h.1"], "address must be text"), ("?unit=" + "x" * 3000, "address is limited to 2,000"),
])
def test_bad_addresses_are_messages(svc, search, msg):
    with pytest.raises(ProbeError, match=msg):
        svc.unit_from_address(search)


# ------------------------------------------------------------------ the callbacks over HTTP

def _post(app, output_start: str, inputs: dict, changed: str, state: dict | None = None):
    r = post_callback(app.server.test_client(), app, output_start, inputs, changed, state)
    assert b"internal error" not in r.data
    return r.get_json() if r.status_code == 200 else None


@pytest.fixture(scope="module")
def app(rec_path, atlas):
    from dashboards.app import create_app
    return create_app(rec_path, atlas=atlas)


def test_the_page_opens_on_the_atlas_tab_at_the_best_unit(app, rec_path):
    r = quote_row(rec_path)
    found = {}

    def walk(c):
        if getattr(c, "id", None):
            found[c.id] = c
        kids = getattr(c, "children", None)
        for k in kids if isinstance(kids, list) else [kids] if kids is not None else []:
            walk(k)
    walk(app.layout)
    tabs = found["tabs"]
    assert tabs.value == "atlas" and [t.label for t in tabs.children][:2] == ["Atlas", "Find neurons"]
    assert (found["layer"].value, found["kind"].value, found["unit-index"].value) == (1, "c", 3)
    assert found["win-pos"].data == {"start": r - WINDOW // 4, "mark": [r, r + 1]}
    assert found["atlas-table"].data[0]["unit"] == QUOTE_UNIT
    out = _post(app, "..win.data", {"layer.value": 1, "kind.value": "c"}, "layer.value",
                {"win-pos.data": found["win-pos"].data})  # the page's first window request
    assert out["response"]["win"]["data"]["start"] == r - WINDOW // 4
    assert out["response"]["win"]["data"]["mark"] == [r, r + 1]


def test_a_click_on_a_row_picks_the_unit_and_moves_the_window(app):
    out = _post(app, "..layer.value", {"atlas-table.active_cell": {"row_id": COLUMN_UNIT, "row": 1, "column": 0}},
                "atlas-table.active_cell")
    resp = out["response"]
    assert (resp["layer"]["value"], resp["kind"]["value"], resp["unit-index"]["value"]) == (0, "h", 2)
    jump = resp["jump"]["data"]
    assert jump["start"] == 4500 - WINDOW // 4 and jump["mark"] == [4500, 4501]
    assert resp["atlas-entry"]["children"][0]["props"]["children"].startswith("L0.h.2: on column")
    out = _post(app, "..win.data", {"layer.value": 0, "kind.value": "h", "jump.data": jump}, "jump.data",
                {"win-pos.data": {"start": 0, "mark": None}})
    win = out["response"]["win"]["data"]
    assert (win["start"], win["layer"], win["kind"], win["mark"]) == (4000, 0, "h", [4500, 4501])
    assert out["response"]["win-pos"]["data"] == {"start": 4000, "mark": [4500, 4501]}


def test_the_address_picks_a_unit_and_bad_ones_are_messages(app):
    out = _post(app, "..layer.value", {"url.search": "?unit=best:column"}, "url.search")
    assert out["response"]["unit-index"]["value"] == 2 and out["response"]["jump"]["data"]["start"] == 4000
    assert _post(app, "..layer.value", {"url.search": ""}, "url.search") is None  # no unit named: no change
    out = _post(app, "..layer.value", {"url.search": "?unit=L5.c.1"}, "url.search")
    assert "no unit L5.c.1" in out["response"]["unit-msg"]["children"] and "layer" not in out["response"]
    out = _post(app, "..layer.value", {"atlas-table.active_cell": {"row_id": None}}, "atlas-table.active_cell")
    assert "type the unit name first" in out["response"]["unit-msg"]["children"]


def test_the_filter_callback(app):
    out = _post(app, "..atlas-table.data", {"atlas-concept.value": "quote", "atlas-explained.value": ["on"]},
                "atlas-concept.value")
    assert [r["unit"] for r in out["response"]["atlas-table"]["data"]] == [QUOTE_UNIT]
    assert out["response"]["atlas-summary"]["children"].startswith("1 of 64 units")
    out = _post(app, "..atlas-table.data", {"atlas-layer.value": 9}, "atlas-layer.value")
    assert "layer must be between 0 and 1" in out["response"]["atlas-msg"]["children"]
    assert "atlas-table" not in out["response"]


def test_a_jump_from_the_browser_is_checked(app):
    for jump, msg in (({"start": -4}, "outside the text"), ("x", "malformed unit position"),
                      ({"start": 10, "mark": [1]}, "malformed highlight")):
        out = _post(app, "..win.data", {"layer.value": 0, "kind.value": "h", "jump.data": jump}, "jump.data",
                    {"win-pos.data": {"start": 0}})
        assert msg in out["response"]["win-msg"]["children"]


# ------------------------------------------------------------------ the command line

def test_dashboard_command_unit_option(monkeypatch, capsys, rec_path):
    import dashboards.app
    from probe.cli.main import main
    calls = []
    monkeypatch.setattr(dashboards.app, "serve", lambda *a, **k: calls.append((a, k)) or 0)
    assert main(["dashboard", "rec", "--unit", "best:quote"]) == 0
    assert calls == [(("rec", None), {"host": "127.0.0.1", "port": 8050, "unit": "best:quote"})]
    monkeypatch.undo()
    for unit, msg in (("best", "has no atlas"), ("L9.c.1", "no unit L9.c.1"), ("L1.c", "bad unit name 'L1.c'")):
        assert main(["dashboard", str(rec_path), "--unit", unit]) == 2
        err = capsys.readouterr().err
        assert err.startswith("probe dashboard: error: ") and msg in err and err.count("\n") == 1, err


def test_serve_says_which_unit_it_opens(monkeypatch, capsys, rec_path):
    import dash
    import dashboards.app
    monkeypatch.setattr(dash.Dash, "run", lambda self, **kw: None)
    assert dashboards.app.serve(str(rec_path), unit="L0.h.2") == 0
    assert "opens on L0.h.2 (no atlas: probe atlas" in capsys.readouterr().err


# ------------------------------------------------------------------ the real atlas (probe.analysis.atlas)

@pytest.fixture(scope="module")
def real_rec(tmp_path_factory) -> Path:
    """A recording with its own atlas (two candidates, so that it builds in seconds) in <rec>/atlas."""
    from probe.analysis import concepts
    from probe.analysis.atlas import build_atlas, default_folder
    path = make_recording(tmp_path_factory.mktemp("real") / "rec", synthetic_text(6000))
    rec = Recording.open(path)
    build_atlas(rec, kinds=["h", "c"], candidates=[concepts.builtin("quote"), concepts.builtin("column")],
                n_perm=50).save(default_folder(rec))
    return path


def test_the_recordings_own_atlas_is_found_and_opened(real_rec):
    svc = DashboardService(real_rec)
    assert svc.atlas is not None and len(svc.atlas.table) == 64
    assert svc.initial.name in (QUOTE_UNIT, COLUMN_UNIT)  # the planted units are the best explained
    rows, summary = svc.atlas_table(explained=["on"])
    assert {r["unit"] for r in rows} == {QUOTE_UNIT, COLUMN_UNIT} and "2 of 64 explained" in summary
    u, pos, line = svc.open_unit("best:quote")
    top = svc.atlas.entry(QUOTE_UNIT)["top_rows"][0]
    assert u.name == QUOTE_UNIT and pos == {"start": max(0, top - WINDOW // 4), "mark": [top, top + 1]}
    assert line.startswith("L1.c.3: on quote, held-out auc 1.000")
    from probe.analysis import concepts
    assert concepts.builtin("quote").labels(Recording.open(real_rec).text)[top] == 1  # its peak is inside a quote
    assert DashboardService(real_rec, atlas=None).atlas is None  # atlas=None: as before
    from dashboards.atlas_view import context_cells
    from dashboards.layout import atlas_entry_view
    cells = context_cells(svc.atlas_entry(QUOTE_UNIT))
    assert [c["row"] for c in cells] == svc.atlas.entry(QUOTE_UNIT)["top_rows"]
    first = cells[0]["chars"]
    i = [ch for ch, _ in first].index('"')  # the quote opens: the unit turns on (blue/white before, green inside)
    assert first[i - 2][1][2] > first[i - 2][1][1] and first[i + 1][1][1] > first[i + 1][1][2]
    view = atlas_entry_view(svc.atlas_entry(QUOTE_UNIT))
    assert len(view[1].children) == 5 and view[0].children == line


# ------------------------------------------------------------------ SAE features as units

SHA = "ab" * 32


@pytest.fixture(scope="module")
def sae_rec(tmp_path_factory):
    """(recording claiming weights SHA, an SAE folder on its L1.c with 64 features, k 4)."""
    import json
    from probe.names import Site
    from probe.sae.io import save_sae
    from probe.sae.model import TopKSAE
    d = tmp_path_factory.mktemp("sae")
    path = make_recording(d / "rec", synthetic_text(6000))
    meta = json.loads((path / "meta.json").read_text())
    meta["checkpoint"] = {"sha256": SHA}
    (path / "meta.json").write_text(json.dumps(meta))
    sae = save_sae(d / "sae-L1c", TopKSAE(16, 64, 4, seed=2), site=Site(1, "c"),
                   source={"weights_sha256": SHA, "cell": "lstm", "rnn_size": 16}, train_info={}, metrics=None)
    return path, Path(sae)


def test_features_are_picked_like_units(sae_rec):
    from dashboards.windows import decode_float16
    path, sae = sae_rec
    svc = DashboardService(path, sae=sae, unit="L1.c.f7")
    assert svc.initial == Unit(1, "c.f", 7) and svc.unit_kinds()[-1] == "c.f"
    w = svc.window(2000, 1, "c.f", None, 7)
    cols = w["cols"]
    assert 7 in cols and cols == sorted(cols) and w["n_units"] == 64 and w["H"] == len(cols)
    want = svc.frec.features(2000, 4000)  # the encoder on the recorded L1.c
    np.testing.assert_allclose(decode_float16(w["acts"], 2000, len(cols)), want[:, cols], rtol=2e-3, atol=2e-3)
    others = [j for j in range(64) if j not in cols]
    assert all(want[:, j].max() <= min(want[:, c].max() for c in cols if c != 7) for j in others)
    assert svc.unit_from_address("?unit=L1.c.f12")[0] == Unit(1, "c.f", 12)
    assert svc.card(1, "c.f", 7).unit == "L1.c.f7"
    for bad, msg in (("L1.c.f64", "no feature L1.c.f64: the SAE sae-L1c has features 0 to 63"),
                     ("L0.c.f1", "no unit L0.c.f1 here: the SAE sae-L1c gives features L1.c.f0..L1.c.f63")):
        with pytest.raises(ProbeError, match=msg):
            svc.open_unit(bad)
    with pytest.raises(ProbeError, match="clamping takes the model's own units; L1.c.f7 is a feature"):
        svc.clamp("x", 1, "c.f", 7, 1.0, 5, 0)
    with pytest.raises(ProbeError, match="start the dashboard with --sae"):
        DashboardService(path).open_unit("L1.c.f7")


def test_features_of_every_window_are_encoded_in_the_background(sae_rec):
    from probe.sae.features import open_features
    path, sae = sae_rec
    svc = DashboardService(path, sae=sae, unit="L1.c.f7")
    svc._warming.join(60)
    assert not svc._warming.is_alive() and svc.frec.cached_rows() == svc.rec.n_rows  # every row, no request made
    fresh = open_features(path, sae)
    np.testing.assert_array_equal(svc.frec.features(0, svc.rec.n_rows), fresh.features(0, fresh.rec.n_rows))
    from probe.sae.features import FeatureRecording
    from probe.sae.io import load_sae
    small = FeatureRecording(Recording.open(path), load_sae(sae), cache_bytes=1)  # no room: the warm-up encodes one block and stops, evicting none
    assert small.warm(0) == 1 and small.cached_rows() > 0


def test_a_feature_outside_the_window_fetches_a_new_one(sae_rec):
    from dashboards.app import create_app
    path, sae = sae_rec
    app = create_app(path, sae=sae, unit="L1.c.f7", window_rows=500)
    app.probe_service.feature_columns = 8  # of 64: some features are not in the window
    win = app.probe_service.window(0, 1, "c.f", None, 7)
    assert 8 <= len(win["cols"]) <= 9
    pos = {"start": 0, "mark": None, "cols": win["cols"]}
    inside = next(c for c in win["cols"] if c != 7)
    state = {"win-pos.data": pos}
    assert _post(app, "..win.data", {"layer.value": 1, "kind.value": "c.f", "unit-index.value": inside},
                 "unit-index.value", state) is None  # the browser has it: no new window
    assert _post(app, "..win.data", {"layer.value": 1, "kind.value": "c", "unit-index.value": 9999},
                 "unit-index.value", state) is None  # a unit of the model: never fetched
    missing = next(j for j in range(64) if j not in win["cols"])
    out = _post(app, "..win.data", {"layer.value": 1, "kind.value": "c.f", "unit-index.value": missing},
                "unit-index.value", state)
    assert missing in out["response"]["win"]["data"]["cols"] and out["response"]["win-pos"]["data"]["start"] == 0
    assert out["response"]["win-pos"]["data"]["cols"] == out["response"]["win"]["data"]["cols"]
    out = _post(app, "..win.data", {"layer.value": 1, "kind.value": "c.f", "unit-index.value": 64},
                "unit-index.value", state)
    assert "no feature L1.c.f64" in out["response"]["win-msg"]["children"]


def test_the_atlas_of_the_saes_features_joins_the_tab(sae_rec):
    from probe.analysis import concepts
    from probe.analysis.atlas import build_atlas, default_folder
    from probe.sae.features import open_features
    path, sae = sae_rec
    frec = open_features(path, sae)
    build_atlas(frec, candidates=[concepts.builtin("quote"), concepts.builtin("column")],
                n_perm=20).save(default_folder(frec))
    assert DashboardService(path).atlas is None  # the recording's own units have no atlas here
    svc = DashboardService(path, sae=sae)
    assert len(svc.atlas.table) == 64 and set(svc.atlas.table["kind"]) == {"c.f"}
    assert svc.initial.is_feature and svc.initial.name == svc.atlas.table["unit"].iloc[0]
    top = svc.atlas.entry(svc.initial.name)["top_rows"][0]
    assert svc.initial_pos["mark"] == [top, top + 1]
    rows, _ = svc.atlas_table(kind="c.f", layer=1)
    assert len(rows) == 64 and svc.atlas_sites() == ([1], ["c.f"])


def test_unit_and_feature_atlases_are_one_table():
    from dashboards.atlas_view import combined
    a = FakeAtlas(pd.DataFrame([dict(unit="L1.c.3", concept="quote", margin=0.3, layer=1, kind="c", explained=True)]))
    b = FakeAtlas(pd.DataFrame([dict(unit="L1.c.f7", concept="quote", margin=0.4, layer=1, kind="c.f",
                                     explained=True)]))
    both = combined([None, a, b])
    assert list(both.table["unit"]) == ["L1.c.f7", "L1.c.3"] and both.best_unit("quote") == "L1.c.f7"
    assert both.entry("L1.c.3")["margin"] == 0.3 and both.entry("L0.h.1") is None
    assert combined([None, a]) is a and combined([None]) is None


def test_dashboard_command_sae_option(monkeypatch, capsys, tmp_path, rec_path):
    import dashboards.app
    from probe.cli.main import main
    calls = []
    monkeypatch.setattr(dashboards.app, "serve", lambda *a, **k: calls.append((a, k)) or 0)
    assert main(["dashboard", "rec", "--sae", "saes/x", "--unit", "L2.h.f3"]) == 0
    assert calls[0][1] == {"host": "127.0.0.1", "port": 8050, "unit": "L2.h.f3", "sae": "saes/x"}
    monkeypatch.undo()
    assert main(["dashboard", str(rec_path), "--sae", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probe dashboard: error: no such SAE folder") and err.count("\n") == 1


# ------------------------------------------------------------------ in a browser

def wait_unit(dash_duo, name: str) -> None:
    """Wait until the text view is coloured by the unit `name`."""
    from test_dashboard_browser import wait_js
    wait_js(dash_duo, "const v = document.getElementById('text-view');"
                      f"return v !== null && v.getAttribute('data-unit') === '{name}'")


@pytest.mark.browser
def test_atlas_tab_shows_and_a_click_colours_the_text(dash_duo, rec_path, atlas):
    from test_dashboard_browser import shot, wait_js
    from dashboards.app import create_app
    os.environ.setdefault("DASH_TEST_CHROMEPATH", "/usr/bin/chromium")
    dash_duo.start_server(create_app(rec_path, atlas=atlas))
    dash_duo.driver.set_window_size(1400, 1000)
    wait_unit(dash_duo, QUOTE_UNIT)
    r = quote_row(rec_path)
    start = r - WINDOW // 4
    assert wait_js(dash_duo, f"return document.querySelector('#text-view .mark[data-r=\"{r - start}\"]') !== null")
    assert dash_duo.find_element(f'#text-view [data-r="{r - start}"]').text == '"'  # the top context's peak
    assert dash_duo.find_element("#tabs .tab--selected").text == "Atlas"
    dash_duo.wait_for_text_to_equal('#atlas-table td[data-dash-column="unit"]', QUOTE_UNIT, timeout=20)
    assert "explained above chance" in dash_duo.find_element("#atlas-summary").text
    shot(dash_duo, "atlas")
    before = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('#text-view [data-r]')).slice(0, 300)"
        ".map(s => s.style.backgroundColor).join('|')")
    cells = dash_duo.find_elements('#atlas-table td[data-dash-column="unit"]')
    next(c for c in cells if c.text == COLUMN_UNIT).click()
    wait_unit(dash_duo, COLUMN_UNIT)
    dash_duo.wait_for_contains_text("#win-label", "rows 4,000", timeout=20)
    dash_duo.wait_for_contains_text("#atlas-entry", "L0.h.2: on column", timeout=20)
    after = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('#text-view [data-r]')).slice(0, 300)"
        ".map(s => s.style.backgroundColor).join('|')")
    assert after != before and dash_duo.find_element("#unit-name").text == COLUMN_UNIT
    assert dash_duo.driver.current_url.endswith(f"/?unit={COLUMN_UNIT}")  # the address names the unit shown
    shot(dash_duo, "atlas-click")
    dash_duo.find_element("#atlas-explained input").click()
    dash_duo.wait_for_contains_text("#atlas-summary", "3 of 64 units", timeout=20)
    assert len(dash_duo.find_elements('#atlas-table td[data-dash-column="unit"]')) == 3
    dash_duo.driver.get(dash_duo.server_url + "/?unit=L1.h.4")
    wait_unit(dash_duo, 'L1.h.4')
    assert not [e for e in dash_duo.get_logs() or [] if e.get("level") == "SEVERE"]


@pytest.mark.browser
def test_features_colour_the_text_and_missing_ones_are_fetched(dash_duo, sae_rec):
    from dashboards.app import create_app
    path, sae = sae_rec
    os.environ.setdefault("DASH_TEST_CHROMEPATH", "/usr/bin/chromium")
    app = create_app(path, sae=sae, unit="L1.c.f7", atlas=None)
    app.probe_service.feature_columns = 8
    dash_duo.start_server(app)
    wait_unit(dash_duo, "L1.c.f7")
    assert dash_duo.find_element("#unit-name").text == "L1.c.f7"
    cols = app.probe_service.window(0, 1, "c.f", None, 7)["cols"]
    missing = next(j for j in range(8, 64) if j not in cols)
    box = dash_duo.find_element("#unit-index")
    dash_duo.clear_input(box)
    box.send_keys(f"{missing}\n")
    wait_unit(dash_duo, f"L1.c.f{missing}")  # coloured once the server sent a window holding it
    values = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('#text-view [data-r]')).slice(0, 2000)"
        ".map(s => s.style.backgroundColor)")
    assert len(set(values)) > 1
    want = app.probe_service.frec.unit(f"L1.c.f{missing}", 0, 2000)
    assert (want > 0).any() and (want == 0).any()
