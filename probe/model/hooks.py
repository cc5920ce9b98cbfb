"""One walk over a CharRNN's layers with named hook points, shared by analysis, sampling and interventions.

In the spirit of TransformerLens' hook points and `run_with_cache`. Hook points are named like the
recorded arrays: `embed` (B, T, E), `L{l}.h` (B, T, H), `L{l}.c` (B, T, H; LSTM only), `logits` (B, T, V).

How a walk runs:
- a layer without a step hook runs fused: its own `nn.LSTM`/`nn.GRU`/`nn.RNN` module, one kernel call for
  the whole sequence (exactly the model's own `forward`, dropout aside: a walk is always in eval mode);
- a layer with a step hook on `L{l}.h` or `L{l}.c` (an intervention) is stepped one symbol at a time from
  its own weights: the input projection of every step in one matmul, then one matmul per step. After each
  step the hook sees the state (B, H) and may return a changed one, which is what the next step carries;
  a changed `h` is also what the layers above see, a changed `c` reaches them through the next step's h;
- the layers above run fused on the stepped layer's output.

Layer runners: a walk may be given a `layer_runner` that replaces the fused call of every layer that is not
stepped; it returns (output, new state, extra), and the extras land in `Walk.extras` (one a layer, None
where the layer was stepped). The recorder's runner takes an LSTM layer's gate activations from oneDNN's
workspace in the same kernel call (`probe.record.onednn_gates`); the default is `fused_layer`.

This is the one loop over the layers for analysis, recording (and the dashboard's live text), sampling,
clamped generation and ablation. Training alone keeps `CharRNN.forward` (fused layers with dropout between
them): the training path, not a walk with hook points.

Streams: `x` may hold one row while the walk runs `streams` rows. The layers below the first stepped layer
then run once on that row and their output is shared by every stream, so K+1 different interventions on
one layer, one per stream, cost about one stepped pass (how the ablation's random-unit null is computed).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch

from probe.errors import ProbeError
from probe.model.charrnn import CharRNN, State
from probe.names import array_name

# A step hook: (state after step t (B, H), t) -> the state to carry (or None: unchanged).
StepHook = Callable[[torch.Tensor, int], "torch.Tensor | None"]
PACK_MIN_STEPS = 32  # a stepped stretch at least this long packs its recurrent weight for oneDNN
_onednn_linear = True
# A layer runner: (layer index, layer module, input (B, T, in), state or None) -> (output, new state, extra).
LayerRunner = Callable[[int, torch.nn.Module, torch.Tensor, Any], "tuple[torch.Tensor, Any, Any]"]


@dataclass
class Walk:
    """What a walk returns: the logits (B, T, V; None without the head), the state after the last step,
    the cached hook points, and per layer what the layer runner returned beside output and state."""

    logits: torch.Tensor | None
    state: State
    cache: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: list = field(default_factory=list)


def hook_points(model: CharRNN) -> list[str]:
    """Every hook point name of `model`, bottom to top."""
    names = ["embed"]
    for l in range(len(model.layers)):
        names.append(array_name(l, "h"))
        if model.cfg.model == "lstm":
            names.append(array_name(l, "c"))
    return names + ["logits"]


def _check_names(model: CharRNN, names: Iterable[str], what: str) -> None:
    known = hook_points(model)
    for n in names:
        if n not in known:
            raise ProbeError(f"{what}: no hook point {n!r} in this {model.cfg.model} model "
                             f"(known: {', '.join(known)})")


def _stepped_layers(model: CharRNN, step_hooks: dict, cache: set) -> set[int]:
    """Layers that must run one step at a time: those with a step hook, and LSTM layers whose c is cached
    (the fused kernel gives only the last c)."""
    out = set()
    for l in range(len(model.layers)):
        if array_name(l, "h") in step_hooks or array_name(l, "c") in step_hooks or array_name(l, "c") in cache:
            out.add(l)
    return out


def _expand(s, batch: int):
    """A layer state of batch 1 repeated to `batch` rows (states of other batch sizes pass unchanged)."""
    if s is None:
        return None
    if isinstance(s, tuple):
        return tuple(_expand(t, batch) for t in s)
    return s.expand(-1, batch, -1).contiguous() if s.shape[1] == 1 and batch > 1 else s


def fused_layer(l: int, layer: torch.nn.Module, inp: torch.Tensor, state) -> tuple[torch.Tensor, Any, None]:
    """The default layer runner: the layer's own fused module, one kernel call for the sequence."""
    out, s = layer(inp, state)
    return out, s, None


