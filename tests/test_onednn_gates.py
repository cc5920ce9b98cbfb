"""Gate activations read from oneDNN's LSTM workspace, and the recorder's check and fallback."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.record import onednn_gates
from probe.model.charrnn import CharRNN, ModelConfig
from probe.record.recorder import record_arrays
from probe.data.vocab import Vocab


@pytest.fixture(autouse=True)
def fresh_switch():
    onednn_gates._available = True
    yield
    onednn_gates._available = True


def recomputed(layer: torch.nn.LSTM, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
    """Gate activations by a step-by-step LSTMCell-style loop (the definition)."""
    h, c, out = h0[0], c0[0], []
    for t in range(x.shape[1]):
        g = x[:, t] @ layer.weight_ih_l0.T + layer.bias_ih_l0 + h @ layer.weight_hh_l0.T + layer.bias_hh_l0
        i, f, gg, o = g.chunk(4, dim=1)
        i, f, gg, o = i.sigmoid(), f.sigmoid(), gg.tanh(), o.sigmoid()
        c = f * c + i * gg
        h = o * c.tanh()
        out.append(torch.cat([i, f, gg, o], dim=1))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("hidden,streams", [(4, 1), (13, 3), (64, 2), (96, 1)])  # 64: a padded row (256 + 16)
def test_workspace_gates_equal_the_definition(hidden, streams):
    torch.manual_seed(hidden)
    layer = torch.nn.LSTM(7, hidden, batch_first=True)
    x = torch.randn(streams, 30, 7)
    h0, c0 = torch.randn(1, streams, hidden), torch.randn(1, streams, hidden)
    got = onednn_gates.lstm_layer_with_gates(layer, x, (h0, c0))
    if got is None:
        pytest.skip("oneDNN's RNN op is not available in this torch build")
    h, (h_n, c_n), gates = got
    with torch.no_grad():
        want = recomputed(layer, x, h0, c0)
        ref_h, (ref_hn, ref_cn) = layer(x, (h0, c0))
    assert gates.shape == (streams, 30, 4 * hidden)
    torch.testing.assert_close(gates, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, ref_h, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c_n, ref_cn, atol=1e-5, rtol=1e-5)
    assert not h.requires_grad and not gates.requires_grad


def tiny_model() -> tuple[CharRNN, Vocab]:
    torch.manual_seed(0)
    vocab = Vocab.byte()
    model = CharRNN(ModelConfig(vocab_size=vocab.size, rnn_size=64, num_layers=2, embed_size=8, dropout=0.0))
    return model.eval(), vocab


def test_a_wrong_workspace_layout_is_caught_and_the_gates_recomputed(monkeypatch):
    model, vocab = tiny_model()
    text = "The [[cat]] sat on http://example.org/mat. " * 20
    onednn_gates.disable()
    exact = record_arrays(model, vocab, text, chunk_size=64)  # recomputed gates all along
    onednn_gates._available = True
    monkeypatch.setattr(onednn_gates, "_padded_ld", lambda n: n + 32)  # not oneDNN's layout (272 is)
    checked = record_arrays(model, vocab, text, chunk_size=64)
    assert onednn_gates._available is False  # the first chunk's check failed and switched it off
    for name in ("L0.c", "L1.c", "L1.gates.f", "L1.h"):
        np.testing.assert_allclose(checked[name], exact[name], atol=1e-5, rtol=1e-5)


def test_recording_from_the_workspace_equals_recording_with_recomputed_gates():
    model, vocab = tiny_model()
    text = "A line of text, (with [brackets]) and \"quotes\".\n" * 30
    onednn_gates.disable()
    recomputed_run = record_arrays(model, vocab, text, chunk_size=100)
    onednn_gates._available = True
    from_workspace = record_arrays(model, vocab, text, chunk_size=100)
    assert onednn_gates._available is True  # used, and every chunk's check passed
    for name in recomputed_run:
        np.testing.assert_allclose(from_workspace[name], recomputed_run[name], atol=2e-5, rtol=1e-4)
