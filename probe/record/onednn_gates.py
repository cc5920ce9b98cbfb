"""LSTM gate activations straight from oneDNN's fused forward pass (CPU, float32), no recompute.

In training mode oneDNN's LSTM kernel keeps every step's gate activations in its
workspace (for the backward pass): time-major rows of the four gates (i, f, g, o,
PyTorch's order) with a padded leading dimension. Reading them there saves the
recorder one matmul per layer as large as the pass itself. The layout is oneDNN's
internal one, so the caller checks every chunk: the cell-state recurrence run on
these gates must end at the `c` the kernel returns (see `probe.record.recorder`); on any
mismatch, or when the op is missing, the recorder goes back to recomputing.
"""
from __future__ import annotations

import torch

_available = True


def _padded_ld(n: int) -> int:
    """oneDNN's leading dimension for n floats: a multiple of 16, plus 16 when a multiple of 256."""
    ld = -(-n // 16) * 16
    return ld + 16 if ld % 256 == 0 else ld


def lstm_layer_with_gates(layer: torch.nn.LSTM, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                          ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """Run one single-layer LSTM over x (S, T, K): (h (S, T, H), (h_n, c_n) each (1, S, H), gates (S, T, 4H)).

    None when oneDNN's RNN op is not there for this input (not CPU float32, or an older torch): the
    caller then runs the layer as usual and recomputes the gates.
    """
    global _available
    if not _available or x.device.type != "cpu" or x.dtype != torch.float32:
        return None
    H = layer.hidden_size
    S, T = x.shape[:2]
    w = [p.detach() for p in (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0)]
    h0, c0 = (s[0].detach().contiguous() for s in state)
    xt = x.detach().transpose(0, 1).contiguous().requires_grad_(True)  # time-major; grad mode keeps the workspace
    try:
        with torch.enable_grad():
            y, hy, cy, ws = torch.mkldnn_rnn_layer(xt, *w, h0, c0, False, [], 2, H, 1, True, False, False, True)
    except (AttributeError, RuntimeError, TypeError):
        _available = False
        return None
    ld = _padded_ld(4 * H)
    if ws is None or ws.dtype != torch.uint8 or ws.numel() < T * S * ld * 4:
        return None
    gates = ws[: T * S * ld * 4].view(torch.float32).view(T, S, ld)[..., : 4 * H]
    gates = gates.transpose(0, 1).contiguous()  # (S, T, 4H), a copy: the workspace can go
    h = y.detach().transpose(0, 1).contiguous()
    return h, (hy.detach().unsqueeze(0), cy.detach().unsqueeze(0)), gates


def disable() -> None:
    """Stop using the workspace for the rest of the process (after a failed check)."""
    global _available
    _available = False
