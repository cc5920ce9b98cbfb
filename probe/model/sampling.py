"""Generating text from a model, one symbol at a time, with temperature or argmax, optionally with units held.

The one sampling loop: plain sampling and clamped generation (`holds`, see `probe.model.intervene`) both
walk the layers through `probe.model.hooks.run_with_hooks`.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import torch

from probe.data.vocab import Vocab
from probe.checks import ParamError
from probe.model.charrnn import CharRNN
from probe.model.hooks import run_with_hooks
from probe.model.intervene import Hold, hold_hooks


@torch.no_grad()
def generate(model: CharRNN, vocab: Vocab, prime: str | bytes, length: int, temperature: float = 1.0,
             seed: int | None = None, argmax: bool = False, state=None, holds: Iterable[Hold] = ()) -> Iterator[int]:
    """Yield `length` new symbol ids after feeding `prime` (same seed, same ids), with `holds` applied at
    every step, the prime's included."""
    holds = list(holds)
    for h in holds:
        if not isinstance(h, Hold) or not isinstance(h.value, (int, float)) or h.stream not in (None, 0):
            raise ParamError("holds", "for generation must be Hold(unit, number) items (one value at every step)")
    hooks = hold_hooks(model, holds, streams=1) if holds else None
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu")
    gen.manual_seed(0 if seed is None else seed)
    ids = vocab.encode(prime) if len(prime) else vocab.encode("\n")
    x = torch.as_tensor(ids, dtype=torch.long, device=device).view(1, -1)
    walk = run_with_hooks(model, x, state, step_hooks=hooks)
    last, state = walk.logits[0, -1].float().cpu(), walk.state
    for _ in range(length):
        if argmax or temperature <= 0:
            nxt = int(last.argmax())
        else:
            probs = torch.softmax(last / temperature, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        yield nxt
        walk = run_with_hooks(model, torch.tensor([[nxt]], device=device), state, step_hooks=hooks)
        last, state = walk.logits[0, -1].float().cpu(), walk.state


def sample_text(model: CharRNN, vocab: Vocab, prime: str, length: int, **kw) -> str:
    return vocab.decode(list(generate(model, vocab, prime, length, **kw)))
