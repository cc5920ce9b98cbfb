"""Synthetic recordings with planted units, written with RecordingWriter (truth known)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from probe.names import array_name
from probe.record.recording import RecordingWriter
from probe.data.vocab import Vocab


def make_recording(out: Path, text: str, arrays: dict[str, np.ndarray], *, model: str = "lstm",
                   num_layers: int = 2, hidden: int = 8, dtype=np.float32, extra_meta: dict | None = None) -> Path:
    """A char-level recording of `text` holding exactly `arrays` (e.g. {'L0.h': (n, hidden) array})."""
    vocab = Vocab.from_text(text)
    w = RecordingWriter(out)
    n = len(text)
    for name, a in arrays.items():
        assert a.shape == (n, hidden), (name, a.shape)
        w.save_array(name, np.asarray(a, dtype=dtype))
    w.save_array("ids", vocab.encode(text))
    w.write_text(text)
    meta = {"n_rows": n, "vocab": vocab.to_json(),
            "model_config": {"model": model, "num_layers": num_layers, "rnn_size": hidden, "vocab_size": vocab.size}}
    meta.update(extra_meta or {})
    return w.finish(meta)


def noise_arrays(n: int, *, num_layers: int = 2, hidden: int = 8, kinds=("h", "c"), seed: int = 0,
                 smooth: int = 1) -> dict[str, np.ndarray]:
    """Random activations for every layer and kind (optionally smoothed over time, like real states)."""
    rng = np.random.default_rng(seed)
    out = {}
    for l in range(num_layers):
        for k in kinds:
            a = rng.standard_normal((n, hidden)).astype(np.float32)
            if smooth > 1:
                ker = np.ones(smooth) / smooth
                a = np.stack([np.convolve(a[:, j], ker, mode="same") for j in range(hidden)], axis=1)
            if k in "ifoz r":
                a = 1 / (1 + np.exp(-a))
            out[array_name(l, k)] = a.astype(np.float32)
    return out


def wiki_like_text(n_lines: int = 120, seed: int = 0) -> str:
    """Lines of prose with [[links]], http URLs and "quotes" at random places."""
    rng = np.random.default_rng(seed)
    words = ["the", "river", "city", "of", "and", "a", "north", "church", "was", "built", "in", "by"]
    lines = []
    for _ in range(n_lines):
        parts = []
        for _ in range(int(rng.integers(4, 12))):
            r = rng.random()
            w = str(rng.choice(words))
            if r < 0.15:
                parts.append(f"[[{w} {rng.choice(words)}]]")
            elif r < 0.2:
                parts.append(f"http://www.{w}.org/{rng.choice(words)}")
            else:
                parts.append(w)
        lines.append(" ".join(parts) + ".")
    return "\n".join(lines) + "\n"


__all__ = ["make_recording", "noise_arrays", "wiki_like_text"]
