"""Bad input to `probe train` / `probe sample`: one clear line, exit 2, no traceback, nothing half-written."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

TINY = ["--rnn-size", "8", "--num-layers", "1", "--embed-size", "4", "--batch-size", "2", "--seq-length", "10",
        "--max-iters", "2", "--eval-every", "2", "--quiet"]


def probe(*args, input=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probe", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, input=input)


def assert_one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    lines = [l for l in p.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_empty_file(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_text("")
    p = probe("train", "--data", f, "--out", tmp_path / "run", *TINY)
    assert_one_line_error(p, "empty")
    assert not (tmp_path / "run").exists()


def test_file_shorter_than_one_batch(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("hello world, not much text here at all" * 2)
    p = probe("train", "--data", f, "--out", tmp_path / "run", *TINY[:-9], "--batch-size", "8", "--seq-length", "50",
              "--max-iters", "2", "--eval-every", "2", "--quiet")
    assert_one_line_error(p, "too short")
    assert not (tmp_path / "run").exists()


def test_binary_data_in_char_mode(tmp_path):
    f = tmp_path / "bin.dat"
    f.write_bytes(bytes(range(256)) * 50)
    p = probe("train", "--data", f, "--vocab", "char", "--out", tmp_path / "run", *TINY)
    assert_one_line_error(p, "not UTF-8", "--vocab byte")


def test_missing_file_and_nonsense_options(tmp_path):
    assert_one_line_error(probe("train", "--data", tmp_path / "nope.txt", "--out", tmp_path / "r"), "no such file")
    assert_one_line_error(probe("train", "--rnn-size", "0", "--out", tmp_path / "r"), "--rnn-size")
    assert_one_line_error(probe("train", "--learning-rate", "-1", "--out", tmp_path / "r"), "--learning-rate")
    assert_one_line_error(probe("train", "--dropout", "1.5", "--out", tmp_path / "r"), "--dropout")
    assert_one_line_error(probe("train", "--max-time", "soon", "--out", tmp_path / "r"), "--max-time")
    assert_one_line_error(probe("sample", "--length", "-3", tmp_path), "--length")


def test_existing_run_is_not_overwritten(tmp_path, tiny_lstm):
    run = tmp_path / "run"
    shutil.copytree(tiny_lstm, run)
    p = probe("train", "--data", "shakespeare", "--out", run, *TINY)
    assert_one_line_error(p, "already holds a run", "--resume")


@pytest.fixture
def copied(tmp_path, tiny_lstm) -> Path:
    dest = tmp_path / "ck"
    shutil.copytree(tiny_lstm / "best", dest)
    return dest


def test_missing_checkpoint(tmp_path):
    assert_one_line_error(probe("sample", tmp_path / "none"), "no such checkpoint")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(probe("sample", tmp_path / "empty"), "not a probe checkpoint")


def test_truncated_weights(copied):
    w = copied / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    assert_one_line_error(probe("sample", copied), "corrupted checkpoint")


def test_corrupted_meta(copied):
    (copied / "checkpoint.json").write_text("{not json")
    assert_one_line_error(probe("sample", copied), "not valid JSON")


def test_other_format_version(copied):
    meta = json.loads((copied / "checkpoint.json").read_text())
    meta["version"] = 99
    (copied / "checkpoint.json").write_text(json.dumps(meta))
    assert_one_line_error(probe("sample", copied), "version 99")


def test_resume_of_a_shipped_copy_without_trainer_state(copied):
    (copied / "trainer.safetensors").unlink()
    meta = json.loads((copied / "checkpoint.json").read_text())
    meta["files"].pop("trainer.safetensors")
    (copied / "checkpoint.json").write_text(json.dumps(meta))
    assert_one_line_error(probe("train", "--resume", copied), "no trainer state")


def test_sample_streams_text_and_reports_unknown_prime_characters(tiny_lstm):
    p = probe("sample", tiny_lstm, "--prime", "Zöë", "--length", "40", "--seed", "1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Zöë") and len(p.stdout.rstrip("\n")) >= 40
    assert "not in the model's vocabulary" in p.stderr and "Traceback" not in p.stderr
    again = probe("sample", tiny_lstm, "--prime", "Zöë", "--length", "40", "--seed", "1")
    assert again.stdout == p.stdout
