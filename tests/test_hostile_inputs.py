"""Every hostile input gets one clear line: slow regexes, broken recordings, sizes that cannot be allocated,
libraries' own errors, full disks. Each case asserts exit status, one stderr line, no traceback, and that
nothing half-written is left behind."""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from probe.analysis import concepts, safe_regex
from probe.cli.main import main
from probe.errors import ProbeError
from probe.record.recording import Recording
from tests.synthetic_recordings import make_recording, noise_arrays, wiki_like_text

SLOW = r"(a|aa)+$"  # backtracks without end over a run of a's that is not at the end of the text
TEXT = wiki_like_text(40) + "a" * 40 + "b\n" + wiki_like_text(10, seed=1)


@pytest.fixture(scope="module")
def rec_path(tmp_path_factory) -> Path:
    arrays = noise_arrays(len(TEXT), kinds=("h", "c", "i", "f", "g", "o"), seed=2)
    return make_recording(tmp_path_factory.mktemp("rec") / "rec", TEXT, arrays)


@pytest.fixture
def rec_copy(rec_path, tmp_path) -> Path:
    dest = tmp_path / "rec"
    shutil.copytree(rec_path, dest)
    return dest


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _is_progress(line: str) -> bool:
    """`probe report: gate saturation` and the like: what the report is doing, not an error."""
    return line.startswith("probe report: ") and not line.startswith("probe report: error: ")


def one_line(code: int, err: str, *words: str) -> str:
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = [l for l in err.splitlines() if l.strip() and not _is_progress(l)]
    assert len(lines) == 1, err
    assert not lines[0].rstrip().endswith("()"), lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- 1. regexes with a time limit

REGEX_CASES = {
    "find-neurons": lambda rec, out: ["find-neurons", rec, "--pattern", SLOW, "--n-perm", "2"],
    "fit-probe": lambda rec, out: ["fit-probe", rec, "--pattern", SLOW, "--no-sparse"],
    "embed": lambda rec, out: ["embed", rec, "--layer", "0", "--pattern", SLOW, "--n", "50", "--csv", out / "e.csv"],
    "report": lambda rec, out: ["report", rec, "--concepts", SLOW, "--out", out / "report", "--no-images",
                                "--embedding", "none"],
}


@pytest.mark.parametrize("command", sorted(REGEX_CASES))
def test_a_catastrophic_regex_stops_at_the_limit(command, rec_path, tmp_path, capsys):
    code, err = run(capsys, *REGEX_CASES[command](rec_path, tmp_path), "--regex-timeout", "0.3")
    one_line(code, err, "too slow", SLOW, "0.3 s", "--regex-timeout")
    assert listing(tmp_path) == []


def test_the_environment_sets_the_limit_and_a_bad_limit_is_one_line(rec_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PROBE_REGEX_TIMEOUT", "0.2")
    one_line(*run(capsys, "find-neurons", rec_path, "--pattern", SLOW), "0.2 s")
    monkeypatch.setenv("PROBE_REGEX_TIMEOUT", "soon")
    one_line(*run(capsys, "find-neurons", rec_path, "--pattern", "a"), "PROBE_REGEX_TIMEOUT", "'soon'")
    monkeypatch.delenv("PROBE_REGEX_TIMEOUT")
    one_line(*run(capsys, "find-neurons", rec_path, "--concept", "url", "--regex-timeout", "-1"),
             "--regex-timeout must be a positive number")


def test_the_library_limits_regexes_and_built_in_concepts_alike():
    with pytest.raises(safe_regex.RegexTimeout, match=r"0\.2 s limit.*timeout=SECONDS"):
        concepts.get(SLOW, timeout=0.2).labels(TEXT)
    assert concepts.builtin("url", timeout=0.2).fn.timeout == 0.2  # built-in regexes run through the same limit
    assert concepts.BUILTIN["wiki-link"].labels("a [[b]] c").tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0]
    with pytest.raises(ProbeError, match="timeout must be a positive"):
        concepts.get("a", timeout=0)
    with pytest.raises(ProbeError, match="too slow"):  # the dashboard's limit, in-process now
        safe_regex.regex_labels(SLOW, TEXT, timeout=0.2)


# --------------------------------------------------------------------------- 2. broken recordings

def _npy_truncated(rec: Path) -> str:
    f = rec / "L0.h.npy"
    f.write_bytes(f.read_bytes()[:-100])
    return "L0.h.npy: truncated"


def _npy_replaced(rec: Path) -> str:
    np.save(rec / "L1.c.npy", np.zeros((len(TEXT), 4), np.float32))
    return "L1.c.npy: shape"


def _npy_garbage(rec: Path) -> str:
    (rec / "L0.c.npy").write_bytes(os.urandom(4000))
    return "L0.c.npy: not a valid .npy"


