"""Hostile checkpoints: every kind of disagreement inside one gets one clear line naming the file, exit 2."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from probe.cli.main import main


def resign(folder: Path) -> None:
    """Record the current sha256 of every file, so that validation, not the hash check, must catch the damage."""
    meta = json.loads((folder / "checkpoint.json").read_text())
    if isinstance(meta, dict) and isinstance(meta.get("files"), dict):
        meta["files"] = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() if (folder / n).is_file() else d
                         for n, d in meta["files"].items()}
        (folder / "checkpoint.json").write_text(json.dumps(meta))


def edit_meta(fn):
    def apply(folder: Path) -> None:
        meta = json.loads((folder / "checkpoint.json").read_text())
        meta = fn(meta) or meta
        (folder / "checkpoint.json").write_text(json.dumps(meta))
    return apply


def edit_trainer(fn):
    def apply(folder: Path) -> None:
        tj = json.loads((folder / "trainer.json").read_text())
        fn(tj)
        (folder / "trainer.json").write_text(json.dumps(tj))
    return apply


def edit_tensors(file: str, fn):
    def apply(folder: Path) -> None:
        t = load_file(str(folder / file))
        fn(t)
        save_file(t, str(folder / file))
    return apply


def set_in(path: str, value):
    """meta[a][b] = value (or deleted when value is DELETE)."""
    *parents, last = path.split(".")

    def fn(meta):
        d = meta
        for k in parents:
            d = d[k]
        if value is DELETE:
            del d[last]
        else:
            d[last] = value
    return fn


DELETE = object()


def both_configs(key, value):
    def fn(meta):
        meta["model_config"][key] = value
        meta["train_config"][key] = value
    return fn


def shorter_vocab(meta):
    meta["vocab"]["symbols"] = meta["vocab"]["symbols"][:-1]


def longer_vocab(meta):
    meta["vocab"]["symbols"] = meta["vocab"]["symbols"] + ["\u2603"]


def vocab_and_config_shorter(meta):
    shorter_vocab(meta)
    meta["model_config"]["vocab_size"] -= 1


def wrong_optimizer_shape(t):
    name = next(k for k in t if k.endswith(".exp_avg"))
    t[name] = torch.zeros(3)


def wrong_state_shape(t):
    t["state.L0.h"] = torch.zeros(1, 99, 16)


# (case, commands that must refuse it, damage, words the one line holds)
CASES = [
    ("vocabulary shorter than the embedding", ["sample", "resume"], edit_meta(shorter_vocab),
     ["the vocabulary has", "symbols but model_config.vocab_size"]),
    ("vocabulary longer than the head", ["sample", "resume"], edit_meta(longer_vocab), ["vocabulary has"]),
    ("vocabulary and config agree, weights do not", ["sample", "resume"], edit_meta(vocab_and_config_shorter),
     ["model.safetensors", "embed.weight has shape"]),
    ("weights smaller than the config", ["sample", "resume"], edit_meta(both_configs("rnn_size", 32)),
     ["model.safetensors", "has shape"]),
    ("weights of another cell", ["sample", "resume"], edit_meta(both_configs("model", "gru")),
     ["model.safetensors", "has shape"]),
    ("a tensor missing", ["sample", "resume"], edit_tensors("model.safetensors", lambda t: t.pop("head.bias")),
     ["model.safetensors lacks", "head.bias"]),
    ("a tensor too many", ["sample", "resume"],
     edit_tensors("model.safetensors", lambda t: t.update(extra=torch.zeros(2))), ["does not have", "extra"]),
    ("integer weights", ["sample"], edit_tensors("model.safetensors", lambda t: t.update(
        {"head.bias": t["head.bias"].to(torch.int32)})), ["head.bias", "not floating point"]),
    ("JSON list", ["sample", "resume"], lambda f: (f / "checkpoint.json").write_text("[1, 2]"),
     ["checkpoint.json holds a list, not an object"]),
    ("JSON string", ["sample"], lambda f: (f / "checkpoint.json").write_text('"x"'), ["holds a string"]),
    ("model_config missing", ["sample", "resume"], edit_meta(set_in("model_config", DELETE)),
     ["lacks 'model_config'"]),
    ("model_config a list", ["sample"], edit_meta(set_in("model_config", [1])), ["model_config is [1], not an object"]),
    ("rnn_size a string", ["sample", "resume"], edit_meta(set_in("model_config.rnn_size", "big")),
     ["rnn_size is \"big\", not an integer"]),
    ("rnn_size zero", ["sample"], edit_meta(set_in("model_config.rnn_size", 0)), ["rnn_size is 0"]),
    ("unknown cell", ["sample"], edit_meta(set_in("model_config.model", "transformer")), ["'transformer'"]),
    ("unknown model_config key", ["sample"], edit_meta(set_in("model_config.heads", 4)), ["unknown key 'heads'"]),
    ("vocab missing", ["sample"], edit_meta(set_in("vocab", DELETE)), ["lacks 'vocab'"]),
    ("vocab of unknown kind", ["sample"], edit_meta(set_in("vocab.kind", "word")), ["vocab.kind"]),
    ("vocab of words", ["sample"], edit_meta(set_in("vocab.symbols", ["ab", "c"])), ["single characters"]),
    ("files missing", ["sample"], edit_meta(set_in("files", DELETE)), ["lacks 'files'"]),
    ("files naming a path", ["sample"], edit_meta(lambda m: m["files"].update({"../x": "0" * 64})), ["bad entry"]),
    ("step a string", ["sample", "resume"], edit_meta(set_in("step", "30")), ["step is \"30\", not an integer"]),
    # what only resuming needs
    ("train_config missing", ["resume"], edit_meta(set_in("train_config", DELETE)), ["train_config"]),
    ("train_config lacks a key", ["resume"], edit_meta(set_in("train_config.batch_size", DELETE)),
     ["train_config lacks 'batch_size'"]),
    ("train_config of the wrong type", ["resume"], edit_meta(set_in("train_config.seq_length", "20")),
     ["train_config.seq_length is \"20\", not an integer"]),
    ("train_config bad value", ["resume"], edit_meta(set_in("train_config.learning_rate", -1.0)),
     ["train_config.learning_rate must be positive"]),
    ("train_config disagrees with model_config", ["resume"], edit_meta(set_in("train_config.num_layers", 3)),
     ["train_config.num_layers is 3 but model_config.num_layers is 2"]),
    ("data sha256 missing", ["resume"], edit_meta(set_in("data.sha256", DELETE)), ["data lacks 'sha256'"]),
    ("step missing", ["resume"], edit_meta(set_in("step", DELETE)), ["lacks 'step'"]),
    ("metrics of junk", ["resume"], edit_meta(set_in("metrics", [1, 2])), ["metrics hold a bad entry"]),
    ("trainer.json a list", ["resume"], lambda f: (f / "trainer.json").write_text("[]"),
     ["trainer.json holds a list"]),
    ("trainer.json not JSON", ["resume"], lambda f: (f / "trainer.json").write_text("{"),
     ["trainer.json is not valid JSON"]),
    ("trainer.json lacks lr_scale", ["resume"], edit_trainer(lambda tj: tj.pop("lr_scale")),
     ["trainer.json lacks 'lr_scale'"]),
    ("trainer.json at another step", ["resume"], edit_trainer(lambda tj: tj.update(step=3)),
     ["trainer.json is at step 3"]),
    ("optimizer groups a string", ["resume"], edit_trainer(lambda tj: tj["optimizer"].update(param_groups="x")),
     ["param_groups"]),
    ("optimizer tensor of the wrong shape", ["resume"], edit_tensors("trainer.safetensors", wrong_optimizer_shape),
     ["trainer state", "optimizer tensor", "shape"]),
    ("RNG state missing", ["resume"], edit_tensors("trainer.safetensors", lambda t: t.pop("rng.cpu")),
     ["rng.cpu"]),
    ("carried state of the wrong shape", ["resume"], edit_tensors("trainer.safetensors", wrong_state_shape),
     ["state.L0.h", "(1, 4, 16)"]),
]

ROWS = [(case, cmd, damage, words) for case, cmds, damage, words in CASES for cmd in cmds]


@pytest.mark.parametrize("case,cmd,damage,words", ROWS, ids=[f"{r[1]}: {r[0]}" for r in ROWS])
def test_hostile_checkpoint_is_one_clear_line(tmp_path, tiny_lstm, capsys, case, cmd, damage, words):
    folder = tmp_path / "run" / "latest"
    shutil.copytree(tiny_lstm / "latest", folder)
    damage(folder)
    resign(folder)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    argv = ["sample", str(folder), "--length", "5"] if cmd == "sample" else ["train", "--resume", str(folder.parent),
                                                                         "--quiet"]
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    name = "train" if cmd == "resume" else "sample"
    assert lines[0].startswith(f"probe {name}: error: ") and str(folder) in lines[0], lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    assert captured.out == ""
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_the_untouched_copy_loads_and_resumes(tmp_path, tiny_lstm, capsys):
    """The control: the same copy, undamaged, passes both commands (so every case above fails for its damage)."""
    folder = tmp_path / "run" / "latest"
    shutil.copytree(tiny_lstm / "latest", folder)
    resign(folder)
    assert main(["sample", str(folder), "--length", "5"]) == 0
    assert main(["train", "--resume", str(folder.parent), "--max-iters", "31", "--quiet"]) == 0
