"""The recorder is exact: h, c and gates equal step-by-step cell references; top-k and loss a direct softmax."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from probe.model import checkpoint
from probe.names import parse_unit
from probe.record.recording import Recording
from probe.record.recorder import record, record_arrays, untrained_like

TOL = 1e-5


def _copy(cell: nn.Module, layer: nn.Module) -> nn.Module:
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(layer, f"{name}_l0"))
    return cell


@torch.no_grad()
def lstm_reference(model, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Step by step with nn.LSTMCell; gates from the same weights at each step."""
    x = model.embed(torch.as_tensor(ids).view(1, -1))[0]
    ref = {}
    for l, layer in enumerate(model.layers):
        H = layer.hidden_size
        cell = _copy(nn.LSTMCell(layer.input_size, H), layer)
        h, c = torch.zeros(1, H), torch.zeros(1, H)
        hs, cs, gs = [], [], []
        for t in range(x.shape[0]):
            pre = x[t:t + 1] @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
            i, f, g, o = pre.chunk(4, dim=1)
            gs.append(torch.cat([i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()]))
            h, c = cell(x[t:t + 1], (h, c))
            hs.append(h)
            cs.append(c)
        ref[f"L{l}.h"], ref[f"L{l}.c"] = torch.cat(hs).numpy(), torch.cat(cs).numpy()
        gates = torch.stack(gs)  # (T, 4, H)
        for j, name in enumerate("ifgo"):
            ref[f"L{l}.gates.{name}"] = gates[:, j].numpy()
        _, (h_n, c_n) = layer(x.view(1, *x.shape))
        ref[f"L{l}.h_n"], ref[f"L{l}.c_n"] = h_n[0, 0].numpy(), c_n[0, 0].numpy()
        x = torch.cat(hs)
    return ref


@torch.no_grad()
def gru_reference(model, ids: np.ndarray) -> dict[str, np.ndarray]:
    x = model.embed(torch.as_tensor(ids).view(1, -1))[0]
    ref = {}
    for l, layer in enumerate(model.layers):
        H = layer.hidden_size
        cell = _copy(nn.GRUCell(layer.input_size, H), layer)
        h = torch.zeros(1, H)
        hs, gs = [], []
        for t in range(x.shape[0]):
            gi = x[t:t + 1] @ cell.weight_ih.T + cell.bias_ih
            gh = h @ cell.weight_hh.T + cell.bias_hh
            r = (gi[:, :H] + gh[:, :H]).sigmoid()
            z = (gi[:, H:2 * H] + gh[:, H:2 * H]).sigmoid()
            n = (gi[:, 2 * H:] + r * gh[:, 2 * H:]).tanh()
            gs.append(torch.cat([r, z, n]))
            h = cell(x[t:t + 1], h)
            hs.append(h)
        ref[f"L{l}.h"] = torch.cat(hs).numpy()
        gates = torch.stack(gs)
        for j, name in enumerate("rzn"):
            ref[f"L{l}.gates.{name}"] = gates[:, j].numpy()
        _, h_n = layer(x.view(1, *x.shape))
        ref[f"L{l}.h_n"] = h_n[0, 0].numpy()
        x = torch.cat(hs)
    return ref


@torch.no_grad()
def rnn_reference(model, ids: np.ndarray) -> dict[str, np.ndarray]:
    x = model.embed(torch.as_tensor(ids).view(1, -1))[0]
    ref = {}
    for l, layer in enumerate(model.layers):
        cell = _copy(nn.RNNCell(layer.input_size, layer.hidden_size), layer)
        h = torch.zeros(1, layer.hidden_size)
        hs = []
        for t in range(x.shape[0]):
            h = cell(x[t:t + 1], h)
            hs.append(h)
        ref[f"L{l}.h"] = torch.cat(hs).numpy()
        x = torch.cat(hs)
    return ref


