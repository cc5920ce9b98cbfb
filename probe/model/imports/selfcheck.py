"""The import checks itself: the probe model's loss on a text against the original's, character by character.

The original is run independently of probe's model: a live module through its own submodules (or its own
forward), min-char-rnn through its own numpy equations, and a weights file through a model rebuilt from the
file's raw tensors in plain torch (float64, each cell's equations written out). The probe model runs through
`probe.model.hooks.run_with_hooks`, the walk `probe record` uses. Both predict every next symbol from a zero
state; the mean absolute difference of the per-symbol losses must stay within TOLERANCE_BITS bits, or the
import is refused and nothing is written.

The text: a file or string given (its first MAX_SYMBOLS symbols; characters outside a vocabulary without
<unk> are left out of it), else SAMPLED symbols sampled from the model itself (seed 0).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from probe.data import corpus
from probe.data.vocab import Vocab, decode_utf8
from probe.errors import ProbeError
from probe.model.charrnn import CharRNN
from probe.model.hooks import run_with_hooks
from probe.model.imports.roles import Weights

TOLERANCE_BITS = 1e-4  # float rounding (float32 against float64) stays far below this
MAX_SYMBOLS = 5000
SAMPLED = 1000
LN2 = math.log(2)


class Reference(Protocol):
    name: str

    def bits(self, ids: np.ndarray) -> np.ndarray: ...


@dataclass
class Check:
    """The result of the self-check: losses in bits per symbol of both models on the same text."""

    text: str  # where the text came from
    n: int  # next-symbol predictions compared
    probe_bits: float
    original_bits: float
    mean_abs: float  # mean |probe - original| over the predictions, bits
    max_abs: float
    reference: str  # how the original was run
    tolerance: float = TOLERANCE_BITS
    left_out: int = 0  # characters of a given text outside the vocabulary, not checked

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.mean_abs) and self.mean_abs <= self.tolerance)

    def to_dict(self) -> dict:
        return dict(asdict(self), passed=self.passed)


@torch.no_grad()
def probe_bits(model: CharRNN, ids: np.ndarray) -> np.ndarray:
    """probe's loss in bits of each next symbol, from a zero state (the walk `probe record` runs)."""
    x = torch.as_tensor(ids, dtype=torch.long).view(1, -1)
    logits = run_with_hooks(model, x[:, :-1]).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    return (-logp.gather(1, x[0, 1:].view(-1, 1))[:, 0] / LN2).numpy()


def check_ids(model: CharRNN, vocab: Vocab, text=None) -> tuple[np.ndarray, str, int]:
    """The ids to check on, where they came from, and how many characters were left out."""
    if text is None:
        from probe.model.sampling import generate
        prime = b"\n" if vocab.encoding == "byte" else vocab.symbols[0]
        ids = list(vocab.encode(prime)) + list(generate(model, vocab, prime, SAMPLED - 1, seed=0))
        return np.asarray(ids, dtype=np.int64), f"{SAMPLED:,} symbols sampled from the model, seed 0", 0
    if isinstance(text, Path):
        if not text.is_file():
            raise ProbeError(f"no such check text: {text}")
        data, source = corpus.read_bytes(text), str(text)
    elif isinstance(text, (str, bytes, bytearray)):
        data, source = text, "the text given"
    else:
        raise ProbeError(f"check_text must be a str, bytes or a file path, not {type(text).__name__}")
    left_out = 0
    if vocab.encoding == "byte":
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        ids = np.frombuffer(raw[:MAX_SYMBOLS], dtype=np.uint8).astype(np.int64)
    else:
        chars = data if isinstance(data, str) else decode_utf8(bytes(data), source)
        if vocab.unk is None:
            unknown = vocab.unknown(chars)
            if unknown:
                left_out = sum(unknown.values())
                chars = "".join(c for c in chars if c not in unknown)
        ids = vocab.encode(chars[:MAX_SYMBOLS])
    if len(ids) < 2:
        raise ProbeError(f"the check text ({source}) has fewer than 2 symbols the model reads")
    note = f"the first {len(ids):,} symbols of {source}" + (
        f", {left_out:,} characters outside the vocabulary left out" if left_out else "")
    return ids, note, left_out


