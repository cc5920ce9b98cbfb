"""A recording killed part-way (a real SIGKILL) leaves only a hidden `.NAME.partial-<pid>-<start>-<host>` folder;
the next `probe record` into the same folder deletes those of dead processes, never a live one's."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probe import files
from probe.cli.main import main
from probe.model import checkpoint
from probe.record.recording import PARTIAL, Recording, clean_partials
from tests.conftest import ROOT


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", ""])
    p.wait()
    return p.pid


def _folder(parent: Path, name: str) -> Path:
    p = parent / name
    p.mkdir()
    (p / "L0.h.npy").write_bytes(b"\x93NUMPY half")
    return p


def _wait_for_rows(parent: Path, proc: subprocess.Popen, timeout: float = 180) -> Path:
    """The partial folder of `proc` once its first array has rows in it (the recording is under way)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"the recording ended before it was killed: {proc.stderr.read().decode()[-500:]}")
        for p in parent.glob(".rec.partial-*"):
            arr = p / "L0.h.npy"
            if arr.exists() and arr.stat().st_size > 128 + 64 * 1024:
                return p
        time.sleep(0.05)
    pytest.fail("no partial recording appeared")


@pytest.mark.slow
def test_a_killed_recording_leaves_a_hidden_folder_that_the_next_record_removes(tiny_lstm, shakespeare_text,
                                                                                   tmp_path, capsys):
    long_text = tmp_path / "long.txt"
    long_text.write_text(shakespeare_text[:100_000] * 4, encoding="utf-8")  # 400,000 characters
    parent = tmp_path / "recordings"
    env = dict(os.environ, PROBE_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "probe", "record", str(tiny_lstm), str(long_text), "--out",
                             str(parent / "rec"), "--chunk-size", "16", "--layers", "0", "--kinds", "h", "-q"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        partial = _wait_for_rows(parent, proc)
        start = files.start_time(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert partial.name == files.temp_name("rec", PARTIAL, files.Owner(proc.pid, start, files.HOST))
    assert not (parent / "rec").exists() and not (partial / "meta.json").exists()  # never taken for a recording
    assert sorted(p.name for p in parent.iterdir()) == [partial.name]

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live_owner = files.Owner(live.pid, files.start_time(live.pid), files.HOST)
        keep = [_folder(parent, files.temp_name("other", PARTIAL, live_owner)),  # being written by a live process
                _folder(parent, files.temp_name("mine", PARTIAL)),  # this process's own: another thread's
                _folder(parent, files.temp_name("far", PARTIAL, files.Owner(_dead_pid(), 5, "another_host"))),
                _folder(parent, checkpoint.temp_name("latest", "tmp", files.Owner(_dead_pid(), 5, files.HOST))),
                _folder(parent, ".notes.partial-x")]  # not a name probe writes
        dead = _folder(parent, f".older.partial-{_dead_pid()}")  # an older probe's name: the pid alone
        reused = _folder(parent, files.temp_name("reused", PARTIAL, files.Owner(live.pid, 1, files.HOST)))

        code = main(["record", str(tiny_lstm), "--out", str(parent / "rec"), "--max-chars", "300"])
        out = capsys.readouterr().out
        assert code == 0
        gone = sorted([partial.name, dead.name, reused.name])
        assert f"removed 3 folder(s) of recordings killed part-way: {', '.join(gone)}" in out
        assert sorted(p.name for p in parent.iterdir()) == sorted([p.name for p in keep] + ["rec"])
        assert Recording.open(parent / "rec").n_rows == 300
        assert clean_partials(parent) == []  # nothing more: the live process's folder stays while it runs
    finally:
        live.kill()
        live.wait()
    assert clean_partials(parent) == [keep[0].name]  # its owner has stopped now


def test_the_writer_names_its_folder_after_its_owner_and_finishes_it_away(tiny_lstm, tmp_path):
    seen = []

    def look(plan) -> None:
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
    from probe.record.recorder import record
    record(tiny_lstm, out=tmp_path / "r", max_chars=200, on_start=look)
    record(tiny_lstm, out=tmp_path / "r", max_chars=200, overwrite=True)
    assert seen == [[]] and sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # nothing left beside it
    from probe.record.recording import RecordingWriter
    w = RecordingWriter(tmp_path / "s")
    assert w.tmp.name == files.temp_name("s", PARTIAL) and w.tmp.is_dir()
    w.abort()
    assert not w.tmp.exists()


def test_checkpoint_names_stay_importable():
    assert checkpoint.Owner is files.Owner and checkpoint.temp_name is files.temp_name
    assert checkpoint._start_time(os.getpid()) == files.start_time(os.getpid())
    assert checkpoint.LEFTOVER.match(".latest.tmp-12-34-h")["dest"] == "latest"
    assert not checkpoint.LEFTOVER.match(".latest.partial-12-34-h")  # a recording's is not a checkpoint's
