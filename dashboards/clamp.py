"""The dashboard's clamped generation: the library's sampler with one unit held, within the dashboard's limits."""
from __future__ import annotations

from probe.errors import ProbeError
from probe.model.charrnn import CharRNN
from probe.model.intervene import Hold
from probe.model.sampling import sample_text
from probe.data.vocab import Vocab

MAX_PRIME = 1000
MAX_LENGTH = 2000


def generate_clamped(model: CharRNN, vocab: Vocab, prime: str, length: int, *, unit=None,
                     value: float = 0.0, seed: int = 0, temperature: float = 1.0) -> str:
    """Sample `length` symbols after `prime` with `unit` held at `value` at every step (None: no clamp)."""
    if not 0 < length <= MAX_LENGTH:
        raise ProbeError(f"generate between 1 and {MAX_LENGTH} characters, not {length}")
    if not temperature > 0:
        raise ProbeError(f"the temperature must be positive, not {temperature}")
    holds = [] if unit is None else [Hold(str(unit), value)]
    return sample_text(model, vocab, prime[-MAX_PRIME:] if prime else "", length, seed=int(seed),
                       temperature=temperature, holds=holds)
