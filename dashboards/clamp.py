"""Generate text with one unit clamped to a fixed value, by a step-by-step loop over the model's layers.

Clamping `L1.h.7` to 0.9 sets that hidden unit to 0.9 after every step (both
in what the next layer and the read-out see and in the state carried to the
next step); clamping an LSTM cell `L1.c.7` sets the carried cell state.
"""
from __future__ import annotations

import torch

from probe.errors import ProbeError
from probe.model.charrnn import CharRNN
from probe.record.recording import Unit
from probe.data.vocab import Vocab

MAX_PRIME = 1000
MAX_LENGTH = 2000


def check_clamp(model: CharRNN, unit: Unit | None, value: float | None) -> None:
    if unit is None:
        return
    cfg = model.cfg
    if unit.kind not in (("h", "c") if cfg.model == "lstm" else ("h",)):
        raise ProbeError(f"cannot clamp {unit}: clamping works on hidden states (h) and LSTM cells (c), not gates")
    if not 0 <= unit.layer < cfg.num_layers or not 0 <= unit.index < cfg.rnn_size:
        raise ProbeError(f"no unit {unit} in a {cfg.num_layers}x{cfg.rnn_size} model")
    if value is None or not isinstance(value, (int, float)) or value != value or abs(value) > 1e4:
        raise ProbeError(f"the clamp value must be a number between -10000 and 10000, not {value!r}")


def _clamp(out: torch.Tensor, state, unit: Unit, value: float, lstm: bool):
    if unit.kind == "h":
        out = out.clone()
        out[..., unit.index] = value
        if lstm:
            h, c = state
            h = h.clone()
            h[..., unit.index] = value
            return out, (h, c)
        h = state.clone()
        h[..., unit.index] = value
        return out, h
    h, c = state
    c = c.clone()
    c[..., unit.index] = value
    return out, (h, c)


@torch.no_grad()
def generate_clamped(model: CharRNN, vocab: Vocab, prime: str, length: int, *, unit: Unit | None = None,
                     value: float = 0.0, seed: int = 0, temperature: float = 1.0) -> str:
    """Sample `length` symbols after `prime` with `unit` held at `value` at every step (None: no clamp)."""
    check_clamp(model, unit, value)
    if not 0 < length <= MAX_LENGTH:
        raise ProbeError(f"generate between 1 and {MAX_LENGTH} characters, not {length}")
    if not temperature > 0:
        raise ProbeError(f"the temperature must be positive, not {temperature}")
    prime = prime[-MAX_PRIME:] if prime else "\n"
    lstm = model.cfg.model == "lstm"
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    was = model.training
    model.eval()
    state = [None] * len(model.layers)

    def step(symbol: int) -> torch.Tensor:
        x = model.embed(torch.tensor([[symbol]], device=device))
        for i, layer in enumerate(model.layers):
            x, state[i] = layer(x, state[i])
            if unit is not None and unit.layer == i:
                x, state[i] = _clamp(x, state[i], unit, float(value), lstm)
        return model.head(x)[0, -1].float().cpu()

    try:
        logits = None
        for symbol in vocab.encode(prime):
            logits = step(int(symbol))
        out = []
        for _ in range(length):
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
            out.append(nxt)
            logits = step(nxt)
    finally:
        model.train(was)
    return vocab.decode(out)
