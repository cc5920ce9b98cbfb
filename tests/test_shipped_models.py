"""The shipped models load, and their measured validation loss is the one their model card states."""
from __future__ import annotations

import json

import pytest

from probe.model import checkpoint
from probe.train.evaluate import evaluate_split
from tests.conftest import ROOT

MODELS = sorted(p.parent.name for p in (ROOT / "trained_models").glob("*/card.json"))


def test_both_models_are_shipped():
    assert {"wiki", "shakespeare"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_validation_loss_matches_the_card(name):
    folder = ROOT / "trained_models" / name
    card = json.loads((folder / "card.json").read_text())
    ck = checkpoint.load(folder)
    assert ck.meta["exported_from"]["dtype"] == "float16"
    assert not (folder / "trainer.safetensors").exists()  # lean: no optimizer state shipped
    measured = evaluate_split(ck, "val")
    assert measured["n_symbols"] == card["val"]["n_symbols"]
    assert measured["bits_per_symbol"] == pytest.approx(card["val"]["bits_per_symbol"], abs=1e-4)
    readme = (folder / "README.md").read_text()
    assert f"{card['val']['bits_per_symbol']:.4f}" in readme
    # and the model beats every baseline on its card
    ours = card["test"]["bits_per_char"]
    assert all(ours < b["bits_per_char"] for b in card["baselines"] if "this model" not in b["method"])
