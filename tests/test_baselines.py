"""benchmarks/baselines.py: compressors, the n-gram model and a model on the same test split (quick mode)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_config
from probe.train.loop import train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def baselines():
    spec = importlib.util.spec_from_file_location("baselines", ROOT / "benchmarks" / "baselines.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["baselines"] = mod  # its dataclass looks its module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bundled_shakespeare_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "shakespeare"
    train(tiny_config("shakespeare", out, max_iters=10, eval_every=10), progress=False)
    return out


def test_quick_table_with_a_model(baselines, bundled_shakespeare_run, capsys):
    assert baselines.main(["--quick", "--corpus", "shakespeare", "--model", str(bundled_shakespeare_run),
                           "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["shakespeare"]
    methods = [r["method"] for r in rows]
    assert methods[:4] == ["gzip -9", "bz2 -9", "xz -9", "xz -9, given train"]
    assert "Kneser-Ney" in methods[4] and "LSTM 2x16" in methods[5]
    bpc = {r["method"]: r["bits_per_char"] for r in rows}
    assert 2.0 < bpc["bz2 -9"] < bpc["gzip -9"] < 4.5
    assert bpc[methods[4]] < bpc["gzip -9"]  # a 5-gram beats gzip on English


def test_markdown_table(baselines, capsys):
    assert baselines.main(["--quick", "--corpus", "wiki", "--markdown", "--order", "3"]) == 0
    out = capsys.readouterr().out
    assert "| method | test bits/char | test bits/byte |" in out
    assert "| gzip -9 |" in out and "3-gram" in out


def test_model_from_another_corpus_is_refused(baselines, tiny_lstm, capsys):
    assert baselines.main(["--quick", "--corpus", "shakespeare", "--model", str(tiny_lstm)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("baselines: error:") and "\n" not in err
