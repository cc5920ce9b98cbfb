"""The dashboard in a real headless Chromium (dash_duo): run with `pytest --headless -m browser`."""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard_fixtures import COLUMN_UNIT, QUOTE_UNIT, make_recording, synthetic_text

os.environ.setdefault("DASH_TEST_CHROMEPATH", "/usr/bin/chromium")
pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
WAIT = 20  # seconds: the CI machine has 2 busy cores


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    return make_recording(tmp_path_factory.mktemp("dash") / "rec", synthetic_text(6000))


def shot(dash_duo, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    dash_duo.driver.save_screenshot(str(ARTIFACTS / f"dashboard-{name}.png"))


def wait_js(dash_duo, script: str, timeout: float = WAIT):
    """Poll a JS expression until it is truthy; returns its value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = dash_duo.driver.execute_script(script)
        if v:
            return v
        dash_duo.driver.execute_script("return new Promise(r => setTimeout(r, 50))")
    raise AssertionError(f"timed out waiting for: {script}")


def rgb(s: str) -> tuple[int, int, int]:
    return tuple(int(x) for x in re.findall(r"\d+", s)[:3])


def start(dash_duo, recording, **kw):
    from dashboards.app import create_app
    app = create_app(recording, **kw)
    dash_duo.start_server(app)
    dash_duo.driver.set_window_size(1400, 1100)
    wait_js(dash_duo, "return document.querySelectorAll('#text-view [data-r]').length > 100")
    return app


def test_page_loads_and_unit_colors_follow_the_recording(dash_duo, recording):
    from dashboards.windows import activation_rgb, color_ranges
    from probe.record.recording import Recording
    app = start(dash_duo, recording)
    rec = Recording.open(recording)
    n_spans = dash_duo.driver.execute_script("return document.querySelectorAll('#text-view [data-r]').length")
    assert n_spans == 2000
    assert dash_duo.find_element("#text-view").text.startswith(rec.text[:20].split("\n")[0])
    # pick the planted quote unit: layer 1, kind c, index 3
    dash_duo.select_dcc_dropdown("#layer", "L1")
    dash_duo.select_dcc_dropdown("#kind", "c")
    box = dash_duo.find_element("#unit-index")
    dash_duo.clear_input(box)
    box.send_keys("3\n")
    wait_js(dash_duo, f"return document.getElementById('text-view').getAttribute('data-unit') === '{QUOTE_UNIT}'")
    assert dash_duo.find_element("#unit-name").text == QUOTE_UNIT
    acts = rec.get(1, "c", 0, 2000)
    lo, hi = color_ranges(acts)
    rows = [rec.text.index('"'), rec.text.index('"') - 2, 10, 500]
    got = dash_duo.driver.execute_script(
        "return arguments[0].map(r => getComputedStyle(document.querySelector("
        "'#text-view [data-r=\"' + r + '\"]')).backgroundColor)", rows)
    for r, g in zip(rows, got):
        want = activation_rgb(float(acts[r, 3]), lo[3], hi[3])
        assert max(abs(a - b) for a, b in zip(rgb(g), want)) <= 4, (r, g, want)
    assert rgb(got[0]) != rgb(got[1])  # inside vs outside the quote
    shot(dash_duo, "unit")



@pytest.fixture(scope="module")
def wide_recording(tmp_path_factory) -> Path:
    """512 units per layer, like a real model: the switch-time test runs on a full 2,000-character window."""
    return make_recording(tmp_path_factory.mktemp("dash") / "wide", synthetic_text(4000, seed=1), hidden=512,
                          kinds=("h", "c"))


SWITCH = """
const done = arguments[arguments.length - 1];
const view = document.getElementById('text-view');
const before = view.getAttribute('data-unit');
const t0 = performance.now();
document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', bubbles: true}));
function poll() {
  if (view.getAttribute('data-unit') !== before) {
    requestAnimationFrame(() => requestAnimationFrame(() => done([performance.now() - t0,
        parseFloat(view.getAttribute('data-recolor-ms')), view.getAttribute('data-unit')])));
  } else if (performance.now() - t0 > 5000) { done([null, null, before]); } else { setTimeout(poll, 1); }
}
poll();
"""


def test_unit_switch_time_on_a_2000_char_window(dash_duo, wide_recording):
    start(dash_duo, wide_recording)
    assert dash_duo.driver.execute_script("return document.querySelectorAll('#text-view [data-r]').length") == 2000
    dash_duo.driver.set_script_timeout(10)
    dash_duo.find_element("body").click()
    totals, recolors, units = [], [], []
    for _ in range(12):
        total, recolor, unit = dash_duo.driver.execute_async_script(SWITCH)
        assert total is not None, "the unit did not change after the key press"
        totals.append(total), recolors.append(recolor), units.append(unit)
    assert units[:3] == ["L1.c.1", "L1.c.2", "L1.c.3"]
    med = sorted(totals)[len(totals) // 2]
    print(f"\nunit switch on a 2,000-character window, 512 units: key press to painted colors "
          f"median {med:.1f} ms, max {max(totals):.1f} ms; recoloring alone median "
          f"{sorted(recolors)[len(recolors) // 2]:.2f} ms")
    shot(dash_duo, "switch")
    assert med <= 300


def test_hover_shows_topk_and_loss_and_topk_rows(dash_duo, recording):
    from selenium.webdriver.common.action_chains import ActionChains
    from probe.record.recording import Recording
    start(dash_duo, recording)
    rec = Recording.open(recording)
    span = dash_duo.find_element('#text-view [data-r="12"]')
    ActionChains(dash_duo.driver).move_to_element(span).perform()
    tip = wait_js(dash_duo, "const t = document.getElementById('probe-tip');"
                            "return t && t.style.display === 'block' && t.innerText")
    guesses = rec.topk(12, 13)[0]
    assert "row 12" in tip and "loss 1.000 bits" in tip
    assert f"{guesses[0][0]!r}".strip("'") in tip and "50.0%" in tip and "20.0%" in tip
    shot(dash_duo, "hover")
    dash_duo.find_element("#topk input").click()
    n = wait_js(dash_duo, "return document.querySelectorAll('#text-view .tk').length")
    assert n == 5 * 2000
    shot(dash_duo, "topk-rows")


def test_brush_lists_units_and_other_places(dash_duo, recording):
    from selenium.webdriver.common.action_chains import ActionChains
    from probe.record.recording import Recording
    start(dash_duo, recording)
    text = Recording.open(recording).text
    a = text.index('"')
    b = text.index('"', a + 1)
    first = dash_duo.find_element(f'#text-view [data-r="{a}"]')
    after = dash_duo.find_element(f'#text-view [data-r="{b + 1}"]')
    ActionChains(dash_duo.driver).click_and_hold(first).move_to_element(after).release().perform()
    dash_duo.wait_for_contains_text("#brush-summary", f"rows {a}:", timeout=WAIT)
    stop = int(re.search(r"rows \d+:(\d+)", dash_duo.find_element("#brush-summary").text).group(1))
    assert stop in (b + 1, b + 2)  # the drag ends in the middle of the character after the quote
    dash_duo.wait_for_text_to_equal('#brush-units td[data-dash-column="unit"]', QUOTE_UNIT, timeout=WAIT)
    assert "other places" in dash_duo.find_element("#brush-summary").text
    n_places = len(dash_duo.find_elements('#brush-matches td[data-dash-column="context"]'))
    assert n_places >= 5
    shot(dash_duo, "brush")
    dash_duo.find_element('#brush-units td[data-dash-column="unit"]').click()
    wait_js(dash_duo, f"return document.getElementById('text-view').getAttribute('data-unit') === '{QUOTE_UNIT}'")
    dash_duo.find_element('#brush-matches td[data-dash-column="context"]').click()
    assert wait_js(dash_duo, "return document.querySelectorAll('#text-view .mark').length") >= 2


def test_regex_search_lists_units_and_bad_patterns_give_messages(dash_duo, recording):
    start(dash_duo, recording)
    box = dash_duo.find_element("#regex")
    box.send_keys('"[^"\\n]*"')
    dash_duo.find_element("#find-btn").click()
    dash_duo.wait_for_text_to_equal('#find-table td[data-dash-column="unit"]', QUOTE_UNIT, timeout=WAIT)
    assert "held-out" in dash_duo.find_element("#find-summary").text
    shot(dash_duo, "find")
    dash_duo.find_element('#find-table td[data-dash-column="unit"]').click()
    wait_js(dash_duo, f"return document.getElementById('text-view').getAttribute('data-unit') === '{QUOTE_UNIT}'")
    dash_duo.clear_input(box)
    box.send_keys("(")
    dash_duo.find_element("#find-btn").click()
    dash_duo.wait_for_contains_text("#find-msg", "invalid regular expression", timeout=WAIT)
    dash_duo.clear_input(box)
    box.send_keys("(.|..)+$")  # exponential backtracking on every line
    t0 = time.monotonic()
    dash_duo.find_element("#find-btn").click()
    dash_duo.wait_for_contains_text("#find-msg", "too slow", timeout=WAIT)
    print(f"\ncatastrophic regex answered 'too slow' after {time.monotonic() - t0:.2f} s")
    dash_duo.find_element("#win-next").click()  # the server still answers
    dash_duo.wait_for_contains_text("#win-label", "rows 2,000", timeout=WAIT)
    shot(dash_duo, "too-slow")


def test_invalid_unit_and_window_give_messages(dash_duo, recording):
    start(dash_duo, recording)
    box = dash_duo.find_element("#unit-index")
    dash_duo.clear_input(box)
    box.send_keys("999\n")
    dash_duo.wait_for_contains_text("#unit-msg", "units of this layer run from 0 to 15", timeout=WAIT)
    goto = dash_duo.find_element("#goto")
    goto.send_keys("99999999\n")
    dash_duo.wait_for_contains_text("#win-msg", "outside the text", timeout=WAIT)
    shot(dash_duo, "invalid")
    assert not [e for e in dash_duo.get_logs() or [] if "500" in e.get("message", "")]


def test_live_text_and_clamped_generation(dash_duo, recording, tiny_lstm):
    start(dash_duo, recording, checkpoint=tiny_lstm)
    dash_duo.find_element("#tabs").find_elements("css selector", ".tab")[4].click()
    area = dash_duo.find_element("#live-input")
    text = "To be, or not to be:\nthat is the question."
    area.send_keys(text)
    dash_duo.find_element("#live-run").click()
    n = wait_js(dash_duo, "return document.querySelectorAll('#live-view [data-r]').length")
    assert n == len(text)
    colors = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('#live-view [data-r]')).map(s => s.style.backgroundColor)")
    assert all(c.startswith("rgb") for c in colors) and len(set(colors)) > 3
    dash_duo.find_element("#clamp-btn").click()
    held = dash_duo.wait_for_element("#clamp-held", timeout=60)
    assert len(held.text) > 20
    shot(dash_duo, "live")


def test_neuron_card_and_model_views_load_when_their_tab_opens(dash_duo, recording):
    start(dash_duo, recording)
    assert dash_duo.find_element("#card-body").text == ""  # nothing computed before the tab opens
    tabs = dash_duo.find_element("#tabs").find_elements("css selector", ".tab")
    tabs[2].click()
    dash_duo.wait_for_contains_text("#card-body", "top activations", timeout=WAIT)
    assert len(dash_duo.find_elements("#card-top > div")) == 20
    shot(dash_duo, "card")
    assert dash_duo.find_element("#model-body").text == ""
    tabs[3].click()
    dash_duo.wait_for_contains_text("#model-msg", "--checkpoint", timeout=WAIT)  # training views need a model
    dash_duo.find_element("#model-view").find_elements("css selector", "input")[2].click()  # gate saturation
    dash_duo.wait_for_element("#model-body .js-plotly-plot", timeout=WAIT)
    shot(dash_duo, "model-saturation")