def _npy_objects(rec: Path) -> str:
    np.save(rec / "ids.npy", np.array([{"a": 1}] * len(TEXT), dtype=object), allow_pickle=True)
    return "ids.npy: holds object"


def _npy_missing(rec: Path) -> str:
    (rec / "L1.h.npy").unlink()
    return "L1.h.npy: missing"


def _meta(change):
    def broken(rec: Path) -> str:
        meta = json.loads((rec / "meta.json").read_text())
        meta, word = change(meta)
        (rec / "meta.json").write_text(json.dumps(meta))
        return word
    return broken


def _text_cut(rec: Path) -> str:
    (rec / "text.txt").write_text(TEXT[:-7], encoding="utf-8")
    return "text.txt"


BROKEN = {
    "truncated npy": _npy_truncated,
    "replaced npy": _npy_replaced,
    "garbage npy": _npy_garbage,
    "object npy": _npy_objects,
    "missing npy": _npy_missing,
    "meta is a list": _meta(lambda m: ([m], "meta.json")),
    "meta lacks n_rows": _meta(lambda m: ({k: v for k, v in m.items() if k != "n_rows"}, "no 'n_rows'")),
    "n_rows disagrees": _meta(lambda m: (dict(m, n_rows=m["n_rows"] + 5), "does not fit the recording")),
    "rnn_size a string": _meta(lambda m: (dict(m, model_config=dict(m["model_config"], rnn_size="8")), "rnn_size")),
    "vocab a list": _meta(lambda m: (dict(m, vocab=[]), "'vocab' must be an object")),
    "arrays outside": _meta(lambda m: (dict(m, arrays=dict(m["arrays"], ids=dict(m["arrays"]["ids"],
                                                                              file="../ids.npy"))), "'../ids.npy'")),
    "wrong dtype in meta": _meta(lambda m: (dict(m, arrays=dict(m["arrays"], **{"L0.h": dict(
        m["arrays"]["L0.h"], dtype="float16")})), "meta.json says float16")),
    "text cut short": _text_cut,
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_recording_is_named_when_opened(case, rec_copy, tmp_path, capsys):
    word = BROKEN[case](rec_copy)
    code, err = run(capsys, "find-neurons", rec_copy, "--concept", "wiki-link", "--n-perm", "2",
                    "--csv", tmp_path / "out.csv")
    one_line(code, err, word)
    assert not (tmp_path / "out.csv").exists()


def test_a_sound_recording_opens(rec_path):
    rec = Recording.open(rec_path)
    assert rec.n_rows == len(TEXT) and rec.text == TEXT


# --------------------------------------------------------------------------- 3. sizes that cannot be allocated

@pytest.mark.parametrize("options, words", [
    (["--rnn-size", "1000000000"], ["memory", "rnn_size"]),
    (["--num-layers", "100000"], ["memory", "num_layers"]),
    (["--batch-size", "100000000", "--seq-length", "100000"], ["memory", "batch_size"]),
])
def test_a_model_too_large_for_memory_is_refused_before_trying(options, words, small_text_file, tmp_path, capsys):
    code, err = run(capsys, "train", "--data", small_text_file, "--out", tmp_path / "run", "--quiet",
                    "--max-iters", "1", *options)
    one_line(code, err, *words)
    assert listing(tmp_path) == []


def test_record_chunks_too_large_for_memory_are_refused(tiny_lstm, tmp_path, capsys, monkeypatch):
    import probe.runtime.memory as memory
    monkeypatch.setattr(memory, "available_bytes", lambda: 200_000)
    code, err = run(capsys, "record", tiny_lstm, "--text", "to be or not to be " * 100, "--out", tmp_path / "r",
                    "--chunk-size", "100000", "--quiet")
    one_line(code, err, "--chunk-size 100,000 needs about", "memory")
    assert listing(tmp_path) == []


def test_find_neurons_refuses_more_permutations_than_memory_holds(rec_path, tmp_path, capsys):
    code, err = run(capsys, "find-neurons", rec_path, "--concept", "wiki-link", "--n-perm", "100000000000",
                    "--csv", tmp_path / "u.csv")
    one_line(code, err, "--n-perm 100,000,000,000 needs about", "memory")
    assert listing(tmp_path) == []


# --------------------------------------------------------------------------- 4. libraries' own errors

def _raiser(exc):
    def boom(*a, **k):
        raise exc
    return boom


@pytest.mark.parametrize("exc, words, status", [
    (RuntimeError(), ["RuntimeError (no message)", "PROBE_DEBUG=1"], 1),
    (ValueError("bad\nsecond line"), ["ValueError: bad"], 1),
    (OSError(), ["OSError"], 2),
    (OSError(errno.ENOSPC, "No space left on device"), ["No space left on device"], 2),
    (MemoryError(), ["out of memory"], 2),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 4000000000000 bytes."), ["out of memory", "4000000000000 bytes"], 2),
])
def test_any_exception_is_one_line_never_empty(exc, words, status, rec_path, capsys, monkeypatch):
    import probe.analysis.saturation as saturation  # the command imports it inside run()
    monkeypatch.setattr(saturation, "gate_saturation", _raiser(exc))
    code, err = run(capsys, "saturation", rec_path)
    assert code == status
    line = one_line(code, err, *words)
    assert "second line" not in line


def test_probe_debug_shows_the_traceback(rec_path, monkeypatch):
    import probe.analysis.saturation as saturation  # the command imports it inside run()
    monkeypatch.setattr(saturation, "gate_saturation", _raiser(KeyError("x")))
    monkeypatch.setenv("PROBE_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["saturation", str(rec_path)])


def test_safetensors_disk_full_at_save_is_one_line(tiny_lstm, tmp_path, capsys, monkeypatch):
    from safetensors import SafetensorError
    import probe.model.checkpoint as checkpoint
    full = SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                           'message: "No space left on device" })')
    monkeypatch.setattr(checkpoint, "save_file", _raiser(full))
    code, err = run(capsys, "export", tiny_lstm, "--out", tmp_path / "shipped")
    one_line(code, err, "No space left on device")
    assert code == 2 and listing(tmp_path) == []


# --------------------------------------------------------------------------- 5. results whole or not at all

def _full_disk_at_fsync(monkeypatch):
    import probe.files as files
    real = files.os.fsync

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(files.os, "fsync", fsync)
    return real


def _full_disk_mid_csv(monkeypatch):
    real = pd.DataFrame.to_csv

    def to_csv(self, path_or_buf=None, *a, **k):
        if path_or_buf is None:
            return real(self, None, *a, **k)
        text = real(self, None, *a, **k)
        if hasattr(path_or_buf, "write"):
            path_or_buf.write(text[: len(text) // 2])
        else:
            Path(path_or_buf).write_text(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)


RESULTS = {
    "find-neurons --csv": (lambda rec, o: ["find-neurons", rec, "--concept", "wiki-link", "--n-perm", "2", "--csv", o],
                           _full_disk_mid_csv, "out.csv"),
    "find-neurons --json": (lambda rec, o: ["find-neurons", rec, "--concept", "wiki-link", "--n-perm", "2", "--json", o],
                            _full_disk_at_fsync, "out.json"),
    "fit-probe --json": (lambda rec, o: ["fit-probe", rec, "--concept", "wiki-link", "--no-sparse", "--json", o],
                         _full_disk_at_fsync, "out.json"),
    "neuron --json": (lambda rec, o: ["neuron", rec, "L0.h.1", "--json", o], _full_disk_at_fsync, "out.json"),
    "embed --csv": (lambda rec, o: ["embed", rec, "--layer", "0", "--n", "50", "--csv", o], _full_disk_mid_csv,
                    "out.csv"),
    "saturation --csv": (lambda rec, o: ["saturation", rec, "--csv", o], _full_disk_at_fsync, "out.csv"),
    "heatmap --out": (lambda rec, o: ["heatmap", rec, "--unit", "L0.h.1", "--range", "0:200", "--out", o],
                      None, "out.html"),
    "report --out": (lambda rec, o: ["report", rec, "--out", o, "--no-images", "--embedding", "none"],
                     _full_disk_mid_csv, "report"),
}


@pytest.mark.parametrize("case", sorted(RESULTS))
def test_a_full_disk_leaves_no_partial_result(case, rec_path, tmp_path, capsys, monkeypatch):
    argv, full_disk, name = RESULTS[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    if full_disk is None:  # figures: the export's own writer, made to fail at its flush
        import probe.figures.export as export
        monkeypatch.setattr(export, "fsync_file", _raiser(OSError(errno.ENOSPC, "No space left on device")))
    else:
        full_disk(monkeypatch)
    code, err = run(capsys, *argv(rec_path, out_dir / name))
    one_line(code, err, "No space left on device")
    assert listing(out_dir) == [], listing(out_dir)


def test_a_failed_write_keeps_the_old_file_whole(rec_path, tmp_path, capsys, monkeypatch):
    old = tmp_path / "units.csv"
    old.write_text("the previous table\n")
    _full_disk_at_fsync(monkeypatch)
    one_line(*run(capsys, "saturation", rec_path, "--csv", old), str(old))
    assert old.read_text() == "the previous table\n" and listing(tmp_path) == ["units.csv"]
