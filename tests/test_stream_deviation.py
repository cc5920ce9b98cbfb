"""The deviation of a streamed recording bounds what it holds: every row, every boundary, the worst one named."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.cli.main import main
from probe.data.vocab import Vocab
from probe.model import checkpoint
from probe.model.charrnn import CharRNN, ModelConfig
from probe.record import deviation as stream_deviation
from probe.record.recorder import record

Z_ROWS = (600, 1100)  # the only 'z's of the text: inside streams 1 and 2 of 4 (500 rows each)


@pytest.fixture(scope="module")
def counter_lstm(tmp_path_factory):
    """A hand-built 1x2 LSTM: unit 0 counts the 'z's read so far (forget gate 1, input gate open only on 'z'),
    unit 1 forgets everything at every step."""
    vocab = Vocab.byte()
    cfg = ModelConfig(vocab_size=vocab.size, model="lstm", rnn_size=2, num_layers=1, embed_size=1, dropout=0.0)
    model = CharRNN(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.weight[ord("z"), 0] = 1.0
        lstm = model.layers[0]
        i, f, g, o = (slice(k * 2, k * 2 + 2) for k in range(4))  # PyTorch's gate order, 2 units each
        lstm.weight_ih_l0[i, 0] = torch.tensor([40.0, 0.0])
        lstm.bias_ih_l0[i] = torch.tensor([-20.0, 30.0])
        lstm.bias_ih_l0[f] = torch.tensor([30.0, -30.0])  # unit 0 keeps c, unit 1 drops it
        lstm.bias_ih_l0[g] = torch.tensor([1.0, 0.0])  # unit 0 adds tanh(1) per 'z'
        lstm.weight_ih_l0[g, 0] = torch.tensor([0.0, 1.0])
        lstm.bias_ih_l0[o] = torch.tensor([30.0, 30.0])
    path = tmp_path_factory.mktemp("runs") / "counter"
    checkpoint.save(path, model, {"model_config": cfg.to_json(), "vocab": vocab.to_json(), "step": 0})
    return path


def _text() -> bytes:
    text = bytearray((b"abcdefghijklmnopqrstuvwxy " * 80)[:2000])
    for r in Z_ROWS:
        text[r] = ord("z")
    return bytes(text)


def _true_max(fast, exact) -> float:
    worst = 0.0
    for l in range(exact.num_layers):
        worst = max(worst, float(np.abs(fast.get(l, "h") - exact.get(l, "h")).max()))
        worst = max(worst, float(np.abs(np.tanh(fast.get(l, "c")) - np.tanh(exact.get(l, "c"))).max()))
    return worst


def test_a_later_boundary_worse_than_the_first_is_found_and_bounds_the_recording(counter_lstm, tmp_path):
    exact = record(counter_lstm, _text(), tmp_path / "one", dtype="float32")
    fast = record(counter_lstm, _text(), tmp_path / "four", dtype="float32", streams=4, warmup=100)
    dev, true = fast.meta["deviation"], _true_max(fast, exact)
    # the recording really holds a large error, only after the second boundary
    assert true > 0.9
    per_boundary = {b["row"]: b["max_abs"] for b in dev["boundaries"]}
    assert per_boundary[500] < 1e-4  # the first boundary is exact: measuring only there would say ~0
    assert per_boundary[500] < per_boundary[1000] < per_boundary[1500]
    assert dev["max_abs"] >= true - 1e-6
    assert dev["max_abs"] == pytest.approx(true, abs=1e-5)
    # the worst is named: stream 3 misses both 'z's from its start, in the counting unit
    assert dev["boundary_row"] == dev["worst"]["boundary_row"] == 1500
    assert dev["worst"]["unit"] in ("L0.h.0", "L0.c.0") and 1500 <= dev["worst"]["row"] < 2000
    assert dev["rows"] == 1500
    # exact starts: stream 1's by construction, stream 2's guess (stream 1's end) right away, stream 3's next
    assert dev["reference"]["iterations"] == 2 and dev["reference"]["one_stream_rows"] == 0


def test_the_one_stream_fallback_gives_the_same_deviation(counter_lstm, tmp_path, monkeypatch):
    fast = record(counter_lstm, _text(), tmp_path / "iterated", dtype="float32", streams=4, warmup=100)
    monkeypatch.setattr(stream_deviation, "MAX_ITERATIONS", 0)
    plain = record(counter_lstm, _text(), tmp_path / "one-stream", dtype="float32", streams=4, warmup=100)
    a, b = fast.meta["deviation"], plain.meta["deviation"]
    assert b["reference"]["iterations"] == 0 and b["reference"]["one_stream_rows"] == 1000
    assert [x["max_abs"] for x in b["boundaries"]] == pytest.approx([x["max_abs"] for x in a["boundaries"]],
                                                                   abs=1e-6)
    assert b["worst"] == a["worst"]


def test_gru_streams_bound_their_deviation(tiny_gru, shakespeare_text, tmp_path):
    text = shakespeare_text[:1500]
    exact = record(tiny_gru, text, tmp_path / "one", dtype="float32")
    fast = record(tiny_gru, text, tmp_path / "three", dtype="float32", streams=3, warmup=20)
    dev = fast.meta["deviation"]
    true = max(float(np.abs(fast.get(l, "h") - exact.get(l, "h")).max()) for l in range(exact.num_layers))
    assert "tanh_c" not in dev and dev["max_abs"] == pytest.approx(true, abs=1e-5) and true > 0


def test_cli_prints_the_worst_boundary(counter_lstm, tmp_path, capsys):
    (tmp_path / "t.txt").write_bytes(_text())
    code = main(["record", str(counter_lstm), str(tmp_path / "t.txt"), "--out", str(tmp_path / "r"),
                 "--streams", "4", "--warmup", "100"])
    out = capsys.readouterr().out
    assert code == 0 and "NOT exact" in out and "every row" in out and "from row 1,500" in out


def test_summary_of_an_older_recording_says_it_may_understate():
    meta = {"streams": 4, "warmup": 300,
            "deviation": {"exact": False, "mean_abs": 0.01, "max_abs": 0.49, "boundary_row": 1000, "rows": 1000}}
    line = stream_deviation.summary_line(meta)
    assert "0.490" in line and "first stream boundary only" in line
    assert stream_deviation.summary_line({"streams": 1, "deviation": {"exact": True}}) == "exact (one stream)"


def test_dashboard_shows_the_deviation(counter_lstm, tmp_path):
    from dashboards.service import DashboardService
    rec = record(counter_lstm, _text(), tmp_path / "r", streams=4, warmup=100)
    line = DashboardService(rec).describe()
    assert "NOT exact" in line and "from row 1,500" in line
    exact = record(counter_lstm, _text()[:300], tmp_path / "e")
    assert "exact (one stream)" in DashboardService(exact).describe()
