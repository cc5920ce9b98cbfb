"""CharRNN: an embedding, a stack of single-layer fused RNN modules, and a linear read-out.

Each layer is its own `nn.LSTM`/`nn.GRU`/`nn.RNN` with one layer, so the fused
cuDNN/oneDNN kernel runs per layer and every layer's output sequence is visible.
Gate order inside the weights is PyTorch's: LSTM (i, f, g, o), GRU (r, z, n).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from probe.errors import ProbeError

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
# Names of the gates of each cell kind, in the order PyTorch stores them.
GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": ()}


@dataclass
class ModelConfig:
    vocab_size: int
    model: str = "lstm"
    rnn_size: int = 512
    num_layers: int = 3
    embed_size: int = 64
    dropout: float = 0.1

    def validate(self) -> None:
        if self.model not in CELLS:
            raise ProbeError(f"--model must be one of {', '.join(CELLS)}, not {self.model!r}")
        for name in ("vocab_size", "rnn_size", "num_layers", "embed_size"):
            if int(getattr(self, name)) < 1:
                raise ProbeError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ProbeError(f"--dropout must be in [0, 1), not {self.dropout}")

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
            out[f"L{i}.h"], out[f"L{i}.c"] = s
        else:
            out[f"L{i}.h"] = s
    return {k: v.detach().contiguous().cpu() for k, v in out.items()}


def state_from_tensors(d: dict[str, torch.Tensor], model: str, num_layers: int, device=None) -> State:
    if model == "lstm":
        return [(d[f"L{i}.h"].to(device), d[f"L{i}.c"].to(device)) for i in range(num_layers)]
    return [d[f"L{i}.h"].to(device) for i in range(num_layers)]
