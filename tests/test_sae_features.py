"""SAE features as units (probe.sae.features, --sae options, feature removal, probe sae-compare).

The recording is synthetic: L1.h holds noise plus, inside [[wiki links]], a planted direction `d`; the SAE
is built by hand so that its feature 5 reads `d` (and feature 3 is dead), so the truth is known.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probe.analysis.neurons import find_neurons
from probe.cli.main import main
from probe.errors import ProbeError
from probe.names import Site, parse_unit
from probe.record.recording import Recording
from probe.sae.features import BLOCK_ROWS, FeatureRecording, open_features
from probe.sae.io import load_sae, save_sae
from probe.sae.model import TopKSAE
from tests.synthetic_recordings import make_recording, noise_arrays, wiki_like_text

SHA = "ab" * 32
H, D, K = 8, 16, 3
PLANTED, DEAD = 5, 3
LINK = r"\[\[[^\]]*\]\]"


def planted_sae(d_in: int = H, d_sae: int = D, k: int = K, seed: int = 1) -> TopKSAE:
    """Feature PLANTED reads unit 0 strongly; feature DEAD never fires; the others are random directions."""
    sae = TopKSAE(d_in, d_sae, k, seed=seed)
    with torch.no_grad():
        sae.W_enc.mul_(0.3)
        sae.W_enc[0] = 0  # only the planted feature reads unit 0
        sae.W_enc[:, PLANTED] = 0
        sae.W_enc[0, PLANTED] = 4.0
        sae.W_dec[PLANTED] = 0
        sae.W_dec[PLANTED, 0] = 1.0
        sae.W_enc[:, DEAD] = 0
        sae.b_enc[DEAD] = -1e6
        sae.b_dec.normal_(0, 0.05, generator=torch.Generator().manual_seed(seed))
    return sae.eval()


def write_sae(folder, sae: TopKSAE, site: Site, sha: str = SHA, cell: str = "lstm"):
    save_sae(folder, sae, site=site, source={"weights_sha256": sha, "cell": cell, "rnn_size": sae.W_enc.shape[0]},
             train_info={"seed": 0}, metrics=None)
    return folder


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> Recording:
    text = wiki_like_text(200)
    n = len(text)
    arrays = noise_arrays(n, hidden=H, kinds=("h",), seed=3, smooth=3)
    inside = np.zeros(n, bool)
    import re
    for m in re.finditer(LINK, text):
        inside[m.start():m.end()] = True
    arrays["L1.h"] = (0.3 * arrays["L1.h"]).astype(np.float32)
    arrays["L1.h"][:, 0] += 2.0 * inside
    out = make_recording(tmp_path_factory.mktemp("rec") / "rec", text, arrays, hidden=H,
                         extra_meta={"checkpoint": {"path": "/nowhere", "sha256": SHA},
                                     "text": {"sha256": "0" * 64, "source": "synthetic"}})
    return Recording.open(out)


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory):
    return write_sae(tmp_path_factory.mktemp("sae") / "syn-L1h", planted_sae(), Site(1, "h"))


def test_feature_activations_are_the_encoder_on_the_recorded_state(rec, sae_dir):
    frec = open_features(rec.path, sae_dir)
    sae = load_sae(sae_dir).sae
    a = frec.array("L1.h.f")
    assert a.shape == (rec.n_rows, D) and a.dtype == np.float32 and frec.kinds == ["h.f"] and frec.hidden_size == D
    for s, e in [(0, 50), (BLOCK_ROWS - 7, BLOCK_ROWS + 9), (rec.n_rows - 30, rec.n_rows)]:
        want = sae.encode(torch.from_numpy(np.array(rec.array("L1.h")[s:e], np.float32))).numpy()
        got = a[s:e]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert ((got > 0).sum(1) <= K).all()
        j = PLANTED
        assert np.array_equal(a[s:e, j], got[:, j]) and np.array_equal(frec.unit(f"L1.h.f{j}", s, e), got[:, j])
    assert np.array_equal(frec.units(["L1.h.f5", "L1.h.f0"], 10, 20), a[10:20][:, [5, 0]])
    assert not a[:, DEAD].any() and a[:, PLANTED].max() > 5
    # everything else is the recording's
    assert frec.text == rec.text and frec.n_rows == rec.n_rows and frec.path == rec.path
    assert frec.meta["checkpoint"] == rec.meta["checkpoint"] and frec.has("L1.h.f") and frec.has("L1.h")


def test_feature_names_round_trip_through_the_recording(rec, sae_dir):
    frec = open_features(rec, sae_dir)
    units = frec.all_units()
    assert len(units) == D and units[7].name == "L1.h.f7" and parse_unit(units[7].name) == units[7]
    assert frec.check_unit("L1.h.f15").array == "L1.h.f" and frec.arrays_for() == ["L1.h.f"]
    for bad in ("L1.h.f16", "L0.h.f1", "L1.h.3", "L1.c.f2"):
        with pytest.raises(ProbeError):
            frec.check_unit(bad)


def test_find_neurons_on_features_finds_the_planted_one(rec, sae_dir, capsys):
    assert main(["find-neurons", str(rec.path), "--pattern", LINK, "--sae", str(sae_dir), "--n-perm", "30",
                 "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    top = doc["units"][0]
    assert top["unit"] == f"L1.h.f{PLANTED}" and top["score"] > 0.95 and top["p_value"] <= 1 / 31 + 1e-9
    assert doc["summary"]["n_units"] == D and {u["kind"] for u in doc["units"]} == {"h.f"}
    dead = next(u for u in doc["units"] if u["unit"] == f"L1.h.f{DEAD}")
    assert dead["score"] == pytest.approx(0.5)


@pytest.mark.parametrize("site,sha,match", [(Site(5, "h"), SHA, "L5.h"), (Site(1, "c"), SHA, "L1.c"),
                                             (Site(1, "h"), "cd" * 32, "model")])
def test_sae_of_another_site_or_model_is_one_line(rec, tmp_path, capsys, site, sha, match):
    folder = write_sae(tmp_path / "other", planted_sae(), site, sha=sha)
    with pytest.raises(ProbeError, match=match):
        open_features(rec, folder)
    for argv in (["find-neurons", str(rec.path), "--pattern", LINK], ["sae-compare", str(rec.path)],
                 ["neuron", str(rec.path), "L1.h.f5"]):
        assert main(argv + ["--sae", str(folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err and "Traceback" not in err


def test_sae_compare_gives_units_and_features_by_the_same_statistics(rec, sae_dir, tmp_path, capsys):
    from probe.analysis.sae_compare import compare_units_features
    frec = open_features(rec, sae_dir)
    res = compare_units_features(frec, ["wiki-link", "url", "quote"], n_perm=20, n_unexplained=3, n_contexts=2)
    assert list(res.table.concept) == ["wiki-link", "url"] and list(res.skipped) == ["quote"]  # no quote in the text
    t = res.table.set_index("concept")
    units = find_neurons(rec, "wiki-link", kinds=["h"], layers=[1], n_perm=20)
    feats = find_neurons(frec, "wiki-link", n_perm=20)
    assert t.loc["wiki-link", "unit_chance"] == pytest.approx(units.chance)
    assert t.loc["wiki-link", "feature_chance"] == pytest.approx(feats.chance)
    assert t.loc["wiki-link", "best_unit"] == "L1.h.0" and t.loc["wiki-link", "best_feature"] == f"L1.h.f{PLANTED}"
    assert t.loc["wiki-link", "unit_score"] == pytest.approx(units.table.score.max())
    assert units.select_rows == feats.select_rows == tuple(res.select_rows)
    un = res.unexplained
    assert len(un) <= 3 and f"L1.h.f{PLANTED}" not in set(un.feature) and f"L1.h.f{DEAD}" not in set(un.feature)
    assert all(len(c) == 2 for c in un.top_contexts) and json.dumps(res.to_dict())
    for f in un.itertuples():  # the unit closest to each feature: the largest |Pearson r| over the site's units
        fv = frec.unit(f.feature).astype(np.float64)
        units_h = np.asarray(rec.array("L1.h"), dtype=np.float64)
        r = np.abs([np.corrcoef(fv, units_h[:, j])[0, 1] if units_h[:, j].std() > 0 else 0.0
                    for j in range(units_h.shape[1])])
        assert f.closest_unit == f"L1.h.{int(np.nanargmax(r))}" and f.closest_unit_r == pytest.approx(np.nanmax(r), abs=1e-6)
    out = tmp_path / "cmp"
    assert main(["sae-compare", str(rec.path), "--sae", str(sae_dir), "--concepts", "wiki-link,url",
                 "--n-perm", "20", "--unexplained", "2", "--json", "-", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {p.name for p in out.iterdir()} == {"concepts.csv", "unexplained.csv", "features.csv", "sae-compare.json",
                                               "sae-compare.html"}
    page = (out / "sae-compare.html").read_text(encoding="utf-8")
    assert len(doc["unexplained"]) == 2 and page.count('class="plotly-graph-div"') == 3  # the figure + 2 heatmaps
    assert page.count("plotly.js v") == 1  # plotly.js inlined once
    assert [c["concept"] for c in doc["concepts"]] == ["wiki-link", "url"] and doc["summary"]["n_features"] == D


def test_neuron_and_heatmap_take_features(rec, sae_dir, tmp_path, capsys):
    assert main(["neuron", str(rec.path), f"L1.h.f{PLANTED}", "--sae", str(sae_dir), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"L1.h.f{PLANTED} in") and "[[" in out
    assert main(["heatmap", str(rec.path), "--sae", str(sae_dir), "--unit", f"L1.h.f{PLANTED}", "--range", "0:300",
                 "--out", str(tmp_path / "f.html")]) == 0
    assert (tmp_path / "f.html").stat().st_size > 1000


# --------------------------------------------------------------------------- removing features from a real model

@pytest.fixture(scope="module")
def model_sae(tiny_lstm, tmp_path_factory):
    from probe.model import checkpoint
    ck = checkpoint.load(tiny_lstm)
    sha = ck.meta["files"]["model.safetensors"]
    sae = TopKSAE(16, 8, 2, seed=0)
    with torch.no_grad():
        sae.W_enc[:, DEAD] = 0
        sae.b_enc[DEAD] = -1e6
        sae.W_dec.mul_(3.0)
    return tiny_lstm, write_sae(tmp_path_factory.mktemp("sae") / "tiny-L1h", sae.eval(), Site(1, "h"), sha=sha)


def test_removing_a_dead_feature_changes_nothing_and_a_live_one_does(model_sae, small_text_file):
    from probe.analysis.ablate import ablate
    run, sae = model_sae
    text = small_text_file.read_text()[:1500]
    res = ablate(run, [f"L1.h.f{DEAD}"], text, sae=sae, n_random=3, n_boot=100)
    assert res.mode == "remove" and res.values == {f"L1.h.f{DEAD}": 0.0}
    assert np.array_equal(res.delta[1:], np.zeros(len(res.delta) - 1, np.float32))  # bit for bit
    assert (res.table.delta_all.iloc[1:].abs() > 1e-4).all()  # random live features do change the loss
    assert res.extra["sae"]["null"] == "active"
    used = res.table.units.iloc[1].split()  # a random set: features active on the text
    live = ablate(run, used, text, sae=sae, n_random=0, n_boot=100)
    assert np.abs(live.delta[1:]).max() > 1e-3 and live.table.delta_all.iloc[0] == res.table.delta_all.iloc[1]


def test_ablate_cli_with_sae_and_its_refusals(model_sae, tmp_path, capsys):
    run, sae = model_sae
    assert main(["ablate", str(run), "--sae", str(sae), "--unit", f"L1.h.f{DEAD}", "--text", "to be or not to be, "
                 * 20, "--random", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"removed L1.h.f{DEAD}") and "+0.0000 [+0.0000, +0.0000]" in out
    for argv, match in ((["--unit", "L1.h.3"], "not a feature name"), (["--unit", "L1.h.f8"], "features L1.h.f0..L1.h.f7"),
                        (["--unit", "L1.h.f1", "--mode", "zero"], "--mode")):
        assert main(["ablate", str(run), "--sae", str(sae), "--text", "abc abc abc"] + argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err
    for site, sha, match in ((Site(1, "h"), "cd" * 32, "weights"), (Site(2, "h"), None, "L2.h"),
                             (Site(0, "c"), None, None)):
        other = write_sae(tmp_path / f"other-{site.layer}{site.kind}", TopKSAE(16, 8, 2), site,
                          sha=sha or load_sae(sae).source["weights_sha256"])
        code = main(["ablate", str(run), "--sae", str(other), "--unit", site.features.unit(1).name, "--text",
                     "to be or not to be, " * 5, "--random", "1"])
        err = capsys.readouterr().err.strip()
        if match is None:  # an SAE on L0.c of this model is fine
            assert code == 0 and not err
        else:
            assert code == 2 and match in err and len(err.splitlines()) == 1


def test_features_stream_through_a_small_cache(rec, sae_dir):
    frec = FeatureRecording(rec, load_sae(sae_dir), cache_bytes=1)
    a = np.asarray(frec.array("L1.h.f"))
    assert len(frec._blocks) == 1 and a.shape == (rec.n_rows, D)
    np.testing.assert_array_equal(a[100:200], frec.array("L1.h.f")[100:200])


def test_report_on_features(rec, sae_dir, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(rec.path), "--sae", str(sae_dir), "--concepts", "wiki-link", "--out", str(out),
                 "--no-images", "--embedding", "none", "--heat-units", "1", "--passage", "200"]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "features of the SAE syn-L1h" in page and f"L1.h.f{PLANTED}" in page
    table = (out / "tables" / "wiki-link-units.csv").read_text()
    assert table.splitlines()[1].split(",")[1] == f"L1.h.f{PLANTED}" or f"L1.h.f{PLANTED}" in table.splitlines()[2]


def test_atlas_of_features(rec, sae_dir, tmp_path, capsys):
    out = tmp_path / "atlas"
    assert main(["atlas", str(rec.path), "--sae", str(sae_dir), "--n-perm", "20", "--quiet", "--top", "3",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"L1.h.f{PLANTED}      wiki-link" in text and "of 16 units" in text
    assert (out / "atlas.csv").exists()
