"""probe.checks: library errors name the Python parameter; the CLI shows the option that set it."""
from __future__ import annotations

import pytest

from probe.checks import ParamError, check_at_least, check_choice, check_int, check_number
from probe.cli.main import main
from probe.errors import ProbeError
from probe.model.charrnn import ModelConfig
from probe.record.recorder import record


@pytest.mark.parametrize("call, message", [
    (lambda: check_int("topk", -1, min=0), "topk must be at least 0, not -1"),
    (lambda: check_int("n", 7, max=5), "n must be at most 5, not 7"),
    (lambda: check_int("n", 2.5), "n must be an integer, not 2.5"),
    (lambda: check_int("n", True), "n must be an integer, not True"),
    (lambda: check_number("dropout", 1.0, min=0, max=1, max_open=True), "dropout must be in [0, 1), not 1"),
    (lambda: check_number("learning_rate", 0.0, min=0, min_open=True), "learning_rate must be positive, not 0"),
    (lambda: check_number("x", float("nan")), "x must be a finite number, not nan"),
    (lambda: check_number("x", "1"), "x must be a number, not '1'"),
    (lambda: check_choice("dtype", "half", ("compact", "float32")),
     "dtype must be one of compact, float32, not 'half'"),
    (lambda: check_at_least(streams=(1, 1), warmup=(-5, 0)), "warmup must be at least 0, not -5"),
])
def test_messages_name_the_parameter(call, message):
    with pytest.raises(ParamError) as e:
        call()
    assert str(e.value) == message and isinstance(e.value, ProbeError)
    assert e.value.named("--flag").startswith("--flag must be")


def test_good_values_come_back_converted():
    assert check_int("n", 3.0, min=1) == 3 and isinstance(check_int("n", 3.0), int)
    assert check_number("p", 1, min=0, max=1) == 1.0 and check_choice("c", "b", "abc") == "b"


def test_the_library_names_parameters_not_options(tmp_path):
    with pytest.raises(ParamError, match=r"^topk must be at least 0, not -1$"):
        record(tmp_path / "no-checkpoint", "text", tmp_path / "rec", topk=-1)
    with pytest.raises(ParamError, match=r"^rnn_size must be at least 1, not 0$"):
        ModelConfig(vocab_size=5, rnn_size=0).validate()
    assert not (tmp_path / "rec").exists()


def _error(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    return err


def test_the_cli_shows_the_option_that_set_the_parameter(tiny_lstm, tmp_path, capsys):
    out = str(tmp_path / "rec")
    err = _error(capsys, main(["record", str(tiny_lstm), "--text", "hello", "--out", out, "--topk", "-1"]))
    assert err == "probe record: error: --topk must be at least 0, not -1"
    err = _error(capsys, main(["record", str(tiny_lstm), "--text", "hello", "--out", out, "--chunk-size", "0"]))
    assert "--chunk-size must be at least 1" in err  # dest chunk_size
    err = _error(capsys, main(["record", str(tiny_lstm), "--text", "hello", "--out", out, "--range", "3:3"]))
    assert "--range 3:3 selects no text" in err  # dest char_range
    assert not (tmp_path / "rec").exists()


def test_advice_names_settings_in_python_and_options_on_the_command_line():
    e = ParamError("out", "x holds a run; use {resume=x} or another {out} ({keep} stays)", advice=True,
                   others=("resume",))
    assert str(e) == "x holds a run; use resume=x or another out ({keep} stays)"
    options = {"resume": "--resume", "out": "--out"}
    assert e.named(lambda p: options.get(p, p)) == "x holds a run; use --resume x or another --out ({keep} stays)"
    flag = ParamError("overwrite", "r exists; pass {overwrite=True} to replace it", advice=True)
    assert str(flag) == "r exists; pass overwrite=True to replace it"
    assert flag.named("--overwrite") == "r exists; pass --overwrite to replace it"
    assert ParamError("text", "give {text}", advice=True).named("TEXT_FILE") == "give TEXT_FILE"  # a positional


def test_an_existing_recording_is_refused_naming_overwrite(tiny_lstm, tmp_path, capsys):
    out = tmp_path / "rec"
    out.mkdir()
    with pytest.raises(ParamError, match=r"already exists; pass overwrite=True to replace it$"):
        record(tiny_lstm, "hello", out)
    err = _error(capsys, main(["record", str(tiny_lstm), "--text", "hello", "--out", str(out)]))
    assert err.endswith("already exists; pass --overwrite to replace it")