def run_check(model: CharRNN, vocab: Vocab, reference: Reference, text=None) -> Check:
    """Compare `model` with `reference` on a text; ProbeError (nothing is written) when they differ."""
    ids, source, left_out = check_ids(model, vocab, text)
    ours = probe_bits(model, ids)
    theirs = np.asarray(reference.bits(ids), dtype=np.float64)
    if theirs.shape != ours.shape:
        raise ProbeError(f"the original ({reference.name}) gave {theirs.shape[0]} losses for {ours.shape[0]} "
                         "predictions")
    diff = np.abs(ours - theirs)
    check = Check(text=source, n=len(ours), probe_bits=float(ours.mean()), original_bits=float(theirs.mean()),
                  mean_abs=float(diff.mean()), max_abs=float(diff.max()), reference=reference.name,
                  left_out=left_out)
    if not check.passed:
        raise ProbeError(f"refused: the imported model's loss differs from the original's by {check.mean_abs:.2e} "
                         f"bits/char on average (limit {check.tolerance:.0e}; probe {check.probe_bits:.4f}, original "
                         f"{check.original_bits:.4f}, {reference.name}); nothing was written")
    return check


class WeightsReference:
    """A model rebuilt from a file's raw tensors in plain torch (float64), each cell's equations written out:
    independent of probe's CharRNN and of PyTorch's fused RNN modules."""

    name = "the file's tensors run by plain torch equations, float64"

    def __init__(self, w: Weights):
        self.w = w
        d = lambda t: None if t is None else t.detach().to("cpu", torch.float64)  # noqa: E731
        self.embed = d(w.embed)
        self.layers = [(d(l.w_ih), d(l.w_hh), d(l.b_ih), d(l.b_hh)) for l in w.layers]
        self.head_w, self.head_b = d(w.head_w), d(w.head_b)

    @torch.no_grad()
    def bits(self, ids: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(ids, dtype=torch.long)
        inp = None  # (T, in) float64 input of the layer
        for i, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.layers):
            if i == 0 and self.embed is None:
                proj = w_ih[:, x[:-1]].t()  # a one-hot vector times w_ih: the column of its symbol
            else:
                proj = (self.embed[x[:-1]] if i == 0 else inp) @ w_ih.t()
            if b_ih is not None:
                proj = proj + b_ih
            inp = self._layer(proj, w_hh, b_hh)
        logits = inp @ self.head_w.t()
        if self.head_b is not None:
            logits = logits + self.head_b
        logp = torch.log_softmax(logits, dim=-1)
        return (-logp.gather(1, x[1:].view(-1, 1))[:, 0] / LN2).numpy()

    def _layer(self, proj: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None) -> torch.Tensor:
        H = w_hh.shape[1]
        h = proj.new_zeros(H)
        c = proj.new_zeros(H)
        out = proj.new_empty(proj.shape[0], H)
        for t in range(proj.shape[0]):
            rec = w_hh @ h + (b_hh if b_hh is not None else 0)
            if self.w.cell == "lstm":
                g = proj[t] + rec
                i, f, gg, o = torch.sigmoid(g[:H]), torch.sigmoid(g[H:2 * H]), torch.tanh(g[2 * H:3 * H]), \
                    torch.sigmoid(g[3 * H:])
                c = f * c + i * gg
                h = o * torch.tanh(c)
            elif self.w.cell == "gru":
                r = torch.sigmoid(proj[t, :H] + rec[:H])
                z = torch.sigmoid(proj[t, H:2 * H] + rec[H:2 * H])
                n = torch.tanh(proj[t, 2 * H:] + r * rec[2 * H:])
                h = (1 - z) * n + z * h
            else:
                h = torch.tanh(proj[t] + rec)
            out[t] = h
        return out
