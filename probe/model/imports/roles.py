"""Which tensor of a state dict plays which role: embedding (or one-hot input), RNN layers, read-out.

Keys are matched by shape and role, not by name: an RNN layer is a `weight_ih`/`weight_hh` pair (PyTorch's
`nn.LSTM`/`nn.GRU`/`nn.RNN` names, `_l<k>` for stacked layers, any prefix: one stacked module or one module
per layer); the cell follows from the shapes (4H rows: LSTM, 3H: GRU, H: RNN); the read-out is the (V, H)
matrix the last layer feeds; the embedding is the (V, E) matrix the first layer reads, or there is none
and the first layer reads a one-hot vector of V. probe's own names (`embed.weight`, `head.weight`,
`head.bias`) fix a role outright: `maps` (`--map NEW=OLD`) renames a key or a whole prefix to them when
shapes alone cannot tell. Anything that is left over or does not fit is refused, one line naming the key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch

from probe.checks import ParamError
from probe.errors import ProbeError

CELL_OF_BLOCKS = {4: "lstm", 3: "gru", 1: "rnn"}
BLOCKS = {v: k for k, v in CELL_OF_BLOCKS.items()}
ONE_HOT = "(one-hot input)"
NO_BIAS = "(none: zeros)"
RNN_KEY = re.compile(r"^(?P<prefix>.*?)(?P<what>weight|bias)_(?P<side>ih|hh|hr)(?:_l(?P<layer>\d+))?"
                     r"(?P<reverse>_reverse)?$")
EMBED_HINTS = ("emb", "encoder", "wte", "tok", "lookup")
HEAD_HINTS = ("head", "fc", "decoder", "out", "linear", "proj", "classifier", "readout", "logit", "dense", "lm")


@dataclass
class LayerWeights:
    """One RNN layer as PyTorch lays it out: weight_ih (G*H, in), weight_hh (G*H, H), biases (G*H,) or None."""

    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b_ih: torch.Tensor | None
    b_hh: torch.Tensor | None
    keys: dict[str, str] = field(default_factory=dict)  # weight_ih, weight_hh, bias_ih, bias_hh -> source key


@dataclass
class Weights:
    """A model's tensors by role, as the source holds them (dtype, layout), and where each came from."""

    cell: str
    layers: list[LayerWeights]
    embed: torch.Tensor | None  # (V, E); None: the first layer reads a one-hot vector of V
    head_w: torch.Tensor  # (V, H)
    head_b: torch.Tensor | None  # (V,) or None (no bias)
    embed_key: str = ONE_HOT
    head_keys: tuple[str, str] = ("head.weight", NO_BIAS)

    @property
    def vocab_size(self) -> int:
        return int(self.head_w.shape[0])

    @property
    def hidden(self) -> int:
        return int(self.layers[0].w_hh.shape[1])

    @property
    def embed_size(self) -> int:
        """The first layer's input size: the embedding width, or V for a one-hot input."""
        return int(self.layers[0].w_ih.shape[1])

    def keys(self) -> dict[str, str]:
        """probe's name of every tensor (CharRNN's state dict) -> the source's key (or how it is made)."""
        out = {"embed.weight": self.embed_key}
        for i, layer in enumerate(self.layers):
            for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                out[f"layers.{i}.{role}_l0"] = layer.keys.get(role, NO_BIAS)
        out["head.weight"], out["head.bias"] = self.head_keys
        return out

    def describe(self) -> str:
        """One phrase: cell, layers x units, input and read-out."""
        inp = f"one-hot input of {self.vocab_size}" if self.embed is None else \
            f"embedding {self.vocab_size} x {self.embed_size}"
        return (f"{self.cell.upper()} {len(self.layers)} x {self.hidden}, {inp}, "
                f"read-out {self.hidden} -> {self.vocab_size}")


