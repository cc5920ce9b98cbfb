"""Reading a model's weights from a file: safetensors, a PyTorch `.pt`/`.pth` (weights only), or numpy `.npz`.

Nothing is ever unpickled: `.pt` files go through `torch.load(weights_only=True)`, which reads tensors and
plain containers and refuses any other Python object; `.npz` files are read with `allow_pickle=False`.
A state dict nested under `state_dict`, `model_state_dict` or `model` (a training checkpoint) is found.
Lua Torch `.t7` files (char-rnn) are refused: no well-kept reader of that format exists.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from probe.errors import ProbeError

NESTED = ("state_dict", "model_state_dict", "model")  # where training checkpoints keep the weights
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")


@dataclass
class WeightsFile:
    """A file's tensors by key (float or integer tensors as stored) and its non-numeric arrays (e.g. an
    .npz's character list); `fmt` names the format read."""

    path: Path
    fmt: str
    tensors: dict[str, torch.Tensor]
    strings: dict[str, list[str]] = field(default_factory=dict)


def read_weights(path: str | Path) -> WeightsFile:
    """The tensors of a weights file; ProbeError (one line) when it cannot be read as one."""
    p = Path(path)
    if not p.exists():
        raise ProbeError(f"no such weights file: {p}")
    if p.is_dir():
        raise ProbeError(f"{p} is a folder, not a weights file (.safetensors, .pt, .pth or .npz)")
    suffix = p.suffix.lower()
    if suffix == ".t7":
        raise ProbeError(f"{p}: Lua Torch .t7 files (char-rnn) are not read: no well-kept reader of that format "
                         "exists (torchfile has had no release since 2017); convert the weights to .npz or "
                         "safetensors in Lua/Python first")
    kind = {".safetensors": "safetensors", ".npz": "npz"}.get(suffix)
    if kind is None:
        kind = "torch" if suffix in TORCH_SUFFIXES else _sniff(p)
    if kind == "safetensors":
        wf = WeightsFile(p, "safetensors", _read_safetensors(p))
    elif kind == "npz":
        tensors, strings = _read_npz(p)
        wf = WeightsFile(p, "npz", tensors, strings)
    else:
        wf = WeightsFile(p, "torch", _read_torch(p))
    if not wf.tensors:
        raise ProbeError(f"{p} holds no tensors")
    return wf


def _sniff(p: Path) -> str:
    """The format of a file with an unknown suffix, from its first bytes."""
    with open(p, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(p) as z:
                names = z.namelist()
        except zipfile.BadZipFile:
            return "torch"
        return "npz" if names and all(n.endswith(".npy") for n in names) else "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return "torch"


def _read_safetensors(p: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return dict(load_file(str(p)))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ProbeError(f"cannot read {p} as safetensors: {_first_line(e)}") from None


def _read_torch(p: Path) -> dict[str, torch.Tensor]:
    import pickle
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        if found:
            raise ProbeError(f"{p} holds a pickled Python object{what}, not only weights: probe loads .pt files "
                             "with torch.load(weights_only=True) and never unpickles; save model.state_dict() "
                             "(or safetensors) instead") from None
        raise ProbeError(f"cannot read {p} as a PyTorch weights file (torch.load(weights_only=True) refused it: "
                         f"{_unpickle_reason(e)})") from None
    except (RuntimeError, OSError, EOFError, ValueError, AttributeError, TypeError, KeyError) as e:
        raise ProbeError(f"cannot read {p} as a PyTorch weights file: {_first_line(e)}") from None
    return _state_dict_in(obj, p)


def _state_dict_in(obj, p: Path) -> dict[str, torch.Tensor]:
    """The flat {key: tensor} of a loaded object: the dict itself, or one nested under NESTED keys."""
    if isinstance(obj, dict):
        if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            return dict(obj)
        for key in NESTED:
            inner = obj.get(key)
            if isinstance(inner, dict):
                return _state_dict_in(inner, p)
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            other = next(k for k, v in obj.items() if not isinstance(v, torch.Tensor))
            raise ProbeError(f"{p}: key {str(other)!r} holds {type(obj[other]).__name__}, not a tensor (a state "
                             f"dict holds tensors only; probe looks for one under {', '.join(NESTED)})")
        raise ProbeError(f"{p} holds a dict without tensors (keys {', '.join(map(str, list(obj)[:4]))}); "
                         f"probe looks for a state dict at the top or under {', '.join(NESTED)}")
    raise ProbeError(f"{p} holds {type(obj).__name__}, not a state dict (a dict of tensors)")


def _read_npz(p: Path) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    tensors, strings = {}, {}
    try:
        with np.load(p, allow_pickle=False) as z:
            for key in z.files:
                a = z[key]
                if a.dtype.kind in "US":
                    strings[key] = [str(s) for s in a.reshape(-1).tolist()]
                elif a.dtype.kind in "fiub":
                    tensors[key] = torch.from_numpy(np.ascontiguousarray(a))
                else:
                    raise ProbeError(f"{p}: array {key!r} holds {a.dtype}, not numbers")
    except ValueError as e:
        why = "it holds pickled Python objects (probe never unpickles)" if "allow_pickle" in str(e) else _first_line(e)
        raise ProbeError(f"cannot read {p} as .npz: {why}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ProbeError(f"cannot read {p} as .npz: {_first_line(e)}") from None
    return tensors, strings


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:200] if text else "") or type(e).__name__


def _unpickle_reason(e: BaseException) -> str:
    """The WeightsUnpickler's own reason (torch's message spans many lines of advice)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.startswith("WeightsUnpickler error:"):
            rest = ln[len("WeightsUnpickler error:"):].strip() or (lines[i + 1] if i + 1 < len(lines) else "")
            return rest[:160] or "not a PyTorch file"
    return "not a PyTorch file"