@torch.no_grad()
def run_with_hooks(model: CharRNN, x: torch.Tensor, state: State | None = None, *,
                   step_hooks: dict[str, StepHook] | None = None, cache: Iterable[str] = (),
                   streams: int | None = None, layer_runner: LayerRunner | None = None,
                   head: bool = True, start: int = 0, stop: int | None = None) -> Walk:
    """Run `model` over ids `x` (S, T) from `state` (None: zeros), with interventions and a cache.

    step_hooks: hook point (`L{l}.h`, `L{l}.c`) -> StepHook, called after every step of that layer.
    cache: hook points to keep, returned in `Walk.cache`.
    streams: rows to run (default S); with S = 1 the rows below the first stepped layer are shared.
    The state of a layer run on the shared row has batch 1; it is expanded where needed.
    layer_runner: runs each layer that is not stepped (default `fused_layer`); its extras go to `Walk.extras`.
    head: False skips the read-out (`Walk.logits` is None; `logits` cannot be cached).
    start, stop: run layers start..stop-1 only. With start > 0, `x` is layer `start`'s input (S, T, in), e.g.
    a cached `L{start-1}.h`, not ids; with stop below the layer count there is no head. The state of a
    layer that does not run passes through unchanged.
    """
    step_hooks = dict(step_hooks or {})
    cache = set(cache)
    _check_names(model, step_hooks, "step_hooks")
    _check_names(model, cache, "cache")
    if any(k in ("embed", "logits") for k in step_hooks):
        raise ProbeError("step_hooks: only layer states (L<l>.h, L<l>.c) can be changed step by step")
    if not head and "logits" in cache:
        raise ProbeError("cache: 'logits' needs head=True")
    run_layer = layer_runner or fused_layer
    n_layers = len(model.layers)
    stop = n_layers if stop is None else stop
    if not 0 <= start < stop <= n_layers:
        raise ProbeError(f"start={start}, stop={stop}: not a range of this model's {n_layers} layers")
    if stop < n_layers and head:
        head = False
        if "logits" in cache:
            raise ProbeError("cache: 'logits' needs every layer to run (stop=None)")
    if start > 0 and "embed" in cache:
        raise ProbeError("cache: 'embed' needs start=0")
    if x.dim() != (2 if start == 0 else 3):
        raise ProbeError(f"x must be (streams, time) symbol ids, not of shape {tuple(x.shape)}" if start == 0 else
                         f"x must be layer {start}'s input (streams, time, features), not of shape {tuple(x.shape)}")
    B = int(streams) if streams is not None else x.shape[0]
    if x.shape[0] not in (1, B):
        raise ProbeError(f"x has {x.shape[0]} rows: give 1 (shared) or streams={B}")
    stepped = _stepped_layers(model, step_hooks, cache)
    was = model.training
    model.eval()
    try:
        out = model.embed(x) if start == 0 else x
        kept: dict[str, torch.Tensor] = {}
        if "embed" in cache:
            kept["embed"] = out
        new_state: State = []
        extras: list = []
        for l, layer in enumerate(model.layers):
            s = None if state is None else state[l]
            if not start <= l < stop:
                new_state.append(s)
                extras.append(None)
                continue
            if l in stepped:
                out, s, cs = step_layer(model, l, out, s, B, step_hooks.get(array_name(l, "h")),
                                        step_hooks.get(array_name(l, "c")), keep_c=array_name(l, "c") in cache)
                if cs is not None:
                    kept[array_name(l, "c")] = cs
                extras.append(None)
            else:
                if s is not None:
                    s = _expand(s, out.shape[0])
                out, s, extra = run_layer(l, layer, out, s)
                extras.append(extra)
            new_state.append(s)
            if array_name(l, "h") in cache:
                kept[array_name(l, "h")] = out
        if not head:
            return Walk(logits=None, state=new_state, cache=kept, extras=extras)
        logits = model.head(out)
        if logits.shape[0] != B:
            logits = logits.expand(B, -1, -1)
        if "logits" in cache:
            kept["logits"] = logits
        return Walk(logits=logits, state=new_state, cache=kept, extras=extras)
    finally:
        model.train(was)


def run_with_cache(model: CharRNN, x: torch.Tensor, names: Iterable[str], state: State | None = None) -> Walk:
    """A walk without interventions that keeps the hook points `names` (e.g. `["L1.h", "L1.c"]`)."""
    return run_with_hooks(model, x, state, cache=names)


