"""A live PyTorch module of the common shape: its parts found by type, and its own forward pass as the original.

The parts: at most one `nn.Embedding` (none: a one-hot input), one or more `nn.LSTM`/`nn.GRU`/`nn.RNN` modules
in the order they were registered (one stacked module, one a layer, or a mix), and one `nn.Linear` read-out.
Dropout and Identity modules are allowed (a walk runs in eval mode); any other module with weights, and any
activation module, is refused with a line naming it: probe could not know where it applies.

The original, for the self-check: the module's own submodules called in order (each RNN module with its own
`batch_first` layout), or, given `forward`, that function of a batch of ids (1, T) returning logits.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from probe.errors import ProbeError
from probe.model.imports.roles import LayerWeights, Weights, check_shapes

RNN_TYPES = (nn.LSTM, nn.GRU, nn.RNN)
PASSIVE = (nn.Dropout, nn.Identity)
LN2 = float(np.log(2))


class ModuleParts:
    """The embedding (or None), RNN modules and read-out of a module, with their qualified names."""

    def __init__(self, module: nn.Module):
        if not isinstance(module, nn.Module):
            raise ProbeError(f"from_torch needs an nn.Module, not {type(module).__name__}")
        self.module = module
        self.embed: tuple[str, nn.Embedding] | None = None
        self.rnns: list[tuple[str, nn.Module]] = []
        linears: list[tuple[str, nn.Linear]] = []
        for name, m in module.named_modules():
            shown = name or type(module).__name__
            if isinstance(m, RNN_TYPES):
                _check_rnn(shown, m)
                self.rnns.append((name, m))
            elif isinstance(m, nn.Embedding):
                if self.embed is not None:
                    raise ProbeError(f"module {shown!r}: a second embedding (after {self.embed[0]!r}); probe imports "
                                     "one embedding (or a one-hot input)")
                if m.max_norm is not None:
                    raise ProbeError(f"module {shown!r}: an embedding with max_norm renormalises its rows as it reads "
                                     "them; probe imports plain embeddings")
                self.embed = (name, m)
            elif isinstance(m, nn.Linear):
                linears.append((name, m))
            elif isinstance(m, (nn.RNNCellBase,)):
                raise ProbeError(f"module {shown!r} ({type(m).__name__}) is stepped by a loop of your own; probe "
                                 "reads nn.LSTM/nn.GRU/nn.RNN modules (or import the state dict from a file)")
            elif isinstance(m, PASSIVE):
                pass
            else:
                own = [n for n, _ in m.named_parameters(recurse=False)] + [n for n, _ in m.named_buffers(recurse=False)]
                if own:
                    where = f"{name}.{own[0]}" if name else own[0]
                    raise ProbeError(f"{where} (in {type(m).__name__}) is not an embedding, RNN or read-out weight; "
                                     "probe imports embedding or one-hot -> LSTM/GRU/RNN -> linear read-out")
                if not list(m.children()):
                    raise ProbeError(f"module {shown!r} ({type(m).__name__}) is not part of an embedding -> RNN -> "
                                     "linear read-out model; probe cannot know where it applies")
        if not self.rnns:
            raise ProbeError(f"{type(module).__name__} holds no nn.LSTM, nn.GRU or nn.RNN module")
        if not linears:
            raise ProbeError(f"{type(module).__name__} holds no nn.Linear read-out")
        if len(linears) > 1:
            raise ProbeError(f"module {linears[1][0]!r}: a second linear layer (after {linears[0][0]!r}); probe "
                             "imports one linear read-out on the last RNN layer")
        self.head = linears[0]

    def weights(self, cell: str | None = None) -> Weights:
        """The module's tensors by role (checked)."""
        layers = []
        for name, m in self.rnns:
            pre = f"{name}." if name else ""
            for k in range(m.num_layers):
                got = {role: getattr(m, f"{role}_l{k}", None)
                       for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
                keys = {role: f"{pre}{role}_l{k}" for role, t in got.items() if t is not None}
                layers.append(LayerWeights(w_ih=got["weight_ih"], w_hh=got["weight_hh"], b_ih=got["bias_ih"],
                                           b_hh=got["bias_hh"], keys=keys))
        hname, head = self.head
        hpre = f"{hname}." if hname else ""
        w = Weights(cell="", layers=layers, embed=None if self.embed is None else self.embed[1].weight,
                    head_w=head.weight, head_b=head.bias,
                    embed_key=("(one-hot input)" if self.embed is None else
                               (f"{self.embed[0]}.weight" if self.embed[0] else "weight")),
                    head_keys=(f"{hpre}weight", f"{hpre}bias" if head.bias is not None else "(none: zeros)"))
        w.cell = check_shapes(w, cell)
        return w


def _check_rnn(name: str, m: nn.Module) -> None:
    if m.bidirectional:
        raise ProbeError(f"module {name!r} is bidirectional: it also reads the text backwards; a character "
                         "language model reads it left to right only")
    if isinstance(m, nn.LSTM) and m.proj_size:
        raise ProbeError(f"module {name!r} is an LSTM with proj_size={m.proj_size}; probe reads LSTMs without one")
    if isinstance(m, nn.RNN) and m.nonlinearity != "tanh":
        raise ProbeError(f"module {name!r} is an nn.RNN with nonlinearity={m.nonlinearity!r}; probe's RNN cell is tanh")


class ModuleReference:
    """The original module's own forward pass (in eval mode, its own dtype and device), for the self-check."""

    def __init__(self, parts: ModuleParts, forward: Callable | None = None):
        self.parts, self.forward = parts, forward
        self.name = ("your forward function" if forward is not None else
                     "the module's own submodules run in order, in its dtype")

    @torch.no_grad()
    def bits(self, ids: np.ndarray) -> np.ndarray:
        module = self.parts.module
        head = self.parts.head[1]
        was = module.training
        module.eval()
        try:
            x = torch.as_tensor(ids, dtype=torch.long, device=head.weight.device).view(1, -1)
            logits = self._call_forward(x[:, :-1]) if self.forward is not None else self._chain(x[:, :-1])
        finally:
            module.train(was)
        logp = torch.log_softmax(logits.double().cpu(), dim=-1)
        return (-logp.gather(1, x[0, 1:].cpu().view(-1, 1))[:, 0] / LN2).numpy()

    def _chain(self, x: torch.Tensor) -> torch.Tensor:
        """embedding (or one-hot) -> each RNN module in its own layout -> read-out: (T, V)."""
        head = self.parts.head[1]
        if self.parts.embed is not None:
            e = self.parts.embed[1](x)
        else:
            e = nn.functional.one_hot(x, head.out_features).to(head.weight.dtype)
        for _, m in self.parts.rnns:
            if m.batch_first:
                e, _ = m(e)
            else:
                e = m(e.transpose(0, 1))[0].transpose(0, 1)
        return head(e)[0]

    def _call_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.forward(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise ProbeError(f"forward returned {type(out).__name__}, not a tensor of logits")
        T, V = x.shape[1], self.parts.head[1].out_features
        if tuple(out.shape) == (1, T, V):
            return out[0]
        if tuple(out.shape) == (T, 1, V):
            return out[:, 0]
        if tuple(out.shape) == (T, V):
            return out
        raise ProbeError(f"forward returned shape {tuple(out.shape)} for ids of shape (1, {T}); expected logits "
                         f"(1, {T}, {V})")
