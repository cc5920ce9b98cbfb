"""Every dashboard callback answers hostile input with a clear message, never "internal error".

The fuzz test posts, for every server-side callback and every one of its
inputs and states, a list of hostile values (wrong types, None, huge and
negative integers, NaN, lone surrogates, megabyte strings) through Flask's test
client, with valid values in the other fields.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard_fixtures import QUOTE_UNIT, make_recording, synthetic_text  # noqa: E402

from dashboards.inputs import as_choices, as_float, as_int, as_text, clipped, shown  # noqa: E402
from probe.errors import ProbeError  # noqa: E402

HUGE = "x" * 1_000_000
HOSTILE = [None, "abc", 2 ** 70, True, "", 0, -1, -(2 ** 70), 2.5, 1e308, float("nan"), float("inf"),
           "\ud800", "a\udfffb", HUGE, [], [1, "h"], ["h"] * 1000, {}, {"start": "\ud800", "row_id": 2 ** 70},
           [[{"id": None}]]]

VALID = {  # a valid value for every input and state of every callback (cheap ones: the regex matches nothing)
    "win-prev.n_clicks": 1, "win-next.n_clicks": 1, "goto-btn.n_clicks": 1, "goto.n_submit": 1,
    "brush-matches.active_cell": {"row_id": "0", "row": 0, "column": 0}, "layer.value": 1, "kind.value": "c",
    "win-pos.data": {"start": 0, "mark": None}, "goto.value": 100,
    "brush-matches.data": [{"id": "0", "row": 10, "length": 5, "context": "x"}],
    "find-table.active_cell": {"row_id": QUOTE_UNIT}, "brush-units.active_cell": {"row_id": QUOTE_UNIT},
    "find-btn.n_clicks": 1, "regex.n_submit": 1, "concept.value": None, "regex.value": "QQQ",
    "regex-flags.value": "", "find-kinds.value": ["c"], "brush.data": {"start": 20, "stop": 26},
    "model-view.value": "training", "unit-index.value": 3,
    "live-run.n_clicks": 1, "live-input.value": "hello there", "live-win.data": None,
    "clamp-btn.n_clicks": 1, "clamp-value.value": 1.0, "clamp-length.value": 2, "clamp-seed.value": 0,
}
TRIGGER = {"win": "goto-btn.n_clicks", "live-win": "live-run.n_clicks", "clamp-out": "clamp-btn.n_clicks",
           "find-table": "find-btn.n_clicks"}  # the button that makes each callback use its states
TAB = {"card-body": "card", "model-body": "model"}  # the tab each lazy panel needs to compute


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_lstm):
    from dashboards.app import create_app
    rec = make_recording(tmp_path_factory.mktemp("fuzz") / "rec", synthetic_text(1500))
    return create_app(rec, tiny_lstm, window_rows=200)


def _fields(cb: dict) -> list[str]:
    return [f"{f['id']}.{f['property']}" for f in cb["inputs"] + cb["state"]]


def post(client, app, key: str, values: dict, changed: str):
    """One request to /_dash-update-component, as the browser sends it; the answer's JSON (None for 204)."""
    cb = app.callback_map[key]
    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1].split("@")[0]}
               for o in key.strip(".").split("...")]
    body = {"output": key, "outputs": outputs,
            "inputs": [dict(i, value=values.get(f"{i['id']}.{i['property']}")) for i in cb["inputs"]],
            "state": [dict(s, value=values.get(f"{s['id']}.{s['property']}")) for s in cb["state"]],
            "changedPropIds": [changed]}
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code in (200, 204), (key, changed, r.status_code, r.data[:300])
    assert b"internal error" not in r.data and b"Traceback" not in r.data, (key, changed, r.data[:500])
    return r.get_json() if r.status_code == 200 else None


def messages(answer: dict | None) -> list[str]:
    """The values of the answer's message outputs (ids ending in -msg)."""
    if answer is None:
        return []
    return [props["children"] for oid, props in answer["response"].items() if oid.endswith("-msg")]


def callback(app, output: str) -> str:
    return next(k for k in app.callback_map if k.startswith(f"..{output}"))


