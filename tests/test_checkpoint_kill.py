"""A kill at any moment of a save: every intermediate state on disk resumes, inside the run folder, from the
newest complete checkpoint, and ends exactly like an uninterrupted run; leftovers of dead processes go."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from probe.model import checkpoint
from probe.train.loop import TrainConfig, train
from tests.conftest import ROOT, tiny_config

RECIPE = dict(max_iters=24, eval_every=8, dropout=0.2)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "latest" / "model.safetensors"))


def step_of(folder: Path) -> int:
    return json.loads((folder / "checkpoint.json").read_text())["step"]


@pytest.fixture(scope="module")
def saves(tmp_path_factory, small_text_file) -> dict[str, Path]:
    """The uninterrupted run, and the checkpoints on either side of one save (old: step 8, new: step 16)."""
    root = tmp_path_factory.mktemp("kill")
    train(tiny_config(small_text_file, root / "full", **RECIPE), progress=False)
    part = root / "part"
    train(tiny_config(small_text_file, part, **RECIPE), stop_at=8, progress=False)
    shutil.copytree(part / "latest", root / "old")
    shutil.copytree(part / "best", root / "old_best")
    train(TrainConfig(), resume=str(part), stop_at=16, progress=False)
    shutil.copytree(part / "latest", root / "new")
    shutil.copytree(part / "best", root / "new_best")
    assert step_of(root / "old") == 8 and step_of(root / "new") == step_of(root / "new_best") == 16
    return {"full": root / "full", "old": root / "old", "old_best": root / "old_best", "new": root / "new",
            "new_best": root / "new_best"}


def dead_owner() -> checkpoint.Owner:
    p = subprocess.Popen([sys.executable, "-c", ""])
    p.wait()
    return dataclasses.replace(checkpoint.Owner.current(), pid=p.pid, start=1)


def half_written(folder: Path) -> None:
    """A temporary folder cut short: weights partly written, no checkpoint.json yet."""
    (folder / "checkpoint.json").unlink()
    w = folder / "model.safetensors"
    w.write_bytes(w.read_bytes()[:200])


def corrupted(folder: Path) -> None:
    w = folder / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0xFF
    w.write_bytes(bytes(data))


# (state, {folder name in the run: (snapshot, damage)}, where resume continues from, its step)
STATES = [
    ("before a save", {"latest": ("old", None), "best": ("old_best", None)}, "latest/", 8),
    ("new folder half-written", {"latest": ("old", None), "best": ("old_best", None),
                                 "T:latest": ("new", half_written)}, "latest/", 8),
    ("new folder whole, before the first rename", {"latest": ("old", None), "best": ("old_best", None),
                                                   "T:latest": ("new", None)}, ".latest.tmp-", 16),
    ("between the two renames", {"O:latest": ("old", None), "T:latest": ("new", None),
                                 "best": ("old_best", None)}, ".latest.tmp-", 16),
    ("between the renames, names of older probe versions",
     {"o:latest": ("old", None), "t:latest": ("new", None), "best": ("old_best", None)}, ".latest.tmp-", 16),
    ("after the second rename", {"latest": ("new", None), "O:latest": ("old", None),
                                 "best": ("old_best", None)}, "latest/", 16),
    ("old folder half-deleted", {"latest": ("new", None), "O:latest": ("old", half_written),
                                 "best": ("old_best", None)}, "latest/", 16),
    ("between the renames of best/", {"latest": ("new", None), "O:best": ("old_best", None),
                                      "T:best": ("new_best", None)}, "latest/", 16),
    ("newest checkpoint corrupted (sha256 mismatch)", {"latest": ("new", corrupted), "best": ("old_best", None)},
     "best/", 8),
    ("only the new folder of a first save", {"T:latest": ("new", None)}, ".latest.tmp-", 16),
]


def build(run: Path, layout: dict, saves: dict, owner: checkpoint.Owner) -> None:
    run.mkdir()
    for name, (snap, damage) in layout.items():
        if ":" in name:
            code, dest = name.split(":")
            kind = "tmp" if code.lower() == "t" else "old"
            who = owner if code.isupper() else checkpoint.Owner(owner.pid)  # lower case: pid-only names
            name = checkpoint.temp_name(dest, kind, who)
        shutil.copytree(saves[snap], run / name)
        if damage:
            damage(run / name)


@pytest.mark.parametrize("state,layout,source,step", STATES, ids=[s[0] for s in STATES])
def test_resume_from_every_state_of_a_killed_save(tmp_path, saves, capsys, state, layout, source, step):
    run = tmp_path / "run"
    build(run, layout, saves, dead_owner())
    r = train(TrainConfig(), resume=str(run), progress=False)
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("resuming")]
    assert len(said) == 1 and f"resuming {run} from {source}" in said[0] and f"at step {step}" in said[0], err
    assert r.out == run and r.step == 24
    a, b = weights(saves["full"]), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)  # continued exactly
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written beside the run
    assert sorted(p.name for p in run.iterdir()) == ["best", "latest"]  # leftovers of the dead process gone
    assert step_of(run / "latest") == 24
    checkpoint.load(run, which="best")


def test_resume_through_a_missing_latest_path_stays_in_the_run(tmp_path, saves):
    run = tmp_path / "run"
    build(run, dict(STATES[3][1]), saves, dead_owner())  # between the renames: no latest/
    train(TrainConfig(), resume=str(run / "latest"), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert step_of(run / "latest") == 24


def test_readers_find_the_newest_complete_checkpoint_between_the_renames(tmp_path, saves):
    run = tmp_path / "run"
    build(run, {"O:latest": ("old", None), "T:latest": ("new", None)}, saves, dead_owner())
    assert checkpoint.resolve(run).name.startswith(".latest.tmp-")
    assert checkpoint.load(run).meta["step"] == 16
    notes = checkpoint.recover(run)
    assert notes[0].startswith("latest/ restored from .latest.tmp-") and "removed 1" in notes[1]
    assert sorted(p.name for p in run.iterdir()) == ["latest"] and step_of(run / "latest") == 16
    assert checkpoint.recover(run) == []  # nothing more to do


def test_folders_of_a_live_process_are_used_but_never_deleted(tmp_path, saves):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = dataclasses.replace(checkpoint.Owner.current(), pid=live.pid,
                                    start=checkpoint._start_time(live.pid))
        assert owner.running()
        run = tmp_path / "run"
        build(run, dict(STATES[3][1]), saves, owner)  # between the renames, the writer still alive
        kept = sorted(p.name for p in run.iterdir() if p.name.startswith("."))
        train(TrainConfig(), resume=str(run), progress=False)
        assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == kept
        a, b = weights(saves["full"]), weights(run)
        assert all(torch.equal(a[k], b[k]) for k in a)
    finally:
        live.kill()
        live.wait()
    assert not checkpoint.Owner(live.pid, owner.start, owner.host).running()
    assert not dataclasses.replace(owner, start=owner.start - 100).running()  # a reused pid is not the owner


def test_a_fresh_run_refuses_a_folder_whose_only_checkpoint_is_in_a_leftover(tmp_path, saves, small_text_file):
    run = tmp_path / "run"
    build(run, {"T:latest": ("new", None)}, saves, dead_owner())
    from probe.errors import ProbeError
    with pytest.raises(ProbeError, match="already holds a run"):
        train(tiny_config(small_text_file, run, **RECIPE), progress=False)
    shutil.rmtree(run)
    build(run, {"T:latest": ("new", half_written)}, saves, dead_owner())  # nothing complete: cleaned, trained
    train(tiny_config(small_text_file, run, max_iters=2, eval_every=2), progress=False)
    assert sorted(p.name for p in run.iterdir()) == ["best", "latest"]


KILLER = """
import os, signal, sys
from pathlib import Path
real = os.replace
saves = []
def replace(src, dst):
    if Path(src).name.startswith(".latest.tmp-"):
        saves.append(src)
        if len(saves) == 2:  # the second save of latest/: killed between its two renames
            os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = replace
from probe.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_real_kill_between_the_renames_resumes_exactly(tmp_path, saves, small_text_file):
    run = tmp_path / "run"
    args = ["train", "--data", str(small_text_file), "--out", str(run), "--rnn-size", "16", "--num-layers", "2",
            "--embed-size", "8", "--batch-size", "4", "--seq-length", "20", "--max-iters", "24", "--eval-every",
            "8", "--warmup-iters", "5", "--dropout", "0.2", "--sample-length", "20", "--quiet", "--threads", "1"]
    p = subprocess.run([sys.executable, "-c", KILLER, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == -9, p.stderr
    hidden = sorted(q.name for q in run.iterdir() if q.name.startswith("."))
    assert not (run / "latest").exists() and [h.split("-")[0] for h in hidden] == [".latest.old", ".latest.tmp"]
    r = train(TrainConfig(), resume=str(run), progress=False)
    assert r.out == run
    a, b = weights(saves["full"]), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(q.name for q in run.iterdir()) == ["best", "latest"]
