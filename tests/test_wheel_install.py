"""Installed anywhere (issue 18): the wheel built from the repository works in a fresh venv, outside the checkout.

Builds the wheel from a copy of the tracked (and untracked, not ignored) files, installs it with --no-deps
into a new venv in a temporary folder, and runs train -> record -> find-neurons -> heatmap, a shipped model
by name, `probe models`, and a dashboard request for the text colouring asset, from a folder outside the
repository. The new venv borrows the dependencies (torch, numpy...) from the running environment through a
.pth line: a plain path line, so the running environment's editable-install finder (its own .pth hook) is
never run and `probe` can only come from the wheel. Nothing is downloaded.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def run(cmd: list[str], cwd: Path, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


def copy_repository(dest: Path) -> None:
    """The files git would ship: tracked plus untracked-but-not-ignored (no .venv, build/, recordings...)."""
    names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    tar = dest.parent / "src.tar"
    with tarfile.open(tar, "w") as t:
        for name in names:
            if name and (ROOT / name).is_file():
                t.add(ROOT / name, arcname=name)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    tar.unlink()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A venv in tmp with probe installed from a freshly built wheel; its bin, site-packages and environment."""
    if not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (git ls-files)")
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    copy_repository(src)
    # an SAE folder beside a shipped model must not travel in the wheel
    (src / "trained_models" / "wiki" / "sae-L2.h").mkdir(exist_ok=True)
    (src / "trained_models" / "wiki" / "sae-L2.h" / "cfg.json").write_text("{}")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    run(pip + ["wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(base / "dist")], src, env, 300)
    wheel = next((base / "dist").glob("probe-*.whl"))
    venv = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], base, env)
    py = venv / "bin" / "python"
    run(pip + ["--python", str(py), "install", "--no-deps", "--no-index", str(wheel)], base, env, 300)
    site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base, env)
                .stdout.strip())
    (site / "_probe_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, numpy...: no probe
    work = base / "work"  # outside the repository
    work.mkdir()
    env = {**env, "PROBE_THREADS": "1", "NUMBA_CACHE_DIR": str(base / "numba")}
    return {"wheel": wheel, "bin": venv / "bin", "site": site, "work": work, "env": env, "py": py}


def probe(inst: dict, *args: str, timeout: float = 180) -> str:
    return run([str(inst["bin"] / "probe"), *args], inst["work"], inst["env"], timeout).stdout


def test_the_wheel_holds_the_package_data(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    for model in ("wiki", "shakespeare"):
        for f in ("model.safetensors", "checkpoint.json", "card.json", "README.md"):
            assert f"probe/shipped/models/{model}/{f}" in names
    assert "probe/shipped/corpora/tinyshakespeare.txt.bz2" in names
    assert "probe/shipped/corpora/enwiki-sample.xml.bz2" in names
    assert {"dashboards/assets/probe_text.js", "dashboards/assets/probe.css"} <= set(names)
    assert not [n for n in names if "/sae-" in n]
    assert not [n for n in names if n.startswith(("tests/", "trained_models/", "data/", "benchmarks/"))]


def test_probe_comes_from_the_venv_and_finds_its_data_there(installed):
    code = ("import json, probe, dashboards, probe.resources as r; print(json.dumps({'probe': probe.__file__, "
            "'dashboards': dashboards.__file__, 'origin': r.origin(), 'models': [str(r.shipped_model_path(m)) "
            "for m in r.shipped_models()], 'corpora': str(r.corpora_dir()), 'assets': str(r.dashboard_assets_dir()),"
            " 'checkout': str(r.source_root())}))")
    got = json.loads(run([str(installed["py"]), "-c", code], installed["work"], installed["env"]).stdout)
    site = str(installed["site"])
    assert got["origin"] == {"models": "package", "corpora": "package", "assets": "package"}
    assert got["checkout"] == "None"
    assert len(got["models"]) == 2
    for path in [got["probe"], got["dashboards"], got["corpora"], got["assets"], *got["models"]]:
        assert path.startswith(site) and not path.startswith(str(ROOT))


def test_models_lists_the_shipped_models_with_their_cards(installed):
    rows = json.loads(probe(installed, "models", "--json"))
    assert [r["name"] for r in rows] == ["shakespeare", "wiki"]
    card = json.loads((ROOT / "trained_models" / "wiki" / "card.json").read_text())
    wiki = rows[1]
    assert wiki["test_bits_per_char"] == card["test"]["bits_per_char"] and wiki["rnn_size"] == 512
    assert wiki["path"].startswith(str(installed["site"]))
    assert "shakespeare" in probe(installed, "models")


def test_train_record_find_neurons_heatmap_and_the_dashboard_outside_the_repository(installed):
    work = installed["work"]
    probe(installed, "train", "--data", "shakespeare", "--out", "run", "--rnn-size", "16", "--num-layers", "1",
          "--embed-size", "8", "--seq-length", "20", "--batch-size", "4", "--max-iters", "6", "--eval-every", "3",
          "--quiet", timeout=240)
    meta = json.loads((work / "run" / "best" / "checkpoint.json").read_text())
    assert meta["data"]["corpus"] == "data/tinyshakespeare.txt.bz2"  # portable: found again in any install
    probe(installed, "record", "run", "--part", "val", "--max-chars", "1500", "--out", "rec")
    rec = json.loads((work / "rec" / "meta.json").read_text())
    assert rec["n_rows"] == 1500
    table = probe(installed, "find-neurons", "rec", "--concept", "column")
    assert "L0." in table
    probe(installed, "heatmap", "rec", "--unit", "L0.c.3", "--range", "0:300", "--out", "h.html")
    assert (work / "h.html").stat().st_size > 1000
    probe(installed, "record", "shakespeare", "--text", "ROMEO: What light through yonder window breaks?",
          "--out", "rec-shipped")
    shipped = json.loads((work / "rec-shipped" / "meta.json").read_text())
    assert shipped["checkpoint"]["path"].startswith(str(installed["site"]))

    port = free_port()
    server = subprocess.Popen([str(installed["bin"] / "probe"), "dashboard", "rec", "--port", str(port)], cwd=work,
                              env=installed["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        body, deadline = None, time.monotonic() + 120
        while body is None and time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read().decode(errors="replace")[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/assets/probe_text.js", timeout=5) as r:
                    assert r.status == 200
                    body = r.read()
            except OSError:
                time.sleep(0.5)
        assert body == (ROOT / "dashboards" / "assets" / "probe_text.js").read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_nothing_resolves_from_the_checkout(installed):
    """Every file the installed commands opened lies outside the repository (its corpora, models, assets)."""
    code = ("import probe.data.corpus as c, probe.model.checkpoint as k; "
            "print(c.resolve('shakespeare')); print(c.locate('data/enwiki-sample.xml.bz2')); print(k.resolve('wiki'))")
    paths = run([str(installed["py"]), "-c", code], installed["work"], installed["env"]).stdout.split()
    assert len(paths) == 3
    assert all(p.startswith(str(installed["site"])) and Path(p).exists() for p in paths)
