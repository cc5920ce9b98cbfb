"""Whether this machine runs a cell in bfloat16: checked once per (device, cell), by running it.

oneDNN's bf16 LSTM needs a CPU with native bf16 (AVX-512 BF16 or AMX); elsewhere torch raises an opaque
"could not create a primitive descriptor" deep inside the first forward pass. Asking first turns that into
one line naming the option.
"""
from __future__ import annotations

import functools

import torch

from probe.checks import ParamError

_CELLS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


@functools.lru_cache(maxsize=None)
def bf16_runs(device_type: str, cell: str) -> bool:
    """True when a tiny `cell` layer runs forward and backward under bfloat16 autocast on `device_type`."""
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    layer = _CELLS[cell](4, 4, batch_first=True).to(device_type)
    x = torch.zeros(1, 2, 4, device=device_type, requires_grad=True)
    try:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out, _ = layer(x)
        out.float().sum().backward()
    except RuntimeError:
        return False
    return True


def check_bf16(device: torch.device | str, cell: str) -> None:
    """A ParamError naming `bf16` when this device cannot run `cell` in bfloat16."""
    device_type = torch.device(device).type
    if not bf16_runs(device_type, cell):
        raise ParamError("bf16", f"{{bf16=True}} does not run here: this {device_type.upper()} has no bfloat16 kernel "
                         f"for the {cell.upper()} (it needs native bf16, e.g. AVX-512 BF16 or AMX); leave it out",
                         advice=True)