def test_lstm_states_and_gates_equal_lstmcell_reference(tiny_lstm, shakespeare_text):
    ck = checkpoint.load(tiny_lstm)
    text = shakespeare_text[5000:5400]
    got = record_arrays(ck.model, ck.vocab, text)
    ref = lstm_reference(ck.model, ck.vocab.encode(text))
    for l in range(2):
        for name in (f"L{l}.h", f"L{l}.c") + tuple(f"L{l}.gates.{g}" for g in "ifgo"):
            assert got[name].dtype == np.float32
            np.testing.assert_allclose(got[name], ref[name], atol=TOL, rtol=0, err_msg=name)
        np.testing.assert_allclose(got[f"L{l}.h"][-1], ref[f"L{l}.h_n"], atol=TOL, rtol=0)
        np.testing.assert_allclose(got[f"L{l}.c"][-1], ref[f"L{l}.c_n"], atol=TOL, rtol=0)
    assert np.abs(got["L1.c"]).max() > 0.1  # the comparison is not between zeros


def test_gru_states_and_gates_equal_grucell_reference(tiny_gru, shakespeare_text):
    ck = checkpoint.load(tiny_gru)
    text = shakespeare_text[7000:7300]
    got = record_arrays(ck.model, ck.vocab, text)
    ref = gru_reference(ck.model, ck.vocab.encode(text))
    assert "L0.c" not in got
    for l in range(2):
        for name in (f"L{l}.h",) + tuple(f"L{l}.gates.{g}" for g in "rzn"):
            np.testing.assert_allclose(got[name], ref[name], atol=TOL, rtol=0, err_msg=name)
        np.testing.assert_allclose(got[f"L{l}.h"][-1], ref[f"L{l}.h_n"], atol=TOL, rtol=0)


def test_rnn_records_h_only_and_equals_rnncell(tiny_rnn, shakespeare_text):
    ck = checkpoint.load(tiny_rnn)
    text = shakespeare_text[100:400]
    got = record_arrays(ck.model, ck.vocab, text)
    ref = rnn_reference(ck.model, ck.vocab.encode(text))
    assert not [k for k in got if "gates" in k or k.endswith(".c")]
    for l in range(2):
        np.testing.assert_allclose(got[f"L{l}.h"], ref[f"L{l}.h"], atol=TOL, rtol=0)


@torch.no_grad()
def test_topk_and_loss_equal_a_direct_softmax(tiny_lstm, shakespeare_text):
    ck = checkpoint.load(tiny_lstm)
    text = shakespeare_text[:500]
    got = record_arrays(ck.model, ck.vocab, text, topk=3)
    ids = ck.vocab.encode(text)
    logits, _ = ck.model(torch.as_tensor(ids).view(1, -1))
    probs = torch.softmax(logits[0], dim=-1).numpy()
    expect_ids = np.argsort(-probs, axis=1, kind="stable")[:, :3]
    assert got["topk_ids"].shape == (500, 3)
    np.testing.assert_array_equal(got["topk_ids"], expect_ids)
    np.testing.assert_allclose(got["topk_probs"], np.take_along_axis(probs, expect_ids, 1), atol=1e-6)
    expect_loss = -np.log2(probs[np.arange(499), ids[1:]])
    np.testing.assert_allclose(got["loss_bits"][:-1], expect_loss, rtol=1e-5, atol=1e-5)
    assert np.isnan(got["loss_bits"][-1])  # nothing follows the text


def test_chunk_sizes_give_the_same_arrays(tiny_lstm, shakespeare_text, tmp_path):
    text = shakespeare_text[2000:2300]
    recs = [record(tiny_lstm, text, tmp_path / f"c{cs}", chunk_size=cs, dtype="float32")
            for cs in (1, 7, 100, len(text))]
    for name in recs[0].meta["arrays"]:
        base = np.asarray(recs[0].array(name))
        for rec in recs[1:]:
            other = np.asarray(rec.array(name))
            if base.dtype.kind == "f":
                np.testing.assert_allclose(other, base, atol=1e-6, rtol=0, err_msg=name)
            else:
                np.testing.assert_array_equal(other, base, err_msg=name)
    # and the state really is carried: chunk size 1 equals the in-memory single pass
    ck = checkpoint.load(tiny_lstm)
    mem = record_arrays(ck.model, ck.vocab, text)
    np.testing.assert_allclose(recs[0].get(1, "c"), mem["L1.c"], atol=1e-5)


