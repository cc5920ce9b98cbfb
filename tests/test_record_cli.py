"""`probe record` on the command line, and every bad-input path: one clear line, exit 2, nothing half-written."""
from __future__ import annotations

import errno

import numpy as np
import pytest

from probe.model import checkpoint
from probe.cli.main import build_parser, main
from probe.errors import ProbeError
from probe.record.recording import NpyWriter, Recording
from probe.record.recorder import record


def _one_error_line(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("probe record: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_help_says_streams_are_not_exact():
    sub = build_parser()._subparsers._group_actions[0].choices["record"]
    text = " ".join(sub.format_help().split())
    assert "--streams" in text and "NOT exact" in text and "meta.json" in text


def test_cli_chunk_size_default_is_the_recorders():
    from probe.record.recorder import CHUNK_ROWS
    sub = build_parser()._subparsers._group_actions[0].choices["record"]
    assert sub.get_default("chunk_size") == CHUNK_ROWS


def test_cli_records_a_file_range_and_prints_a_summary(tiny_lstm, small_text_file, tmp_path, capsys):
    out = tmp_path / "rec"
    code = main(["record", str(tiny_lstm), str(small_text_file), "--out", str(out), "--range", "100:700",
                 "--max-chars", "500", "--topk", "3", "--dtype", "float32", "--no-gates"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "recorded 500 rows" in stdout and "chars/s" in stdout and str(out) in stdout and "exact" in stdout
    rec = Recording.open(out)
    assert rec.text == small_text_file.read_text()[100:600]
    assert rec.kinds == ["h", "c"] and rec.topk_ids.shape == (500, 3) and rec.array("L0.h").dtype == np.float32
    assert rec.meta["text"]["source"] == str(small_text_file.resolve())
    assert rec.meta["text"]["char_range"] == [100, 600] and np.isfinite(rec.loss_bits[-1])


def test_cli_streams_print_their_deviation(tiny_lstm, tmp_path, capsys):
    code = main(["record", str(tiny_lstm), "--out", str(tmp_path / "s"), "--streams", "2", "--warmup", "20"])
    stdout = capsys.readouterr().out
    assert code == 0 and "NOT exact" in stdout and "deviation" in stdout
    meta = Recording.open(tmp_path / "s").meta
    assert meta["streams"] == 2 and meta["deviation"]["max_abs"] >= meta["deviation"]["mean_abs"] > 0


def test_unknown_characters_are_counted_mapped_and_reported(tiny_lstm, tmp_path, capsys):
    text = "Hello €uro ½ and €"
    code = main(["record", str(tiny_lstm), "--text", text, "--out", str(tmp_path / "u")])
    captured = capsys.readouterr()
    assert code == 0
    assert "3 characters are not in the model's vocabulary" in captured.err and "'€' x2" in captured.err
    rec = Recording.open(tmp_path / "u")
    assert rec.meta["unknown_chars"] == {"count": 3, "most_common": [["€", 2], ["½", 1]]}
    assert rec.text == text and rec.meta["text"]["source"] == "--text"
    ids = np.asarray(rec.array("ids"))
    assert (ids[[text.index("€"), text.index("½")]] == 0).all() and (ids == 0).sum() == 3


def test_empty_text_is_refused(tiny_lstm, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    err = _one_error_line(capsys, main(["record", str(tiny_lstm), str(empty), "--out", str(tmp_path / "e")]))
    assert "empty" in err
    err = _one_error_line(capsys, main(["record", str(tiny_lstm), "--text", "", "--out", str(tmp_path / "e")]))
    assert "empty" in err and not (tmp_path / "e").exists()


@pytest.mark.parametrize("bad", ["0:0", "5:2", "abc", "1:2:3", "99999999:"])
def test_bad_ranges_are_refused(tiny_lstm, tmp_path, capsys, bad):
    err = _one_error_line(capsys, main(["record", str(tiny_lstm), "--text", "hello", "--range", bad,
                                        "--out", str(tmp_path / "r")]))
    assert "--range" in err


def test_checkpoint_that_does_not_load(tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "checkpoint.json").write_text("{not json")
    err = _one_error_line(capsys, main(["record", str(broken), "--text", "hi", "--out", str(tmp_path / "r")]))
    assert "corrupted checkpoint" in err
    err = _one_error_line(capsys, main(["record", str(tmp_path / "nowhere"), "--text", "hi",
                                        "--out", str(tmp_path / "r")]))
    assert "no such checkpoint" in err and not (tmp_path / "r").exists()


def test_existing_output_is_refused_then_replaced_with_overwrite(tiny_lstm, tmp_path, capsys):
    out = tmp_path / "rec"
    assert main(["record", str(tiny_lstm), "--text", "first text", "--out", str(out)]) == 0
    capsys.readouterr()
    err = _one_error_line(capsys, main(["record", str(tiny_lstm), "--text", "second", "--out", str(out)]))
    assert "already exists" in err and "--overwrite" in err
    assert Recording.open(out).text == "first text"
    assert main(["record", str(tiny_lstm), "--text", "second", "--out", str(out), "--overwrite"]) == 0
    assert Recording.open(out).text == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]  # no temporary folders left behind


def test_unwritable_output_folder(tiny_lstm, tmp_path, capsys):
    a_file = tmp_path / "plain-file"
    a_file.write_text("x")
    err = _one_error_line(capsys, main(["record", str(tiny_lstm), "--text", "hello",
                                        "--out", str(a_file / "rec")]))
    assert "cannot" in err


def test_full_disk_leaves_no_recording_that_looks_complete(tiny_lstm, tmp_path, capsys, monkeypatch):
    calls = {"n": 0}
    real_write = NpyWriter.write

    def write_until_full(self, chunk):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, chunk)

    monkeypatch.setattr(NpyWriter, "write", write_until_full)
    out = tmp_path / "full"
    err = _one_error_line(capsys, main(["record", str(tiny_lstm), "--text", "some text " * 50, "--out", str(out)]))
    assert "No space left on device" in err and "disk full" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no partial folder, no meta.json anywhere
    with pytest.raises(ProbeError, match="not a complete recording|no such recording"):
        Recording.open(out)


def test_full_disk_while_replacing_keeps_the_old_recording(tiny_lstm, tmp_path, monkeypatch):
    out = tmp_path / "rec"
    record(tiny_lstm, "old text", out)

    def full(self, chunk):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(NpyWriter, "write", full)
    with pytest.raises(ProbeError, match="No space left"):
        record(tiny_lstm, "new text", out, overwrite=True)
    assert Recording.open(out).text == "old text"


def test_text_and_text_file_together_are_refused(tiny_lstm, small_text_file, tmp_path, capsys):
    err = _one_error_line(capsys, main(["record", str(tiny_lstm), str(small_text_file), "--text", "x",
                                        "--out", str(tmp_path / "r")]))
    assert "either" in err


@pytest.mark.parametrize("flag,value", [("--streams", "0"), ("--warmup", "-1"), ("--chunk-size", "0"),
                                        ("--topk", "-2"), ("--max-chars", "0")])
def test_bad_numbers_are_refused(tiny_lstm, tmp_path, capsys, flag, value):
    err = _one_error_line(capsys, main(["record", str(tiny_lstm), "--text", "hello", flag, value,
                                        "--out", str(tmp_path / "r")]))
    assert flag in err and not (tmp_path / "r").exists()


def test_a_corpus_that_changed_is_refused(tiny_lstm, tmp_path):
    ck = checkpoint.load(tiny_lstm)
    ck.meta["data"]["sha256"] = "0" * 64
    with pytest.raises(ProbeError, match="changed since the model was trained"):
        record(ck, None, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_reuse_keeps_a_matching_recording_and_redoes_a_stale_one(tiny_lstm, tiny_gru, tmp_path, capsys):
    out = tmp_path / "rec"
    args = ["record", str(tiny_lstm), "--text", "some text to record", "--out", str(out), "--quiet"]
    assert main(args) == 0
    first = (out / "meta.json").read_text()
    assert main(args + ["--reuse"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (out / "meta.json").read_text() == first  # kept, not rewritten
    assert main(args + ["--reuse", "--topk", "3"]) == 0  # other options: recorded again
    assert Recording.open(out).meta["topk"] == 3
    assert main(["record", str(tiny_lstm), "--text", "another text", "--out", str(out), "--reuse", "-q"]) == 0
    assert Recording.open(out).text == "another text"
    assert main(["record", str(tiny_gru), "--text", "another text", "--out", str(out), "--reuse", "-q"]) == 0
    rec = Recording.open(out)  # other weights: recorded again
    assert rec.meta["model_config"]["model"] == "gru" and not rec.reused