def summarize_keys(keys: dict[str, str]) -> str:
    """`Weights.keys()` in one line: where the input, each layer and the read-out came from, and what was made."""
    n = sum(1 for k in keys if k.endswith(".weight_ih_l0"))
    embed = keys["embed.weight"]
    parts = ["input: one-hot (an identity embedding)" if embed == ONE_HOT else f"embedding <- {embed}"]
    layers = []
    for i in range(n):
        src = keys[f"layers.{i}.weight_ih_l0"]
        layers.append(src.replace("weight_ih", "*", 1) if "weight_ih" in src else src)
    parts.append("layers <- " + ", ".join(layers))
    head = [keys["head.weight"]] + ([keys["head.bias"]] if keys["head.bias"] != NO_BIAS else [])
    parts.append("read-out <- " + ", ".join(head))
    zeros = [k for k, v in keys.items() if v == NO_BIAS]
    if zeros:
        parts.append(f"zeros (no such bias): {', '.join(zeros)}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- renaming

def parse_maps(maps: Mapping[str, str] | Iterable[str] | None) -> dict[str, str]:
    """`maps` as {NEW: OLD}: a mapping, or strings `NEW=OLD` (the command line's --map)."""
    if maps is None:
        return {}
    if isinstance(maps, Mapping):
        items = list(maps.items())
    else:
        items = []
        for m in maps:
            if not isinstance(m, str) or m.count("=") < 1 or not m.split("=", 1)[0] or not m.split("=", 1)[1]:
                raise ParamError("maps", f"must look like NEW=OLD (e.g. head.weight=decoder.weight), not {m!r}")
            items.append(tuple(m.split("=", 1)))
    return {str(new): str(old) for new, old in items}


def apply_maps(tensors: dict[str, torch.Tensor], maps: Mapping[str, str] | Iterable[str] | None
               ) -> dict[str, torch.Tensor]:
    """`tensors` with keys renamed: NEW=OLD renames the key OLD, or every key that starts with OLD
    (a prefix, e.g. `head.=decoder.`)."""
    out = dict(tensors)
    for new, old in parse_maps(maps).items():
        if old in out:
            renamed = {old: new}
        else:
            renamed = {k: new + k[len(old):] for k in out if k.startswith(old)}
        if not renamed:
            raise ParamError("maps", f"{new}={old}: the weights have no key {old!r} and none that starts with it")
        moved = {renamed[k]: out.pop(k) for k in list(renamed)}
        clash = next((k for k in moved if k in out), None)
        if clash is not None:
            raise ParamError("maps", f"{new}={old}: the renamed key {clash!r} is already in the weights")
        out.update(moved)
    return out


# --------------------------------------------------------------------------- matching

def _natural(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _shape(t: "torch.Tensor | tuple") -> str:
    dims = tuple(t.shape) if isinstance(t, torch.Tensor) else tuple(t)
    return "(" + ", ".join(str(d) for d in dims) + (",)" if len(dims) == 1 else ")")


def _hinted(key: str, hints: tuple[str, ...]) -> bool:
    low = key.lower()
    return any(h in low for h in hints)


def match_keys(tensors: dict[str, torch.Tensor], cell: str | None = None) -> Weights:
    """The roles of a state dict's tensors (after any renaming); ProbeError naming the key that does not fit."""
    groups: dict[tuple[str, int], dict[str, str]] = {}
    rest: list[str] = []
    for key in tensors:
        m = RNN_KEY.match(key)
        if not m:
            rest.append(key)
            continue
        if m["reverse"]:
            raise ProbeError(f"{key}: a bidirectional RNN also reads the text backwards; a character language model "
                             "reads it left to right only")
        if m["side"] == "hr":
            raise ProbeError(f"{key}: an LSTM with a projection (proj_size); probe reads LSTMs without one")
        slot = (m["prefix"], int(m["layer"] or 0))
        role = f"{m['what']}_{m['side']}"
        if role in groups.setdefault(slot, {}):
            raise ProbeError(f"{key}: a second {role} for layer {slot[1]} of {slot[0] or 'the top level'!r}")
        groups[slot][role] = key
    if not groups:
        raise ProbeError("no RNN layer found: no weight_ih/weight_hh pair (the names nn.LSTM, nn.GRU and nn.RNN use); "
                         "rename the keys with --map if yours differ")
    layers = []
    for slot in sorted(groups, key=lambda s: (_natural(s[0]), s[1])):
        found = groups[slot]
        for need, other in (("weight_ih", "weight_hh"), ("weight_hh", "weight_ih")):
            if need not in found:
                have = found.get(other) or next(iter(found.values()))
                missing = f"{slot[0]}{need}_l{slot[1]}" if re.search(r"_l\d+$", have) else f"{slot[0]}{need}"
                raise ProbeError(f"missing key {missing}: {have} has no {need} beside it")
        layers.append(LayerWeights(
            w_ih=tensors[found["weight_ih"]], w_hh=tensors[found["weight_hh"]],
            b_ih=tensors[found["bias_ih"]] if "bias_ih" in found else None,
            b_hh=tensors[found["bias_hh"]] if "bias_hh" in found else None, keys=dict(found)))
    k0 = layers[0].keys["weight_hh"]
    for layer in layers:
        k = layer.keys["weight_hh"]
        _check_2d(tensors, k)
        if tensors[k].shape != tensors[k0].shape:
            raise ProbeError(f"{k} has shape {_shape(tensors[k])}, but {k0} has {_shape(tensors[k0])}: a probe model "
                             "has the same cell and width in every layer")
    hidden = int(tensors[k0].shape[1])
    head_key = _find_head(tensors, rest, hidden)
    head_w = tensors[head_key]
    vocab_size = int(head_w.shape[0])
    bias_key = "head.bias" if head_key == "head.weight" else (
        head_key[: -len("weight")] + "bias" if head_key.endswith("weight") else None)
    head_b = tensors.get(bias_key) if bias_key in rest else None
    used = {head_key} | ({bias_key} if head_b is not None else set())
    _check_2d(tensors, layers[0].keys["weight_ih"])
    first_in = int(tensors[layers[0].keys["weight_ih"]].shape[1])
    embed_key = _find_embed(tensors, [k for k in rest if k not in used], vocab_size, first_in, hidden,
                            layers[0].keys["weight_ih"])
    if embed_key is not None:
        used.add(embed_key)
    left = [k for k in rest if k not in used]
    if left:
        k = sorted(left, key=_natural)[0]
        raise ProbeError(f"{k} {_shape(tensors[k])} is not an embedding, RNN or read-out weight of this model (probe "
                         "imports embedding or one-hot -> LSTM/GRU/RNN layers -> linear read-out); if it is one, "
                         "rename it with --map NEW=OLD")
    w = Weights(cell="", layers=layers, embed=None if embed_key is None else tensors[embed_key], head_w=head_w,
                head_b=head_b, embed_key=embed_key or ONE_HOT, head_keys=(head_key, bias_key if head_b is not None
                                                                          else NO_BIAS))
    w.cell = check_shapes(w, cell)
    return w


def _check_2d(tensors: dict[str, torch.Tensor], key: str) -> None:
    if tensors[key].dim() != 2:
        raise ProbeError(f"{key} has shape {_shape(tensors[key])}, not a matrix")


def _find_head(tensors: dict[str, torch.Tensor], rest: list[str], hidden: int) -> str:
    """The read-out's weight key: `head.weight`, else the one (V, H) matrix (with a bias, or by name)."""
    if "head.weight" in tensors:
        return "head.weight"
    cands = [k for k in rest if tensors[k].dim() == 2 and tensors[k].shape[1] == hidden]
    if len(cands) > 1:
        with_bias = [k for k in cands if k.endswith("weight") and (b := k[: -len("weight")] + "bias") in tensors
                     and tuple(tensors[b].shape) == (tensors[k].shape[0],)]
        named = [k for k in cands if _hinted(k, HEAD_HINTS) and not _hinted(k, EMBED_HINTS)]
        for pick in (with_bias, named):
            if len(pick) == 1:
                return pick[0]
        raise ParamError("maps", f"cannot tell the read-out among {', '.join(sorted(cands, key=_natural)[:4])} "
                                 f"(each (V, {hidden})): name it with {{maps}} head.weight=KEY", advice=True)
    if not cands:
        raise ParamError("maps", f"no read-out found: no matrix of shape (V, {hidden}) (vocabulary x the last layer's "
                                 f"units) besides the RNN's; name it with {{maps}} head.weight=KEY", advice=True)
    return cands[0]


def _find_embed(tensors: dict[str, torch.Tensor], rest: list[str], vocab_size: int, first_in: int, hidden: int,
                ih_key: str) -> str | None:
    """The embedding's key: `embed.weight`, else the one (V, E) matrix the first layer reads; None: one-hot."""
    if "embed.weight" in tensors:
        return "embed.weight"
    cands = [k for k in rest if tensors[k].dim() == 2 and tuple(tensors[k].shape) == (vocab_size, first_in)]
    if len(cands) > 1:
        named = [k for k in cands if _hinted(k, EMBED_HINTS)]
        if len(named) == 1:
            return named[0]
        raise ParamError("maps", f"cannot tell the embedding among {', '.join(sorted(cands, key=_natural)[:4])}: "
                                 f"name it with {{maps}} embed.weight=KEY", advice=True)
    if cands:
        return cands[0]
    if first_in == vocab_size:
        return None  # one-hot input
    raise ParamError("maps", f"{ih_key} reads {first_in} inputs, but there is no embedding ({vocab_size}, {first_in}) "
                             f"and no one-hot input of the vocabulary's {vocab_size}: name the embedding with "
                             f"{{maps}} embed.weight=KEY", advice=True)


# --------------------------------------------------------------------------- shapes

def check_shapes(w: Weights, cell: str | None = None) -> str:
    """Every tensor's shape against the others' (one width, one cell for all layers); the cell ("lstm", "gru"
    or "rnn"). ProbeError naming the first key that does not fit; ParamError when `cell` disagrees."""
    l0 = w.layers[0]
    k_hh = l0.keys.get("weight_hh", "layer 0's weight_hh")
    if l0.w_hh.dim() != 2 or l0.w_hh.shape[1] < 1 or l0.w_hh.shape[0] % l0.w_hh.shape[1]:
        raise ProbeError(f"{k_hh} has shape {_shape(l0.w_hh)}: a recurrent weight has 4H (LSTM), 3H (GRU) or "
                         "H (RNN) rows of H columns")
    H = int(l0.w_hh.shape[1])
    blocks = int(l0.w_hh.shape[0]) // H
    if blocks not in CELL_OF_BLOCKS:
        raise ProbeError(f"{k_hh} has shape {_shape(l0.w_hh)}: {blocks} x {H} rows, not 4H (LSTM), 3H (GRU) or "
                         "H (RNN)")
    found = CELL_OF_BLOCKS[blocks]
    if cell is not None and cell != found:
        if cell not in BLOCKS:
            raise ParamError("cell", f"must be one of lstm, gru, rnn, not {cell!r}")
        raise ParamError("cell", f"is {cell}, but {k_hh} has shape {_shape(l0.w_hh)}: {blocks} x {H} rows, a "
                                 f"{found.upper()}")
    G = blocks * H
    V = w.vocab_size
    for i, layer in enumerate(w.layers):
        n_in = w.embed_size if i == 0 else H
        want = {"weight_ih": (G, n_in), "weight_hh": (G, H), "bias_ih": (G,), "bias_hh": (G,)}
        for role, t in (("weight_ih", layer.w_ih), ("weight_hh", layer.w_hh), ("bias_ih", layer.b_ih),
                        ("bias_hh", layer.b_hh)):
            if t is None:
                continue
            key = layer.keys.get(role, f"layer {i}'s {role}")
            if tuple(t.shape) != want[role]:
                what = (f"layer {i} of this {found.upper()} ({blocks} x {H} units"
                        + (f", reading the {H} outputs of layer {i - 1})" if i and role == "weight_ih" else ")"))
                raise ProbeError(f"{key} has shape {_shape(t)}, but {what} needs {_shape(want[role])}")
            _check_float(key, t)
    if w.head_w.dim() != 2 or tuple(w.head_w.shape) != (V, H):
        raise ProbeError(f"{w.head_keys[0]} has shape {_shape(w.head_w)}, but the read-out of {H} units needs (V, {H})")
    _check_float(w.head_keys[0], w.head_w)
    if w.head_b is not None:
        if tuple(w.head_b.shape) != (V,):
            raise ProbeError(f"{w.head_keys[1]} has shape {_shape(w.head_b)}, but the read-out has {V} rows")
        _check_float(w.head_keys[1], w.head_b)
    if w.embed is not None:
        if tuple(w.embed.shape) != (V, w.embed_size):
            raise ProbeError(f"{w.embed_key} has shape {_shape(w.embed)}, but the model needs ({V}, {w.embed_size}) "
                             f"(vocabulary x what layer 0 reads)")
        _check_float(w.embed_key, w.embed)
    elif w.embed_size != V:
        raise ProbeError(f"{w.layers[0].keys.get('weight_ih', 'weight_ih')} reads {w.embed_size} inputs: without an "
                         f"embedding it must read a one-hot vector of the vocabulary's {V}")
    return found


def _check_float(key: str, t: torch.Tensor) -> None:
    if not t.is_floating_point():
        raise ProbeError(f"{key} holds {str(t.dtype).replace('torch.', '')}, not floating point numbers")
    if not bool(torch.isfinite(t).all()):
        raise ProbeError(f"{key} holds NaN or infinite values")
