"""probe.resources: shipped models and bundled corpora by name, a user's folder first (issue 18)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from probe import resources
from probe.data import corpus
from probe.errors import ProbeError
from probe.model import checkpoint

ROOT = Path(__file__).resolve().parent.parent


def test_the_checkout_holds_two_shipped_models_and_the_corpora():
    assert resources.shipped_models() == ["shakespeare", "wiki"]
    assert resources.shipped_model_path("wiki").joinpath("card.json").is_file()
    assert resources.shipped_model_path("nope") is None
    assert resources.corpus_path("tinyshakespeare.txt.bz2").is_file()
    assert (resources.dashboard_assets_dir() / "probe_text.js").is_file()
    assert set(resources.origin().values()) <= {"package", "checkout"}


def test_bad_corpus_names_are_one_line_errors():
    for bad in ("nope.txt", "../pyproject.toml", "README"):
        with pytest.raises(ProbeError, match="not in this installation"):
            resources.corpus_path(bad)


def test_sae_folders_and_folders_without_a_checkpoint_are_not_models(tmp_path, monkeypatch):
    for name in ("a", "sae-L2.h", ".hidden", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "checkpoint.json").write_text("{}")
    (tmp_path / "c").mkdir()  # no checkpoint.json
    monkeypatch.setattr(resources, "models_dir", lambda: tmp_path)
    assert resources.shipped_models() == ["a", "b"]


def test_a_shipped_model_by_name_and_a_users_folder_of_that_name_wins(tmp_path, monkeypatch, tiny_lstm):
    monkeypatch.chdir(tmp_path)
    assert checkpoint.resolve("shakespeare") == resources.shipped_model_path("shakespeare")
    with pytest.raises(ProbeError, match=r"no such checkpoint: nope \(shipped models: shakespeare, wiki\)"):
        checkpoint.resolve("nope")
    with pytest.raises(ProbeError, match="no such checkpoint"):
        checkpoint.resolve("sub/wiki")  # only a bare name means a shipped model
    (tmp_path / "shakespeare").symlink_to(tiny_lstm)
    assert checkpoint.resolve("shakespeare") == Path("shakespeare") / "best"


def test_bundled_corpora_by_name_and_as_stored_in_checkpoints(tmp_path):
    path = corpus.resolve("shakespeare")
    assert path == resources.corpus_path("tinyshakespeare.txt.bz2") == corpus.BUNDLED["shakespeare"]
    assert corpus.portable_path(path) == "data/tinyshakespeare.txt.bz2"
    assert corpus.locate("data/tinyshakespeare.txt.bz2") == path
    mine = tmp_path / "mine.txt"
    mine.write_text("hello")
    assert corpus.portable_path(mine) == str(mine.resolve())
    assert corpus.locate(corpus.portable_path(mine)) == mine.resolve()
    meta = json.loads((resources.shipped_model_path("wiki") / "checkpoint.json").read_text())
    found, raw = corpus.read_training_corpus(meta["data"])  # the shipped model's own corpus, checked by sha256
    assert found == corpus.resolve("wiki") and len(raw) == meta["data"]["bytes"]