def test_recording_of_the_validation_split(tiny_lstm, small_text_file):
    ck = checkpoint.load(tiny_lstm)
    out = tiny_lstm.parent / "rec-val"
    rec = record(tiny_lstm, None, out, max_chars=800)
    meta = json.loads((out / "meta.json").read_text())
    a, b = ck.meta["data"]["split"]["val"]
    full = small_text_file.read_text()
    assert rec.n_rows == meta["n_rows"] == 800
    assert rec.text == full[a:a + 800]
    assert meta["text"]["char_range"] == [a, a + 800]
    assert meta["text"]["source"].startswith("val split of")
    assert meta["checkpoint"]["sha256"] == ck.meta["files"]["model.safetensors"]
    assert meta["checkpoint"]["path"] == str(ck.path.resolve()) and meta["checkpoint"]["untrained"] is False
    assert meta["checkpoint"]["step"] == ck.meta["step"]
    assert meta["dtype"] == "compact" and meta["topk"] == 5 and meta["streams"] == 1
    assert meta["deviation"]["exact"] is True
    assert meta["unknown_chars"]["count"] == 0
    for key in ("probe_version", "created", "seconds", "chars_per_s", "model_config", "vocab"):
        assert key in meta
    # compact storage: h and gates float16, c float32
    assert rec.array("L0.h").dtype == np.float16 and rec.array("L0.gates.f").dtype == np.float16
    assert rec.array("L0.c").dtype == np.float32 and rec.loss_bits.dtype == np.float32
    # the text continues after the recorded part: the last row has a loss for the next corpus character
    assert np.isfinite(rec.loss_bits[-1])
    mem = record_arrays(ck.model, ck.vocab, full[a:a + 801])
    np.testing.assert_allclose(rec.loss_bits, mem["loss_bits"][:800], atol=1e-4)
    np.testing.assert_allclose(rec.get(1, "h"), mem["L1.h"][:800], atol=1e-3)  # float16
    np.testing.assert_allclose(rec.get(1, "c"), mem["L1.c"][:800], atol=1e-5)  # float32
    np.testing.assert_array_equal(np.asarray(rec.array("ids")), ck.vocab.encode(full[a:a + 800]))
    assert rec.topk(0, 1)[0][0][0] in ck.vocab.symbols


def test_parallel_streams_measure_their_deviation_over_every_row(tiny_lstm, shakespeare_text, tmp_path):
    text = shakespeare_text[:4000]
    exact = record(tiny_lstm, text, tmp_path / "one", dtype="float32")
    fast = record(tiny_lstm, text, tmp_path / "four", dtype="float32", streams=4, warmup=100)
    cold = record(tiny_lstm, text, tmp_path / "cold", dtype="float32", streams=4, warmup=0)
    dev = fast.meta["deviation"]
    assert fast.meta["streams"] == 4 and fast.meta["warmup"] == 100 and dev["exact"] is False
    assert dev["rows"] == 3000 and [b["row"] for b in dev["boundaries"]] == [1000, 2000, 3000]
    assert 0 < dev["mean_abs"] <= dev["max_abs"] == max(b["max_abs"] for b in dev["boundaries"])
    assert dev["boundary_row"] == dev["worst"]["boundary_row"] <= dev["worst"]["row"] < dev["boundary_row"] + 1000
    assert "h" in dev and "tanh_c" in dev and "method" in dev
    h1, h4, h0 = exact.get(1, "h"), fast.get(1, "h"), cold.get(1, "h")
    np.testing.assert_allclose(h4[:1000], h1[:1000], atol=1e-5)  # the first stream is exact
    assert np.abs(h4 - h1).mean() < 0.02
    # the measured deviation is the real one over every recorded row, all layers and units
    layers = range(exact.num_layers)
    worst_h = max(np.abs(fast.get(l, "h") - exact.get(l, "h")).max() for l in layers)
    worst_c = max(np.abs(np.tanh(fast.get(l, "c")) - np.tanh(exact.get(l, "c"))).max() for l in layers)
    assert dev["h"]["max_abs"] == pytest.approx(worst_h, abs=1e-5)
    assert dev["tanh_c"]["max_abs"] == pytest.approx(worst_c, abs=1e-5)
    # and the worst row and unit named are where it is
    unit, row = parse_unit(dev["worst"]["unit"]), dev["worst"]["row"]
    a, b = fast.get(unit.layer, unit.kind)[row, unit.index], exact.get(unit.layer, unit.kind)[row, unit.index]
    if unit.kind == "c":
        a, b = np.tanh(a), np.tanh(b)
    assert abs(a - b) == pytest.approx(dev["max_abs"], abs=1e-5)
    # compact recordings compare as stored: both sides rounded to float16
    compact = record(tiny_lstm, text, tmp_path / "compact", streams=4, warmup=100)
    worst16 = max(np.abs(compact.get(l, "h").astype(np.float32)
                         - exact.get(l, "h").astype(np.float16).astype(np.float32)).max() for l in layers)
    assert compact.meta["deviation"]["h"]["max_abs"] == pytest.approx(worst16, abs=5e-4)  # +-1 float16 step
    # warming up helps: right after each boundary, a cold start is further from one pass
    rows = np.concatenate([np.arange(s, s + 50) for s in (1000, 2000, 3000)])
    assert np.abs(h4[rows] - h1[rows]).mean() < np.abs(h0[rows] - h1[rows]).mean()
    assert cold.meta["deviation"]["mean_abs"] > dev["mean_abs"]
    # a warm-up that reaches back to the start of the text makes stream 1 exact: measured deviation ~0
    full_warm = record(tiny_lstm, text, tmp_path / "two", dtype="float32", streams=2, warmup=2000)
    assert full_warm.meta["deviation"]["boundary_row"] == 2000
    assert full_warm.meta["deviation"]["max_abs"] < 1e-5 < cold.meta["deviation"]["max_abs"]


