"""Generating text from a model, one symbol at a time, with temperature or argmax."""
from __future__ import annotations

from typing import Iterator

import torch

from probe.model.charrnn import CharRNN
from probe.data.vocab import Vocab


@torch.no_grad()
def generate(model: CharRNN, vocab: Vocab, prime: str | bytes, length: int, temperature: float = 1.0,
             seed: int | None = None, argmax: bool = False, state=None) -> Iterator[int]:
    """Yield `length` new symbol ids after feeding `prime` (same seed, same ids)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    gen = torch.Generator(device="cpu")
    gen.manual_seed(0 if seed is None else seed)
    ids = vocab.encode(prime) if len(prime) else vocab.encode("\n")
    x = torch.as_tensor(ids, dtype=torch.long, device=device).view(1, -1)
    try:
        logits, state = model(x, state)
        last = logits[0, -1].float().cpu()
        for _ in range(length):
            if argmax or temperature <= 0:
                nxt = int(last.argmax())
            else:
                probs = torch.softmax(last / temperature, dim=-1)
                nxt = int(torch.multinomial(probs, 1, generator=gen))
            yield nxt
            logits, state = model(torch.tensor([[nxt]], device=device), state)
            last = logits[0, -1].float().cpu()
    finally:
        model.train(was_training)


def sample_text(model: CharRNN, vocab: Vocab, prime: str, length: int, **kw) -> str:
    return vocab.decode(list(generate(model, vocab, prime, length, **kw)))