def _recurrent_product(weight: torch.Tensor, batch: int, steps: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`(h (B, H), add (1 or B, G*H)) -> add + h @ weight^T`, the one matmul of every step.

    On CPU in float32 over a long stretch it is oneDNN's linear with the weight packed once for the batch
    and the add fused (on this project's AMD CPUs about 1.6x faster than MKL's addmm for 22 rows);
    otherwise, or when that op is missing, `torch.addmm`.
    """
    global _onednn_linear
    if (_onednn_linear and steps >= PACK_MIN_STEPS and weight.device.type == "cpu"
            and weight.dtype == torch.float32):
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch)
            linear = torch.ops.mkldnn._linear_pointwise.binary
            linear(weight.new_zeros(batch, weight.shape[1]), weight.new_zeros(1, weight.shape[0]), packed, None, "add")
            return lambda h, add: linear(h, add, packed, None, "add")
        except (AttributeError, RuntimeError, TypeError):
            _onednn_linear = False
    wt = weight.t()
    return lambda h, add: torch.addmm(add, h, wt)


def step_layer(model: CharRNN, l: int, inp: torch.Tensor, state, batch: int, hook_h: StepHook | None,
               hook_c: StepHook | None, keep_c: bool = False):
    """Layer `l` stepped one symbol at a time over `inp` (1 or `batch`, T, in) from its own weights.

    Returns (output (batch, T, H), new state, the carried c of every step (batch, T, H) or None).
    Semantics (the dashboard's clamp): `hook_h` changes h after each step, in the output and the carried
    state; `hook_c` changes the carried c only: that step's h was already computed from the unchanged c,
    the next step computes its h from the changed one. A hook may change the state in place (and return
    it or None) or return a new tensor.
    The input projection of every step is one matmul on the (shared) input rows; each step then does one
    matmul of the carried h and element-wise work in place, writing h straight into the output. An LSTM
    step computes tanh as 2 sigmoid(2x) - 1 (one sigmoid over the four gates; torch's tanh costs several
    times its sigmoid): equal to the fused kernel to float rounding, and the same arithmetic in every stream.
    """
    kind = model.cfg.model
    layer = model.layers[l]
    H = model.cfg.rnn_size
    T = inp.shape[1]
    lstm = kind == "lstm"
    if state is None:
        state = model.zero_state(batch, device=inp.device)[l]
    state = _expand(state, batch)
    h, c = (state[0][0], state[1][0].clone()) if lstm else (state[0], None)  # c is updated in place
    if lstm or kind == "rnn":  # both biases go into the input projection
        gi = torch.addmm(layer.bias_ih_l0 + layer.bias_hh_l0, inp.reshape(-1, inp.shape[2]),
                         layer.weight_ih_l0.t()).view(inp.shape[0], T, -1)
        b_hh = None
    else:  # GRU: n needs r * (W_hn h + b_hn), so b_hh stays on the hidden side
        gi = torch.addmm(layer.bias_ih_l0, inp.reshape(-1, inp.shape[2]),
                         layer.weight_ih_l0.t()).view(inp.shape[0], T, -1)
        b_hh = layer.bias_hh_l0.view(1, -1)
    w_hh = layer.weight_hh_l0
    if lstm:  # tanh(x) = 2 sigmoid(2x) - 1: the g rows doubled (exact), one sigmoid for all four gates
        w_hh = w_hh.detach().clone()
        w_hh[2 * H:3 * H] *= 2
        gi[..., 2 * H:3 * H] *= 2
    product = _recurrent_product(w_hh, batch, T)
    act = torch.relu if getattr(layer, "nonlinearity", "tanh") == "relu" else torch.tanh
    out = inp.new_empty(batch, T, H)
    cs = inp.new_empty(batch, T, H) if keep_c and lstm else None
    sig_c = inp.new_empty(batch, H) if lstm else None
    for t in range(T):
        g_in = gi[:, t]
        o_t = out[:, t]
        if lstm:
            g = product(h, g_in).sigmoid_()  # a shared input row broadcasts over the streams
            i, s = g[:, :H], g[:, 2 * H:3 * H]  # s = sigmoid(2 x_g): the g gate is 2 s - 1
            c.mul_(g[:, H:2 * H]).addcmul_(i, s, value=2.0).sub_(i)  # c = f c + i (2 s - 1)
            torch.mul(c, 2.0, out=sig_c).sigmoid_().mul_(2.0).sub_(1.0)  # tanh(c)
            torch.mul(g[:, 3 * H:], sig_c, out=o_t)  # h = o tanh(c)
            if hook_c is not None:
                changed = hook_c(c, t)
                if changed is not None and changed is not c:
                    c.copy_(changed)
            if cs is not None:
                cs[:, t] = c
        elif kind == "gru":
            gh = product(h, b_hh)
            r = torch.sigmoid(g_in[:, :H] + gh[:, :H])
            z = torch.sigmoid(g_in[:, H:2 * H] + gh[:, H:2 * H])
            n = torch.tanh(g_in[:, 2 * H:] + r * gh[:, 2 * H:])
            o_t.copy_((1 - z) * n + z * h)
        else:
            o_t.copy_(act(product(h, g_in)))
        if hook_h is not None:
            changed = hook_h(o_t, t)
            if changed is not None and changed is not o_t:
                o_t.copy_(changed)
        h = o_t
    h = h.contiguous().unsqueeze(0)
    new = (h, c.unsqueeze(0)) if lstm else h
    return out, new, cs