def test_streams_lay_rows_out_in_text_order(tiny_lstm, shakespeare_text, tmp_path):
    text = shakespeare_text[:1001]  # does not divide into 3 equal streams
    rec = record(tiny_lstm, text, tmp_path / "r", streams=3, warmup=50, chunk_size=64)
    ck = checkpoint.load(tiny_lstm)
    np.testing.assert_array_equal(np.asarray(rec.array("ids")), ck.vocab.encode(text))
    assert rec.n_rows == 1001 and np.isnan(rec.loss_bits[-1]) and np.isfinite(rec.loss_bits[:-1]).all()
    ids = ck.vocab.encode(text)
    # top-1 prediction's loss matches: each row's loss is for the next symbol, also across stream boundaries
    mem = record_arrays(ck.model, ck.vocab, text)
    close = np.abs(rec.loss_bits[:-1] - mem["loss_bits"][:-1]) < 0.05
    assert close.mean() > 0.9 and len(ids) == 1001


def _grow_forever_checkpoint(tmp_path):
    """1x2 LSTM whose gates are saturated: i = f = o = 1, g = 1, so c_t = t + 1 exactly."""
    from probe.model.charrnn import CharRNN, ModelConfig
    from probe.data.vocab import Vocab
    vocab = Vocab.from_text("ab")
    cfg = ModelConfig(vocab_size=vocab.size, model="lstm", rnn_size=2, num_layers=1, embed_size=2, dropout=0.0)
    model = CharRNN(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.layers[0].bias_ih_l0.fill_(40.0)  # sigmoid(40) == tanh(40) == 1.0 in float32
    meta = {"model_config": cfg.to_json(), "vocab": vocab.to_json(), "step": 0}
    checkpoint.save(tmp_path / "grow", model, meta)
    return tmp_path / "grow"


def test_compact_cell_states_do_not_overflow(tmp_path):
    ck = _grow_forever_checkpoint(tmp_path)
    n = 100_500
    rec = record(ck, "ab" * (n // 2), tmp_path / "rec", chunk_size=20_000)
    c = np.asarray(rec.array("L0.c"))
    assert c.dtype == np.float32
    np.testing.assert_array_equal(c[:, 0], np.arange(1, n + 1, dtype=np.float32))
    assert c[-1, 0] == 100_500.0 and np.isfinite(c).all()
    assert rec.get(0, "h")[-1, 0] == 1.0  # h = o * tanh(c) stays in range


def test_byte_model_rows_are_bytes_and_map_to_characters(tiny_byte_lstm, tmp_path):
    text = "naïve café ✓ done"
    rec = record(tiny_byte_lstm, text, tmp_path / "b", dtype="float32")
    data = text.encode("utf-8")
    assert rec.n_rows == len(data) and rec.text == text
    np.testing.assert_array_equal(np.asarray(rec.array("ids")), np.frombuffer(data, np.uint8))
    cor = np.asarray(rec.char_of_row)
    assert cor[-1] == len(text) - 1 and len(cor) == len(data)
    j = text.index("✓")
    assert text[cor[rec.row_of_char(j)]] == "✓"
    assert rec.meta["text"]["n_bytes"] == len(data) and rec.meta["text"]["n_chars"] == len(text)
    assert rec.meta["text"]["range_unit"] == "byte"
    mem = record_arrays(checkpoint.load(tiny_byte_lstm).model, checkpoint.load(tiny_byte_lstm).vocab, text)
    np.testing.assert_array_equal(mem["char_of_row"], cor)
    np.testing.assert_allclose(rec.get(1, "c"), mem["L1.c"], atol=1e-6)


def test_untrained_like_is_seeded_and_differs_from_the_trained_model(tiny_lstm, tmp_path):
    ck = checkpoint.load(tiny_lstm)
    u1, u2 = untrained_like(ck), untrained_like(tiny_lstm, seed=0)
    u3 = untrained_like(ck, seed=1)
    w = lambda c: c.model.layers[0].weight_hh_l0.detach()  # noqa: E731
    assert torch.equal(w(u1), w(u2)) and not torch.equal(w(u1), w(u3)) and not torch.equal(w(u1), w(ck))
    assert u1.model.cfg == ck.model.cfg and u1.vocab == ck.vocab
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    untrained_like(ck)
    assert torch.equal(torch.rand(1), expected)  # the caller's random state is left alone
    rec = record(tiny_lstm, "hello there", tmp_path / "u", untrained=True, dtype="float32")
    assert rec.meta["checkpoint"]["untrained"] is True
    mem = record_arrays(u1.model, u1.vocab, "hello there")
    np.testing.assert_allclose(rec.get(0, "h"), mem["L0.h"], atol=1e-6)


def test_recording_opens_lazily_with_the_reader(tiny_gru, tmp_path):
    rec = record(tiny_gru, "To be, or not to be", tmp_path / "g", gates=False, topk=2)
    again = Recording.open(tmp_path / "g")
    assert again.kinds == ["h"] and again.topk_ids.shape == (19, 2)
    assert again.frame(["L1.h.3"], 0, 5).shape == (5, 4)
    assert rec.meta["gates"] is False


def test_byte_model_test_split_ends_the_corpus(tiny_byte_lstm, tmp_path):
    import hashlib

    from probe.data.corpus import locate, read_bytes
    ck = checkpoint.load(tiny_byte_lstm)
    rec = record(tiny_byte_lstm, None, tmp_path / "t", part="test")
    a, b = ck.meta["data"]["split"]["test"]
    raw = read_bytes(locate(ck.meta["data"]["corpus"]))
    assert rec.n_rows == b - a == len(raw) - a and rec.meta["text"]["char_range"] == [a, b]
    assert rec.meta["text"]["source"].startswith("test split of") and rec.meta["text"]["part"] == "test"
    assert np.isnan(rec.loss_bits[-1]) and np.isfinite(rec.loss_bits[:-1]).all()  # nothing after the corpus
    assert bytes(np.asarray(rec.array("ids")).astype(np.uint8)) == raw[a:b]
    assert rec.meta["text"]["sha256"] == hashlib.sha256(raw[a:b]).hexdigest()
    assert len(np.asarray(rec.char_of_row)) == rec.n_rows


def test_carriage_returns_keep_rows_and_characters_aligned(tiny_lstm, tmp_path):
    rec = record(tiny_lstm, "ab\r\ncd\re", tmp_path / "crlf")
    assert len(rec.text) == rec.n_rows == 8


def test_gate_matmul_is_float32_exact_and_uses_the_fast_path():
    import probe.record.recorder as pr
    torch.manual_seed(0)
    x, w, b = torch.randn(300, 40), torch.randn(64, 40), torch.randn(64)
    expect = (x.double() @ w.double().T + b.double()).float()
    np.testing.assert_allclose(pr.linear(x, w, b).numpy(), expect.numpy(), atol=1e-5, rtol=0)
    assert pr._onednn_linear_ok  # oneDNN's matmul answered (else the recorder silently uses addmm)
