"""CharRNN: an embedding, a stack of single-layer fused RNN modules, and a linear read-out.

Each layer is its own `nn.LSTM`/`nn.GRU`/`nn.RNN` with one layer, so the fused
cuDNN/oneDNN kernel runs per layer and every layer's output sequence is visible.
Gate order inside the weights is PyTorch's: LSTM (i, f, g, o), GRU (r, z, n).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from probe.checks import check_at_least, check_choice, check_number
from probe.names import array_name

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
_GATE_BLOCKS = {"lstm": 4, "gru": 3, "rnn": 1}  # weight blocks per layer
_SAVED_PER_UNIT = {"lstm": 8, "gru": 6, "rnn": 3}  # floats per unit and step kept for backward (estimate)


@dataclass
class ModelConfig:
    vocab_size: int
    model: str = "lstm"
    rnn_size: int = 512
    num_layers: int = 3
    embed_size: int = 64
    dropout: float = 0.1

    def validate(self, batch: int | None = None, seq: int | None = None) -> None:
        """Check the options; also that the model (trained on batch x seq windows, if given) fits in memory."""
        check_choice("model", self.model, CELLS)
        check_at_least(vocab_size=(self.vocab_size, 1), rnn_size=(self.rnn_size, 1),
                       num_layers=(self.num_layers, 1), embed_size=(self.embed_size, 1))
        check_number("dropout", self.dropout, min=0, max=1, max_open=True)
        self.check_memory(batch, seq)

    def num_params(self) -> int:
        """Parameters of the model this config builds (computed, nothing allocated)."""
        V, E, H, L, g = (int(self.vocab_size), int(self.embed_size), int(self.rnn_size), int(self.num_layers),
                         _GATE_BLOCKS[self.model])
        first = g * H * (E + H) + 2 * g * H
        rest = g * H * (H + H) + 2 * g * H
        return V * E + first + (L - 1) * rest + H * V + V

    def check_memory(self, batch: int | None = None, seq: int | None = None) -> None:
        """ProbeError if the float32 weights (and, given batch and seq, a training step) cannot fit in memory."""
        from probe.runtime.memory import check_fits
        shape = f"a {self.model.upper()} of {self.num_layers} x {self.rnn_size} units"
        n = self.num_params()
        check_fits(4 * n, f"{shape} ({n:,} parameters)", "lower rnn_size, num_layers or embed_size")
        if batch is not None and seq is not None:
            per_row = (int(self.embed_size) + int(self.num_layers) * _SAVED_PER_UNIT[self.model] * int(self.rnn_size)
                       + 3 * int(self.vocab_size))
            need = 16 * n + 8 * int(batch) * int(seq) * per_row  # weights, grads, 2 Adam moments; activations x2
            check_fits(need, f"training {shape} on batches of {batch} x {seq} characters",
                       "lower batch_size, seq_length, rnn_size or num_layers")

    def to_json(self) -> dict:
        return asdict(self)


State = list  # per layer: (h, c) for LSTM, h for GRU/RNN; each (1, batch, hidden)


class CharRNN(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_size)
        cell = CELLS[cfg.model]
        self.layers = nn.ModuleList(
            cell(cfg.embed_size if i == 0 else cfg.rnn_size, cfg.rnn_size, num_layers=1, batch_first=True)
            for i in range(cfg.num_layers)
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.rnn_size, cfg.vocab_size)
        self.reset_forget_bias()

    def reset_forget_bias(self, value: float = 1.0) -> None:
        """LSTM forget-gate bias `value` (split as b_ih = value, b_hh = 0)."""
        if self.cfg.model != "lstm":
            return
        H = self.cfg.rnn_size
        with torch.no_grad():
            for layer in self.layers:
                layer.bias_ih_l0[H:2 * H].fill_(value)
                layer.bias_hh_l0[H:2 * H].zero_()

    def forward(self, x: torch.Tensor, state: State | None = None, return_layers: bool = False):
        """x (batch, time) ids -> logits (batch, time, vocab), new state[, each layer's output].

        Dropout applies to each layer's output (before the next layer and the head).
        """
        out = self.embed(x)
        new_state: State = []
        layer_outputs = []
        for i, layer in enumerate(self.layers):
            out, s = layer(out, None if state is None else state[i])
            new_state.append(s)
            if return_layers:
                layer_outputs.append(out)
            out = self.drop(out)
        logits = self.head(out)
        if return_layers:
            return logits, new_state, layer_outputs
        return logits, new_state

    @staticmethod
    def detach(state: State) -> State:
        return [tuple(t.detach() for t in s) if isinstance(s, tuple) else s.detach() for s in state]

    def zero_state(self, batch: int, device=None) -> State:
        z = lambda: torch.zeros(1, batch, self.cfg.rnn_size, device=device)  # noqa: E731
        return [(z(), z()) if self.cfg.model == "lstm" else z() for _ in self.layers]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def state_tensors(state: State) -> dict[str, torch.Tensor]:
    """A flat dict of a state's tensors, for safetensors (names like `L0.h`, `L0.c`)."""
    out = {}
    for i, s in enumerate(state):
        if isinstance(s, tuple):
            out[array_name(i, "h")], out[array_name(i, "c")] = s
        else:
            out[array_name(i, "h")] = s
    return {k: v.detach().contiguous().cpu() for k, v in out.items()}


def state_from_tensors(d: dict[str, torch.Tensor], model: str, num_layers: int, device=None) -> State:
    if model == "lstm":
        return [(d[array_name(i, "h")].to(device), d[array_name(i, "c")].to(device)) for i in range(num_layers)]
    return [d[array_name(i, "h")].to(device) for i in range(num_layers)]
