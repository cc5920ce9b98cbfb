"""evaluate_split and `probe evaluate`: exact loss over a whole split of the checkpoint's own corpus."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from probe.model import checkpoint as ckpt
from probe.data import corpus
from probe.cli.main import main
from probe.errors import ProbeError
from probe.train.evaluate import count_utf8_chars, evaluate_split, sequence_loss


def direct_test_loss(run, part: str = "test") -> tuple[float, int]:
    """Cross-entropy (nats, summed) of the model over the split, in one forward pass, computed here."""
    ck = ckpt.load(run)
    raw = corpus.read_bytes(corpus.locate(ck.meta["data"]["corpus"]))
    ids = ck.vocab.encode(raw if ck.vocab.encoding == "byte" else raw.decode("utf-8"))
    d = ck.meta["data"]["split"][part]
    seg = torch.as_tensor(ids[d[0]:d[1]])
    with torch.no_grad():
        logits, _ = ck.model(seg[None, :-1])
    return float(F.cross_entropy(logits[0], seg[1:], reduction="sum")), len(seg) - 1


def test_equals_direct_computation(tiny_lstm):
    nats, n = direct_test_loss(tiny_lstm)
    r = evaluate_split(tiny_lstm, "test", chunk=97)  # many chunks: the state must carry across them
    assert r["n_symbols"] == n == r["n_chars"]
    assert r["loss_nats"] == pytest.approx(nats / n, rel=1e-5)
    assert r["bits_per_symbol"] == pytest.approx(nats / n / math.log(2), rel=1e-5)
    assert r["bits_per_char"] == r["bits_per_symbol"]
    assert r["total_bits"] == pytest.approx(nats / math.log(2), rel=1e-5)
    assert 2.0 < r["bits_per_char"] < 8.0  # barely trained, but better than nothing on 60-odd symbols


def test_val_part_and_gru(tiny_gru):
    nats, n = direct_test_loss(tiny_gru, "val")
    r = evaluate_split(tiny_gru, "val")
    assert r["part"] == "val" and r["n_symbols"] == n
    assert r["loss_nats"] == pytest.approx(nats / n, rel=1e-5)


def test_chunk_size_does_not_change_the_result(tiny_lstm):
    a = evaluate_split(tiny_lstm, chunk=13)["loss_nats"]
    b = evaluate_split(tiny_lstm, chunk=100_000)["loss_nats"]
    assert a == pytest.approx(b, rel=1e-6)


def test_bf16_is_close_to_float32(tiny_lstm):
    from probe.train.precision import bf16_runs
    if not bf16_runs("cpu", "lstm"):
        pytest.skip("this CPU has no bfloat16 LSTM kernel (tests/test_train.py checks the refusal)")
    a = evaluate_split(tiny_lstm)["loss_nats"]
    b = evaluate_split(tiny_lstm, bf16=True)
    assert b["bf16"] and b["loss_nats"] == pytest.approx(a, rel=0.02)


def test_streams_cover_every_symbol_and_stay_close(tiny_lstm):
    exact = evaluate_split(tiny_lstm)
    par = evaluate_split(tiny_lstm, streams=4)
    assert par["n_symbols"] == exact["n_symbols"]
    assert par["loss_nats"] != exact["loss_nats"]  # zero-state starts are not exact...
    assert par["loss_nats"] == pytest.approx(exact["loss_nats"], rel=0.05)  # ...but close


def test_one_stream_per_symbol_is_zero_state_prediction(tiny_lstm):
    ck = ckpt.load(tiny_lstm)
    ids = np.array(ck.vocab.encode("First Citizen:\nBefore we proceed"))
    got = sequence_loss(ck.model, ids, streams=len(ids) - 1)
    with torch.no_grad():  # every symbol predicted from the one before it alone, from a zero state
        logits, _ = ck.model(torch.as_tensor(ids[:-1]).view(-1, 1))
    want = float(F.cross_entropy(logits[:, 0], torch.as_tensor(ids[1:]), reduction="sum"))
    assert got == pytest.approx(want, rel=1e-5)
    # with a remainder that does not fill the rows: still every symbol once
    three = sequence_loss(ck.model, ids, streams=3)
    assert len(ids) - 1 == 31 and 31 % 3 != 0
    assert three == pytest.approx(sequence_loss(ck.model, ids), rel=0.2)


def test_byte_model_reports_bits_per_char(tiny_byte_lstm):
    nats, n = direct_test_loss(tiny_byte_lstm)
    r = evaluate_split(tiny_byte_lstm)
    assert r["vocab"] == "byte" and r["n_symbols"] == n
    assert r["loss_nats"] == pytest.approx(nats / n, rel=1e-5)
    assert r["n_chars"] <= r["n_symbols"]
    assert r["bits_per_char"] == pytest.approx(r["total_bits"] / r["n_chars"])
    assert r["bits_per_char"] >= r["bits_per_symbol"]


def test_count_utf8_chars():
    text = "naïve café — 東京 🙂"
    assert count_utf8_chars(text.encode()) == len(text)
    assert count_utf8_chars(text.encode()[1:-1]) == len(text) - 1  # a cut character's tail counts nothing


def test_max_chars_and_bad_arguments(tiny_lstm):
    r = evaluate_split(tiny_lstm, max_chars=50)
    assert r["n_symbols"] == 49 and r["truncated"]
    with pytest.raises(ProbeError, match="part"):
        evaluate_split(tiny_lstm, "bogus")
    with pytest.raises(ProbeError, match="streams"):
        evaluate_split(tiny_lstm, streams=0)


def test_changed_corpus_is_refused(tiny_lstm, tmp_path):
    dest = tmp_path / "ck"
    shutil.copytree(ckpt.resolve(tiny_lstm), dest)
    meta = json.loads((dest / "checkpoint.json").read_text())
    meta["data"]["sha256"] = "0" * 64
    (dest / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(ProbeError, match="changed"):
        evaluate_split(dest)


def test_cli_prints_and_exits_zero(tiny_lstm, tiny_byte_lstm, capsys):
    assert main(["evaluate", str(tiny_lstm)]) == 0
    out = capsys.readouterr().out
    assert "bits/char" in out and "nats/char" in out and "exact, one stream" in out
    assert main(["evaluate", str(tiny_byte_lstm), "--part", "val", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["part"] == "val" and r["vocab"] == "byte" and r["bits_per_char"] > 0


@pytest.mark.parametrize("setup", ["missing", "junk", "not_probe"])
def test_cli_bad_checkpoint_is_one_line_exit_2(tmp_path, capsys, setup):
    path = tmp_path / "ck"
    if setup != "missing":
        path.mkdir()
        (path / "checkpoint.json").write_text("{not json" if setup == "junk" else '{"format": "other"}')
    assert main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("probe evaluate: error:") and "\n" not in err


def test_cli_bad_streams(tiny_lstm, capsys):
    assert main(["evaluate", str(tiny_lstm), "--streams", "0"]) == 2
    assert "--streams" in capsys.readouterr().err
