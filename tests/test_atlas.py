"""The atlas: planted units get the right candidate, noise gets none above chance (family-wise), exact scores,
files round-trip, bad input is one line, the page opens offline in Chromium."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_recordings import make_recording, noise_arrays  # noqa: E402

from probe.analysis.atlas import Atlas, atlas_for, build_atlas, default_folder, load_atlas  # noqa: E402
from probe.analysis.candidates import candidate_library, concept_labels  # noqa: E402
from probe.analysis.concepts import column  # noqa: E402
from probe.errors import ProbeError  # noqa: E402
from probe.record.recording import Recording  # noqa: E402

DIGIT_UNIT, COLUMN_UNIT = "L0.h.3", "L1.c.5"
WORDS = ["the", "river", "city", "of", "and", "a", "north", "church", "was", "built", "in", "by"]


def digit_text(n_lines: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n_lines):
        parts = [str(rng.integers(1, 2000)) if rng.random() < 0.15 else str(rng.choice(WORDS))
                 for _ in range(int(rng.integers(3, 9)))]
        lines.append(" ".join(parts) + ".")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """2 layers x 8 units x (h, c): L0.h.3 fires on digits, L1.c.5 counts the column, the rest is noise."""
    text = digit_text(500)
    n = len(text)
    rng = np.random.default_rng(1)
    arrays = noise_arrays(n, num_layers=2, hidden=8, seed=1, smooth=3)
    arrays["L0.h"][:, 3] = np.array([c.isdigit() for c in text], np.float32) + 0.3 * rng.standard_normal(n)
    arrays["L1.c"][:, 5] = 0.1 * column(text) + 0.3 * rng.standard_normal(n)
    meta = {"checkpoint": {"sha256": "w" * 64, "path": None}, "text": {"sha256": "t" * 64}}
    return make_recording(tmp_path_factory.mktemp("atlas") / "rec", text, arrays, hidden=8, extra_meta=meta)


@pytest.fixture(scope="module")
def atlas(planted) -> Atlas:
    return build_atlas(Recording.open(planted), n_perm=99, seed=0)


def test_planted_units_get_their_concept_and_noise_none(atlas):
    t = atlas.table.set_index("unit")
    assert t.loc[DIGIT_UNIT, "concept"] == "digit" and t.loc[DIGIT_UNIT, "metric"] == "auc"
    assert t.loc[COLUMN_UNIT, "concept"] == "column" and t.loc[COLUMN_UNIT, "metric"] == "r"
    for u in (DIGIT_UNIT, COLUMN_UNIT):
        assert t.loc[u, "explained"] and t.loc[u, "p_value"] == pytest.approx(0.01)
        assert t.loc[u, "score"] > t.loc[u, "chance"] and t.loc[u, "margin"] > 0.3
    noise = t.drop([DIGIT_UNIT, COLUMN_UNIT])
    assert len(noise) == 30 and not noise.explained.any()
    assert (noise.margin < 0).all() and (noise.p_value > 0.05).all()
    assert list(atlas.table.unit[:2]) == [COLUMN_UNIT, DIGIT_UNIT]  # sorted by margin (column's r beats AUC)
    assert atlas.best_unit() == COLUMN_UNIT and atlas.best_unit("digit") == DIGIT_UNIT
    cov = atlas.coverage.set_index(["layer", "kind"])
    assert cov.loc[(0, "h"), "n_explained"] == 1 and cov.loc[(1, "c"), "n_explained"] == 1
    assert cov.loc[(0, "c"), "n_explained"] == 0 and cov.n_units.sum() == 32
    s = atlas.summary()
    assert s["n_explained"] == 2 and s["weights_sha256"] == "w" * 64 and s["text_sha256"] == "t" * 64
    assert {c["name"] for c in s["candidates"]} >= {"digit", "column", "next:digit"}


def test_scores_are_exact_held_out_statistics(atlas, planted):
    from sklearn.metrics import roc_auc_score

    from probe.analysis.neurons import find_neurons
    rec = Recording.open(planted)
    lib = {c.name: c for c in candidate_library(rec.text)}
    a, b = atlas.meta["report_rows"]
    for r in atlas.table.head(12).itertuples():
        x = rec.unit(r.unit)[a:b]
        y = concept_labels(rec, lib[r.concept])[a:b]
        if r.metric == "auc":
            auc = roc_auc_score(y, x)
            assert r.score == pytest.approx(max(auc, 1 - auc), abs=1e-5)
            assert r.sign == (1 if auc >= 0.5 else -1)
        else:
            corr = np.corrcoef(x, y)[0, 1]
            assert r.score == pytest.approx(abs(corr), abs=1e-5)
            assert r.sign == np.sign(corr)
    t = atlas.table.set_index("unit")
    fn = find_neurons(rec, lib["column"], n_perm=20).table.set_index("unit")
    assert t.loc[COLUMN_UNIT, "score"] == pytest.approx(fn.loc[COLUMN_UNIT, "score"], abs=1e-5)
    fn = find_neurons(rec, lib["digit"], n_perm=20).table.set_index("unit")
    assert t.loc[DIGIT_UNIT, "score"] == pytest.approx(fn.loc[DIGIT_UNIT, "score"], abs=2e-3)  # its AUC: histograms
    top = t.loc[DIGIT_UNIT, "top_rows"]
    assert len(top) == 5 and all(rec.text[r].isdigit() for r in top)
    assert t.loc[DIGIT_UNIT, "act_max"] == pytest.approx(float(rec.unit(DIGIT_UNIT).max()))


def test_family_wise_level_on_noise_units(tmp_path):
    """20 recordings of 200 smooth noise units: at alpha 0.05 at most a few have any label (expected 1)."""
    text = digit_text(150, seed=3)
    lib = candidate_library(text)
    any_false, n_false, min_p = 0, 0, []
    for seed in range(20):
        arrays = noise_arrays(len(text), num_layers=1, hidden=200, kinds=("h",), seed=100 + seed, smooth=4)
        path = make_recording(tmp_path / f"noise{seed}", text, arrays, num_layers=1, hidden=200)
        at = build_atlas(Recording.open(path), candidates=lib, n_perm=99, seed=seed, n_contexts=0)
        assert at.contexts == {} and not any(at.table.top_rows)
        n_false += int(at.table.explained.sum())
        any_false += bool(at.table.explained.any())
        min_p.append(float(at.table.p_value.min()))
    assert any_false <= 3, (any_false, min_p)
    assert n_false / (20 * 200) <= 0.05
    assert sum(p < 0.5 for p in min_p) >= 4, min_p  # not a null that never comes near: p-values spread out


def test_scores_are_held_out(tmp_path):
    """A unit that fires on digits only in the select part is not explained by them: its score is the report
    part's; the same unit firing in both parts is."""
    text = digit_text(300, seed=5)
    n = len(text)
    dig = np.array([c.isdigit() for c in text], np.float32)
    arrays = noise_arrays(n, num_layers=1, hidden=8, kinds=("h",), seed=7)
    arrays["L0.h"][: n // 2, 0] += 3 * dig[: n // 2]
    arrays["L0.h"][:, 1] += 3 * dig
    at = build_atlas(Recording.open(make_recording(tmp_path / "r", text, arrays, num_layers=1)), n_perm=39)
    t = at.table.set_index("unit")
    # kept on the select part (strong there), scored on the report part, where it is noise: no label
    assert t.loc["L0.h.0", "select_score"] > 0.9 and t.loc["L0.h.0", "score"] < 0.7
    assert not t.loc["L0.h.0", "explained"] and t.loc["L0.h.0", "p_value"] > 0.05
    assert t.loc["L0.h.1", "concept"] == "digit" and t.loc["L0.h.1", "explained"]


def test_save_load_round_trip_and_atlas_for(atlas, planted, tmp_path):
    rec = Recording.open(planted)
    out = atlas.save(default_folder(rec))
    assert out == planted / "atlas"
    assert sorted(os.listdir(out)) == ["atlas.csv", "atlas.json", "contexts.json", "index.html"]
    back = load_atlas(out)
    cols = ["unit", "concept", "metric", "explained", "second_concept"]
    assert back.table[cols].equals(atlas.table[cols])
    assert np.allclose(back.table.score, atlas.table.score) and np.allclose(back.table.p_value, atlas.table.p_value)
    assert back.table.top_rows.tolist() == atlas.table.top_rows.tolist()
    assert back.coverage.equals(atlas.coverage)
    e = back.entry(DIGIT_UNIT)
    assert e["concept"] == "digit" and len(e["contexts"]) == 5 and e["contexts"][0]["row"] == e["top_rows"][0]
    assert back.entry("L9.h.0") is None
    assert atlas_for(rec).table.unit.tolist() == atlas.table.unit.tolist()
    doc = json.loads((out / "atlas.json").read_text())
    assert doc["summary"]["n_units"] == 32 and len(doc["units"]) == 32
    doc["summary"]["weights_sha256"] = "x" * 64  # made from other weights: not this recording's
    (out / "atlas.json").write_text(json.dumps(doc))
    assert atlas_for(rec) is None
    csv = (out / "atlas.csv").read_text().splitlines()
    assert csv[0].startswith("unit,layer,kind,index,concept") and len(csv) == 33


def test_bad_input_is_one_line(planted, tmp_path):
    from probe.checks import ParamError
    rec = Recording.open(planted)
    with pytest.raises(ProbeError, match="no 'x' units"):
        build_atlas(rec, kinds=["x"])
    with pytest.raises(ProbeError, match="no layer 5"):
        build_atlas(rec, layers=[5])
    with pytest.raises(ParamError, match="at least 19"):
        build_atlas(rec, n_perm=5)
    tiny = make_recording(tmp_path / "tiny", "ab\n", {"L0.h": np.zeros((3, 8))}, num_layers=1)
    with pytest.raises(ProbeError, match="too few|varies"):
        build_atlas(Recording.open(tiny))
    with pytest.raises(ProbeError, match="no atlas"):
        load_atlas(tmp_path)
    (tmp_path / "atlas.json").write_text("{oops")
    with pytest.raises(ProbeError, match="not valid JSON"):
        load_atlas(tmp_path)


def test_cli_atlas_and_neuron_entry(planted, tmp_path, capsys):
    from probe.cli.main import main
    out = tmp_path / "at"
    assert main(["atlas", str(planted), "--out", str(out), "--n-perm", "99", "--json", "-", "--top", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["n_explained"] == 2 and (out / "index.html").exists()
    assert main(["atlas", str(planted), "--out", str(out), "--n-perm", "99", "--kinds", "h", "--layers", "0"]) == 0
    text = capsys.readouterr().out
    assert "coverage" in text and DIGIT_UNIT in text and "digit" in text and COLUMN_UNIT not in text
    assert main(["atlas", str(planted), "--kinds", "q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no 'q' units" in err
    Recording.open(planted)  # the default folder: the neuron card shows the unit's entry
    assert main(["atlas", str(planted), "--n-perm", "99"]) == 0
    capsys.readouterr()
    assert main(["neuron", str(planted), DIGIT_UNIT, "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert "atlas: digit" in text and "explained" in text


def test_page_size_is_bounded_for_a_large_atlas():
    """3,072 units with 5 contexts of 40 characters each: the page stays far below 5 MB."""
    import pandas as pd

    from probe.analysis.atlas_page import atlas_page
    rng = np.random.default_rng(0)
    n = 3072
    table = pd.DataFrame({"unit": [f"L{i // 1024}.{'hc'[(i // 512) % 2]}.{i % 512}" for i in range(n)],
                          "layer": [i // 1024 for i in range(n)], "kind": ["hc"[(i // 512) % 2] for i in range(n)],
                          "concept": "in [[\u2026]]", "metric": "auc", "score": rng.random(n), "chance": 0.6,
                          "p_value": rng.random(n), "explained": rng.random(n) < 0.5, "margin": rng.random(n),
                          "second_concept": "digit", "act_min": -1.0, "act_max": 1.0, "sign": 1})
    from probe.analysis.atlas_page import levels
    ctx = {u: [{"row": 100 + k, "start": 68 + k, "text": "the caf\u00e9 [[city]] of north church, was built in"[:40],
                "levels": levels(rng.standard_normal(40), -3, 3), "activation": 1.0, "peak": 32} for k in range(5)]
           for u in table.unit}
    page = atlas_page(Atlas(table=table, coverage=pd.DataFrame(columns=["layer", "kind", "n_units", "n_explained",
                                                                         "fraction"]), meta={}, contexts=ctx))
    assert 300_000 < len(page.encode()) < 2_000_000
    assert page.count("L2.c.511") == 1 and "\u00e9" in page


@pytest.mark.browser
def test_page_opens_offline_in_chromium_without_console_errors(atlas, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    out = atlas.save(tmp_path / "page")
    opts = Options()
    opts.binary_location = os.environ.get("DASH_TEST_CHROMEPATH", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get((out / "index.html").as_uri())
        rows = driver.execute_script("return Array.from(document.querySelectorAll('#atlas-body tr'))"
                                     ".map(r => r.dataset.unit)")
        assert rows[:2] == [COLUMN_UNIT, DIGIT_UNIT] and len(rows) == 32
        spans = driver.execute_script(
            "return document.querySelectorAll('#atlas-body tr')[1].querySelectorAll('.ctx span').length")
        assert spans >= 3 * 30
        peak = driver.execute_script("return document.querySelector('#atlas-body tr:nth-child(2) .pk').textContent")
        assert peak.isdigit()
        link = driver.execute_script("return document.querySelector('#atlas-body tr a').href")
        assert link == "http://127.0.0.1:8050/?unit=L1.c.5"
        driver.execute_script("document.querySelector('th[data-col=\"unit\"]').click()")
        first = driver.execute_script("return document.querySelector('#atlas-body tr').dataset.unit")
        assert first == "L0.c.0"
        driver.execute_script("const f = document.getElementById('f-concept'); f.value = 'digit';"
                              "f.dispatchEvent(new Event('input'))")
        units = driver.execute_script("return Array.from(document.querySelectorAll('#atlas-body tr'))"
                                      ".map(r => r.dataset.unit)")
        assert DIGIT_UNIT in units and COLUMN_UNIT not in units
        driver.execute_script("const f = document.getElementById('f-concept'); f.value = '';"
                              "f.dispatchEvent(new Event('input'));"
                              "const e = document.getElementById('f-explained'); e.checked = true;"
                              "e.dispatchEvent(new Event('input'))")
        units = driver.execute_script("return Array.from(document.querySelectorAll('#atlas-body tr'))"
                                      ".map(r => r.dataset.unit)")
        assert sorted(units) == sorted([COLUMN_UNIT, DIGIT_UNIT])
        logs = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert not logs, logs
    finally:
        driver.quit()


def test_real_tiny_models_and_ablation(tiny_lstm, tiny_byte_lstm, shakespeare_text, wiki_bytes, tmp_path):
    """A recorded char model with --ablate (the effect of holding the best explained units), and a byte model
    whose library holds the UTF-8 row concepts."""
    from probe.record.recorder import record
    from probe.analysis.atlas import add_ablation
    rec = record(tiny_lstm, shakespeare_text[:6000], tmp_path / "rec", gates=True, topk=2)
    at = build_atlas(rec, kinds=["h", "c", "f"], n_perm=39, n_contexts=2)
    assert set(at.table.kind) == {"h", "c", "f"} and len(at.table) == 3 * 2 * 16
    assert at.table.explained.any()  # a trained model: some unit tracks something (spaces, newlines...)
    assert at.meta["weights_sha256"] == rec.meta["checkpoint"]["sha256"]
    ab = add_ablation(at, rec, 2, max_chars=1500, n_random=3)
    done = ab.table[ab.table.abl_where.notna()]
    assert len(done) == 2 and done.kind.isin(["h", "c"]).all() and done.abl_delta.notna().all()
    assert done.abl_p.between(0.25, 1).all()
    assert ab.table.abl_delta.isna().sum() == len(ab.table) - 2
    text = wiki_bytes[:40000].decode("utf-8", "ignore")
    brec = record(tiny_byte_lstm, text, tmp_path / "brec", gates=False, topk=2)
    bat = build_atlas(brec, n_perm=19, n_contexts=1)
    names = {c["name"] for c in bat.meta["candidates"]} | set(bat.meta["dropped_candidates"])
    assert bat.meta["byte_model"] and {"utf8-byte", "utf8-cont"} <= names
    ctx = next(iter(bat.contexts.values()))[0]
    assert len(ctx["text"]) == len(ctx["levels"]) and brec.n_rows > len(brec.text)