def test_every_callback_input_survives_hostile_values(app, caplog):
    client = app.server.test_client()
    keys = [k for k in app.callback_map if app.callback_map[k].get("callback") is not None]
    assert len(keys) >= 8
    answered, failures = 0, []
    with caplog.at_level(logging.INFO):
        for key in keys:
            cb = app.callback_map[key]
            base = dict(VALID)
            for out, tab in TAB.items():
                if key.startswith(f"..{out}."):
                    base["tabs.value"] = tab
            inputs = [f"{i['id']}.{i['property']}" for i in cb["inputs"]]
            trigger = next((t for t in TRIGGER.values() if t in inputs), inputs[0])
            for field in _fields(cb):
                changed = field if field in inputs else trigger  # a state is read when its button is pressed
                clicks = field.endswith((".n_clicks", ".n_submit"))  # only counted: a few values suffice
                for bad in HOSTILE[:4] if clicks else HOSTILE:
                    try:
                        answer = post(client, app, key, dict(base, **{field: bad}), changed)
                        for m in messages(answer):
                            assert m is None or (isinstance(m, str) and "\n" not in m and len(m) <= 600), m
                    except AssertionError as e:
                        failures.append((key.split("...")[0], field, changed, shown(bad), str(e)[:300]))
                    answered += 1
    assert not failures, "\n".join(map(str, failures[:20]))
    assert answered > 500
    assert max((len(r.getMessage()) for r in caplog.records), default=0) < 5000  # no value logged whole


@pytest.mark.parametrize("output,field,value,message", [
    ("find-table", "find-kinds.value", 5, "kinds must be a list"),
    ("find-table", "find-kinds.value", ["c", 3], "kinds must be one of"),
    ("find-table", "regex.value", HUGE, "regular expression is limited to 10,000 characters (got 1,000,000)"),
    ("find-table", "regex.value", "a\ud800", "regular expression holds a lone surrogate (U+D800) at character 1"),
    ("live-win", "live-input.value", "caf\udce9", "live text holds a lone surrogate (U+DCE9) at character 3"),
    ("live-win", "layer.value", 2 ** 70, "layer must be between -9,007,199,254,740,992 and"),
    ("clamp-out", "live-input.value", "\udfff", "prime text holds a lone surrogate"),
    ("clamp-out", "clamp-seed.value", 2 ** 64,
     "seed must be between 0 and 9,223,372,036,854,775,807, not 18446744073709551616"),
    ("clamp-out", "clamp-seed.value", -1, "seed must be between 0 and"),
    ("clamp-out", "clamp-seed.value", 0.5, "seed must be a whole number, not 0.5"),
    ("clamp-out", "clamp-value.value", float("nan"), "clamp value must be a number between -10000 and 10000"),
    ("clamp-out", "clamp-value.value", [1.0], "clamp value must be a number, not [1.0]"),
    ("clamp-out", "clamp-length.value", -5, "length must be between 1 and 2,000, not -5"),
    ("clamp-out", "unit-index.value", "9" * 30, "unit index must be a whole number, not '999"),
    ("win", "goto.value", float("inf"), "row must be a whole number, not inf"),
    ("win", "kind.value", {"k": 1}, "kind must be one of h, c, i, f, g, o, not {'k': 1}"),
    ("brush-units", "brush.data", {"start": 2 ** 80, "stop": 3}, "selection start must be between 0 and"),
    ("layer", "find-table.active_cell", {"row_id": HUGE}, "unit name is limited to 40 characters"),
])
def test_hostile_values_get_a_message_naming_the_field(app, output, field, value, message):
    key = callback(app, output)
    cb = app.callback_map[key]
    trigger = TRIGGER.get(output, f"{cb['inputs'][0]['id']}.{cb['inputs'][0]['property']}")
    answer = post(app.server.test_client(), app, key, dict(VALID, **{field: value}), trigger)
    assert any(message in (m or "") for m in messages(answer)), messages(answer)


