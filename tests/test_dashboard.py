"""The dashboard's logic without a browser: windows, safe regexes, brushing, clamping, and callback error paths."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard_fixtures import COLUMN_UNIT, QUOTE_UNIT, make_recording, post_callback, synthetic_text  # noqa: E402

from probe.analysis import safe_regex  # noqa: E402
from probe.analysis.hypothesis import brush  # noqa: E402
from dashboards.service import DashboardService  # noqa: E402
from dashboards.windows import (as_int, activation_rgb, color_ranges, decode_float16, interpolate,  # noqa: E402
                                window_payload)
from probe.errors import ProbeError  # noqa: E402
from probe.figures.colors import ACTIVATION_SCALE, symmetric_range  # noqa: E402
from probe.record.recording import Recording  # noqa: E402


@pytest.fixture(scope="module")
def rec_path(tmp_path_factory) -> Path:
    return make_recording(tmp_path_factory.mktemp("dash") / "rec", synthetic_text(6000))


@pytest.fixture(scope="module")
def svc(rec_path) -> DashboardService:
    return DashboardService(rec_path, regex_timeout=1.0)


# ------------------------------------------------------------------ windows

def test_window_payload_holds_the_recorded_activations(rec_path):
    rec = Recording.open(rec_path)
    w = window_payload(rec, 2500, 1, "c", size=2000)
    assert (w["start"], w["stop"], w["H"], w["n_rows"]) == (2500, 4500, 16, 6000)
    assert "".join(w["chars"]) == rec.text[2500:4500]
    acts = decode_float16(w["acts"], 2000, 16)
    want = rec.get(1, "c", 2500, 4500)
    np.testing.assert_allclose(acts, want, rtol=2e-3, atol=1e-3)
    assert w["topk"][0][0] == [rec.text[2501], 0.5]
    assert w["loss"][0] == 1.0
    lo, hi = color_ranges(want)
    assert np.allclose(w["lo"], lo, atol=1e-5) and np.allclose(w["hi"], hi, atol=1e-5)


def test_last_window_is_short_and_the_nan_loss_becomes_null(rec_path):
    w = window_payload(Recording.open(rec_path), 5990, 0, "h", size=2000)
    assert w["stop"] == 6000 and len(w["chars"]) == 10 and w["loss"][-1] is None


def test_color_ranges_follow_the_report_figures():
    acts = np.array([[0.2, -3.0, 0.5, -150.0, 20.0], [0.9, 1.0, 0.0, -90.0, 35.0], [0.5, 2.0, 1.0, -20.0, 90.0]],
                    np.float32)
    lo, hi = color_ranges(acts)
    # gate-like [0, 1]; both signs: +-max|a|; one sign only: the values' own (min, max), as the report draws
    assert list(lo) == [0.0, -3.0, 0.0, -150.0, 20.0] and list(hi) == [1.0, 3.0, 1.0, -20.0, 90.0]
    assert [symmetric_range(acts[:, j]) for j in range(5)] == list(zip(lo, hi))
    assert activation_rgb(-3.0, -3.0, 3.0) == (0x21, 0x66, 0xAC)  # blue low
    assert activation_rgb(3.0, -3.0, 3.0) == (0x1A, 0x78, 0x37)   # green high
    assert activation_rgb(0.0, -3.0, 3.0) == (0xF7, 0xF7, 0xF7)
    assert interpolate(ACTIVATION_SCALE, 0.125) == (90, 150, 197)


@pytest.mark.parametrize("layer,kind,index,start,msg", [
    (5, "c", 0, 0, "layers L0..L1"),
    (0, "q", 0, 0, "kind must be one of"),
    (0, "h", 99, 0, None),
    ("x", "h", 0, 0, "whole number"),
    (0, "h", 0, 6000, "outside the text"),
    (0, "h", 0, -1, "outside the text"),
    (0, "h", 0, "abc", "whole number"),
    (0, "h", 0, None, "type a whole number"),
    (0, ["h"], 0, 0, "kind must be one of"),
])
def test_bad_window_and_unit_inputs_are_probe_errors(svc, layer, kind, index, start, msg):
    with pytest.raises(ProbeError) as e:
        svc.window(start, layer, kind) if msg != None else svc.unit(layer, kind, index)  # noqa: E711
    if msg:
        assert msg in str(e.value)


def test_as_int_accepts_numbers_and_refuses_the_rest():
    assert as_int(3, "x") == 3 and as_int(3.0, "x") == 3 and as_int(" 12 ", "x") == 12 and as_int("-4", "x") == -4
    for bad in (True, 2.5, float("nan"), "1e9", [1], {"a": 1}, "9" * 40):
        with pytest.raises(ProbeError):
            as_int(bad, "x")


def test_window_steps_stay_inside_the_text(svc):
    assert svc.step_window(0, -1) == 0 and svc.step_window(0, +1) == 2000 and svc.step_window(5000, +1) == 5999
    assert svc.centre_on(3000) == 2500
    with pytest.raises(ProbeError):
        svc.centre_on(6000)


# ------------------------------------------------------------------ regexes with a time limit

def test_regex_labels_match_re():
    text = synthetic_text(3000)
    labels, n, cut = safe_regex.regex_labels(r'"[^"\n]*"', text)
    want = np.zeros(len(text), bool)
    import re
    for m in re.finditer(r'"[^"\n]*"', text):
        want[m.start():m.end()] = True
    assert n > 10 and not cut and (labels == want).all()


def test_catastrophic_regex_is_stopped_within_about_a_second():
    t0 = time.thread_time()  # the limit counts the matching's CPU time (a busy machine stretches the wall time)
    with pytest.raises(ProbeError, match="too slow"):
        safe_regex.find_spans(r"(a|aa)+$", "a" * 60 + "b", timeout=1.0)
    assert time.thread_time() - t0 < 2.5


def test_regex_bounds_and_validation():
    spans, cut = safe_regex.find_spans("a", "a" * 100, max_matches=7)
    assert len(spans) == 7 and cut
    with pytest.raises(ProbeError, match="invalid regular expression"):
        safe_regex.find_spans("(", "abc")
    with pytest.raises(ProbeError, match="too long"):
        safe_regex.check_pattern("a" * 1000)
    with pytest.raises(ProbeError, match="flag"):
        safe_regex.check_pattern("a", "q")
    with pytest.raises(ProbeError):
        safe_regex.check_pattern(["a"])
    assert safe_regex.find_spans("É", "xÉÉx", "i")[0].tolist() == [[1, 2], [2, 3]]  # character offsets


def test_find_neurons_from_a_regex_ranks_the_planted_unit_first(svc):
    rows, summary = svc.find(None, r'"[^"\n]*"', "", ["h", "c"])
    assert rows[0]["unit"] == QUOTE_UNIT and rows[0]["id"] == QUOTE_UNIT and "held-out" in summary
    rows, _ = svc.find("column", "", "", ["h"])
    assert rows[0]["unit"] == COLUMN_UNIT
    assert all(v is None or isinstance(v, (int, float, str)) for v in rows[0].values())


@pytest.mark.parametrize("concept,pattern,msg", [
    (None, "(", "invalid regular expression"),
    (None, "zzzzqqq", "matches nothing"),
    (None, None, "type a regular expression or pick"),
    ("no-such-concept", None, "no built-in concept"),
    (None, "(.|..)+$", "too slow"),
])
def test_find_neurons_errors_are_messages(svc, concept, pattern, msg):
    with pytest.raises(ProbeError, match=msg):
        svc.find(concept, pattern, "", ["h"])


# ------------------------------------------------------------------ brush to hypothesis

def test_brushing_a_quote_finds_the_quote_unit_and_the_other_quotes(rec_path):
    rec = Recording.open(rec_path)
    a = rec.text.index('"')
    b = rec.text.index('"', a + 1) + 1
    res = brush(rec, a, b)
    assert res.units["unit"].iloc[0] == QUOTE_UNIT and res.units["sign"].iloc[0] == 1
    assert res.pattern_units == [QUOTE_UNIT]
    assert res.n_matches >= 20
    for m in res.matches:
        assert m["match"].startswith('"') or m["match"].endswith('"')
        assert not (m["start"] < b and m["stop"] > a)  # the brushed span itself is not listed


@pytest.mark.parametrize("data,msg", [
    ("garbage", "malformed selection"),
    ({"start": 10}, "whole number"),
    ({"start": 50, "stop": 40}, "empty or outside"),
    ({"start": 0, "stop": 10_000}, "outside"),
    ({"start": 0, "stop": 900}, "at most"),
    ({"start": "x", "stop": 3}, "whole number"),
])
def test_malformed_brush_is_a_message(svc, data, msg):
    with pytest.raises(ProbeError, match=msg):
        svc.brush(data)


# ------------------------------------------------------------------ clamping

def test_generation_without_clamp_matches_the_sampler(tiny_lstm):
    from dashboards.clamp import generate_clamped
    from probe.model import checkpoint
    from probe.record.recording import Unit
    from probe.model.sampling import sample_text
    ck = checkpoint.load(tiny_lstm)
    free = generate_clamped(ck.model, ck.vocab, "To be", 40, seed=3)
    assert free == sample_text(ck.model, ck.vocab, "To be", 40, seed=3)
    held = generate_clamped(ck.model, ck.vocab, "To be", 40, unit=Unit(1, "h", 0), value=50.0, seed=3)
    assert held != free and len(held) == 40
    with pytest.raises(ProbeError, match="gates"):
        generate_clamped(ck.model, ck.vocab, "x", 5, unit=Unit(0, "f", 0), value=1.0)
    with pytest.raises(ProbeError, match="no unit"):
        generate_clamped(ck.model, ck.vocab, "x", 5, unit=Unit(0, "h", 99), value=1.0)


def test_live_text_needs_a_model_and_bounds_its_input(rec_path, tiny_lstm):
    with pytest.raises(ProbeError, match="--checkpoint"):
        DashboardService(rec_path).live("hello", 0, "h")
    svc = DashboardService(rec_path, tiny_lstm)
    w = svc.live("hello there", 1, "c")
    assert w["H"] == 16 and "".join(w["chars"]) == "hello there" and len(w["topk"]) == 11
    for text, msg in (("", "type or paste"), ("x" * 30_000, "limited"), (None, "type or paste")):
        with pytest.raises(ProbeError, match=msg):
            svc.live(text, 0, "h")
    with pytest.raises(ProbeError):
        svc.live("hello", 0, "zz")
    free, held = svc.clamp("To be", 1, "c", 2, 5.0, 30, 0)
    assert len(free) == len(held) == 30
    with pytest.raises(ProbeError, match="clamp value"):
        svc.clamp("To be", 1, "c", 2, "lots", 30, 0)


# ------------------------------------------------------------------ callbacks over HTTP: messages, never a 500

def _post(client, app, output_start: str, inputs: dict, changed: str, state: dict | None = None):
    r = post_callback(client, app, output_start, inputs, changed, state)
    return r.get_json() if r.status_code == 200 else None


@pytest.fixture(scope="module")
def app(rec_path):
    from dashboards.app import create_app
    return create_app(rec_path)


@pytest.mark.parametrize("inputs,state,changed,msg", [
    ({"layer.value": 7, "kind.value": "c"}, {"win-pos.data": {"start": 0}}, "layer.value", "layers L0..L1"),
    ({"layer.value": 0, "kind.value": "c"}, {"win-pos.data": {"start": 10**9}}, "kind.value", "outside the text"),
    ({"layer.value": "zero", "kind.value": "c"}, {"win-pos.data": "junk"}, "layer.value", "whole number"),
    ({"goto-btn.n_clicks": 1, "layer.value": 0, "kind.value": "h"}, {"goto.value": -5}, "goto-btn.n_clicks",
     "outside the text"),
    ({"brush-matches.active_cell": {"row_id": "9"}, "layer.value": 0, "kind.value": "h"},
     {"brush-matches.data": [{"id": "1", "row": 3, "length": 2}]}, "brush-matches.active_cell", "no such place"),
])
def test_window_callback_errors_are_messages(app, inputs, state, changed, msg):
    out = _post(app.server.test_client(), app, "..win.data", inputs, changed, state)
    assert msg in out["response"]["win-msg"]["children"]
    assert "win" not in out["response"]


def test_window_callback_happy_path(app):
    out = _post(app.server.test_client(), app, "..win.data", {"win-next.n_clicks": 1, "layer.value": 1,
                                                                "kind.value": "c"},
                "win-next.n_clicks", {"win-pos.data": {"start": 0, "mark": None}})
    assert out["response"]["win"]["data"]["start"] == 2000 and out["response"]["win-msg"]["children"] == ""


def test_other_callbacks_turn_bad_input_into_messages(app):
    c = app.server.test_client()
    out = _post(c, app, "..find-table.data", {"find-btn.n_clicks": 1}, "find-btn.n_clicks",
                {"regex.value": "([a-", "find-kinds.value": ["h"]})
    assert "invalid regular expression" in out["response"]["find-msg"]["children"]
    out = _post(c, app, "..brush-units.data", {"brush.data": {"start": [1], "stop": 2}}, "brush.data")
    assert "whole number" in out["response"]["brush-msg"]["children"]
    out = _post(c, app, "..layer.value", {"find-table.active_cell": {"row_id": "L9.c.1"}},
                "find-table.active_cell")
    assert "no unit L9.c.1" in out["response"]["unit-msg"]["children"]
    out = _post(c, app, "..layer.value", {"find-table.active_cell": {"row_id": "../../etc/passwd"}},
                "find-table.active_cell")
    assert "bad unit name" in out["response"]["unit-msg"]["children"]
    out = _post(c, app, "..live-win.data", {"live-run.n_clicks": 1, "layer.value": 0, "kind.value": "h"},
                "live-run.n_clicks", {"live-input.value": "hello"})
    assert "--checkpoint" in out["response"]["live-msg"]["children"]
    out = _post(c, app, "..model-body.children", {"tabs.value": "model", "model-view.value": "nope"},
                "model-view.value")
    assert "no model view" in out["response"]["model-msg"]["children"]
    out = _post(c, app, "..card-body.children", {"tabs.value": "card", "layer.value": 0, "kind.value": "h",
                                                 "unit-index.value": 999}, "unit-index.value")
    assert "units run from 0 to 15" in out["response"]["card-msg"]["children"]


def test_malformed_requests_are_400_not_500(app):
    c = app.server.test_client()
    assert c.post("/_dash-update-component", data="garbage", content_type="application/json").status_code == 400
    assert c.post("/_dash-update-component", json={"output": "nothing.here"}).status_code == 400
    assert c.post("/_dash-update-component", json=[1, 2]).status_code == 400


def test_app_serves_the_page_and_binds_localhost_by_default():
    from probe.cli.main import build_parser
    args = build_parser().parse_args(["dashboard", "somewhere"])
    assert args.host == "127.0.0.1" and args.port == 8050 and args.checkpoint is None


def test_command_line_errors_are_one_line(tmp_path, capsys):
    from probe.cli.main import main
    assert main(["dashboard", str(tmp_path / "missing")]) == 2
    assert "no such recording" in capsys.readouterr().err
    from dashboards.app import main as app_main
    assert app_main([str(tmp_path / "missing")]) == 2


def test_neuron_card_and_model_views(svc):
    from dashboards.app import render_card
    card = svc.card(1, "c", 3)
    assert card.unit == QUOTE_UNIT and all('"' in c["left"][-12:] + c["char"] for c in card.top[:5])
    assert render_card(card) is not None
    sat = svc.model_view("saturation")
    assert len(sat.data) >= 4 and svc.model_view("saturation") is sat  # computed once, then cached
    fig = svc.model_view("embedding", "quote", 1, "c")
    assert len(fig.data) >= 1
    with pytest.raises(ProbeError, match="--checkpoint"):
        svc.model_view("training")


@pytest.mark.parametrize("fixture", ["tiny_lstm", "tiny_byte_lstm"])
def test_dashboard_on_real_recordings(request, tmp_path, fixture):
    from dashboards.app import render_card
    from probe.record.recorder import record
    run = request.getfixturevalue(fixture)
    text = "Hello \u00e9t\u00e9 {x} <b>&amp;\n" * 40 if fixture == "tiny_byte_lstm" else None
    rec = record(run, text=text, out=tmp_path / "rec", max_chars=3000)
    svc = DashboardService(rec.path, run)
    top = rec.num_layers - 1
    w = svc.window(0, top, "h")
    assert w["stop"] == min(rec.n_rows, 2000) and len(w["chars"]) == w["stop"]
    assert "".join(w["chars"]) == rec.text[:len("".join(w["chars"]))]  # byte rows: '' after a character's first byte
    np.testing.assert_allclose(decode_float16(w["acts"], len(w["chars"]), rec.hidden_size),
                               rec.get(top, "h", 0, w["stop"]), atol=2e-3)
    card = svc.card(top, "h", 0)
    assert len(card.promoted) == 10 and render_card(card) is not None
    units, matches, summary = svc.brush({"start": 20, "stop": 26})
    assert len(units) == 15 and "selection rows 20:26" in summary
    live = svc.live("caf\u00e9 au lait", 0, "c")
    assert "".join(live["chars"]) == "caf\u00e9 au lait"
    assert svc.model_view("training").layout.meta == {"figure": "training_curve"}
    assert len(svc.model_view("samples").layout.annotations) >= 1


# ------------------------------------------------------------------ brush to hypothesis as a library and a command

def _quote_span(rec) -> tuple[int, int]:
    a = rec.text.index('"')
    return a, rec.text.index('"', a + 1) + 1


def test_brush_is_a_library_function_with_a_plain_result(rec_path):
    import json
    rec = Recording.open(rec_path)
    a, b = _quote_span(rec)
    res = brush(str(rec_path), a, b, n_units=5)  # a folder works too
    assert res.text == rec.text[a:b] and res.margin == max(3, b - a)
    d = json.loads(json.dumps(res.to_dict()))
    assert [u["unit"] for u in d["units"]] == list(res.units["unit"]) and d["units"][0]["unit"] == QUOTE_UNIT
    assert d["n_matches"] == res.n_matches >= 20 and len(d["matches"]) == 20 and d["pattern_units"] == [QUOTE_UNIT]
    only = brush(rec, a, b, layers=[0], kinds=["h", "f"], pattern_units=0)
    assert set(only.units["unit"].str[:4]) <= {"L0.h", "L0.f"} and only.matches == [] and only.n_matches == 0
    assert len(brush(rec, a, b, max_matches=3).matches) == 3


@pytest.mark.parametrize("kw,msg", [
    (dict(start="x"), "start must be an integer"),
    (dict(start=-3), "start must be at least 0"),
    (dict(start=50, stop=40), "span 50:40 is empty"),
    (dict(stop=700), "at most 500 rows"),
    (dict(kinds="h"), "kinds must be a list"),
    (dict(kinds=["q"]), "kinds must be a non-empty list of h, c, i, f, g, o"),
    (dict(layers=[7]), "layers must be a non-empty list of 0, 1"),
    (dict(n_units=0), "n_units must be at least 1"),
    (dict(pattern_units=-1), "pattern_units must be at least 0"),
    (dict(max_matches=1.5), "max_matches must be an integer"),
    (dict(margin=0), "margin must be at least 1"),
])
def test_brush_parameters_are_checked_by_name(rec_path, kw, msg):
    rec = Recording.open(rec_path)
    args = dict(start=100, stop=110) | kw
    with pytest.raises(ProbeError, match=msg):
        brush(rec, args.pop("start"), args.pop("stop"), **args)


def test_hypothesis_command(rec_path, tmp_path, capsys):
    import json
    from probe.cli.main import main
    rec = Recording.open(rec_path)
    a, b = _quote_span(rec)
    out = tmp_path / "span.json"
    assert main(["hypothesis", str(rec_path), "--range", f"{a}:{b}", "--top", "4", "--kinds", "c,h",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[2].startswith(QUOTE_UNIT) and " on " in lines[2] and len([x for x in lines if x[:2] == "L1"
                                                                            or x[:2] == "L0"]) == 4
    assert f"the pattern of {QUOTE_UNIT} recurs at" in text and "row " in text
    doc = json.loads(out.read_text())
    assert doc == json.loads(json.dumps(brush(rec, a, b, n_units=4, kinds=["c", "h"]).to_dict()))
    for argv, msg in ((["--range", "5"], "--range must be START:STOP"), (["--range", "9:3"], "--range must be"),
                      (["--range", "0:10", "--top", "0"], "--top must be at least 1"),
                      (["--range", "0:10", "--matches", "-2"], "--matches must be at least 0"),
                      (["--range", "0:10", "--kinds", "q"], "--kinds must be a non-empty list"),
                      (["--range", "0:6000"], "at most 500 rows")):
        assert main(["hypothesis", str(rec_path), *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and err.startswith("probe hypothesis: error: ")
    assert not list(tmp_path.glob(".*"))  # nothing half-written beside the JSON


def test_dashboard_command_maps_its_options_to_serve(monkeypatch, capsys):
    import dashboards.app
    from probe.cli.main import main
    calls = []
    monkeypatch.setattr(dashboards.app, "serve", lambda *a, **k: calls.append((a, k)) or 0)
    assert main(["dashboard", "rec", "--host", "0.0.0.0", "--port", "9000"]) == 0
    assert calls == [(("rec", None), {"host": "0.0.0.0", "port": 9000})]
    assert main(["dashboard", "rec", "--port", "70000"]) == 2
    assert "--port must be between 1 and 65535" in capsys.readouterr().err
    monkeypatch.undo()
    with pytest.raises(ProbeError, match="^port must be between"):  # checked before the recording is opened
        dashboards.app.serve("rec", port=0)