def test_valid_values_compute(app):
    c = app.server.test_client()
    out = post(c, app, callback(app, "clamp-out"), VALID, "clamp-btn.n_clicks")
    assert out["response"]["clamp-msg"]["children"] == "" and "clamped to 1:" in str(out["response"]["clamp-out"])
    out = post(c, app, callback(app, "live-win"), VALID, "live-run.n_clicks")
    assert "".join(out["response"]["live-win"]["data"]["chars"]) == "hello there"
    out = post(c, app, callback(app, "find-table"), dict(VALID, **{"find-kinds.value": None, "regex.value": '"[^"]*"'}),
               "find-btn.n_clicks")
    assert out["response"]["find-table"]["data"][0]["unit"] == QUOTE_UNIT


def test_a_bug_is_logged_clipped_with_its_stack(app, caplog, monkeypatch):
    svc = app.probe_service

    def broken(*args):
        raise RuntimeError("boom " + HUGE)
    monkeypatch.setattr(svc, "find", broken)
    with caplog.at_level(logging.ERROR, logger="probe.dashboard"):
        out = post_raw(app, callback(app, "find-table"), VALID, "find-btn.n_clicks")
    msg = out["response"]["find-msg"]["children"]
    assert msg.startswith("internal error (RuntimeError): boom xxx") and len(msg) < 300
    (record,) = [r for r in caplog.records if r.name == "probe.dashboard"]
    text = record.getMessage()
    assert "callback find failed: RuntimeError: boom" in text and "(1,000,005 characters)" in text
    assert "in broken" in text and len(text) < 5000  # the stack is there, the value is not


def post_raw(app, key, values, changed):
    """As post(), without the check that the answer is free of "internal error"."""
    cb = app.callback_map[key]
    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1].split("@")[0]} for o in key.strip(".").split("...")]
    body = {"output": key, "outputs": outputs,
            "inputs": [dict(i, value=values.get(f"{i['id']}.{i['property']}")) for i in cb["inputs"]],
            "state": [dict(s, value=values.get(f"{s['id']}.{s['property']}")) for s in cb["state"]],
            "changedPropIds": [changed]}
    r = app.server.test_client().post("/_dash-update-component", json=body)
    assert r.status_code == 200
    return r.get_json()


def test_malformed_request_is_400_and_logged_clipped(app, caplog):
    with caplog.at_level(logging.WARNING, logger="probe.dashboard"):
        r = app.server.test_client().post("/_dash-update-component", json={"output": "y" * 500_000})
    assert r.status_code == 400 and len(r.data) < 300
    assert caplog.records and all(len(rec.getMessage()) < 1000 for rec in caplog.records)


# ------------------------------------------------------------------ the checks themselves

def test_field_checks():
    assert as_int("12", "x") == 12 and as_int(3.0, "x", 0, 5) == 3
    for bad, msg in ((2 ** 70, "between"), (float("nan"), "whole number"), ("1" * 25, "whole number"),
                     (None, "type a whole number"), (6, "between 0 and 5")):
        with pytest.raises(ProbeError, match=msg):
            as_int(bad, "x", 0, 5)
    assert as_float("2.5", "v", -3, 3) == 2.5
    for bad in (float("inf"), "nan", 1e9, [1], True):
        with pytest.raises(ProbeError, match="v must be a number"):
            as_float(bad, "v", -3, 3)
    assert as_text(None, "t", 5, required=False) == "" and as_text("abc", "t", 5) == "abc"
    with pytest.raises(ProbeError, match="U\\+D83D"):
        as_text("ok \ud83d", "t", 50)
    assert as_text("ok \U0001F600", "t", 50) == "ok \U0001F600"  # a real astral character is fine
    assert as_choices(["h", "c", "h"], "kinds", ["h", "c"]) == ["h", "c"] and as_choices(None, "kinds", ["h"]) == []


def test_values_are_shown_clipped():
    assert shown(10 ** 5000) == "an integer of 16610 bits"  # repr would raise past 4300 digits
    assert len(shown(HUGE)) == 40 and shown("\ud800") == "'\\ud800'"
    assert clipped("a\nb") == "a\\nb" and clipped("z" * 1000).endswith("(1,000 characters)")
    assert clipped("\udc80") == "\\udc80"
