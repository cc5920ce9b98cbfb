"""Synthetic recordings with planted units, for the figure, export and report tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from probe.record.recording import RecordingWriter, text_sha256
from probe.data.vocab import Vocab

TEXT = ("See [[Alan Turing]] and [[Ada Lovelace]] at http://example.org/wiki/x for more.\n"
        "    Indented  line with  double spaces.\n\tA tab, then [[links]] again.\n") * 12
H, LAYERS, K = 8, 2, 5


def inside_links(text: str) -> np.ndarray:
    """1 inside [[...]] (brackets included), else 0."""
    out = np.zeros(len(text), dtype=bool)
    depth_start = None
    i = 0
    while i < len(text):
        if text.startswith("[[", i):
            depth_start = i
        if text.startswith("]]", i) and depth_start is not None:
            out[depth_start:i + 2] = True
            depth_start = None
        i += 1
    return out


def column_of(text: str) -> np.ndarray:
    col, out = 0, np.zeros(len(text), dtype=np.float32)
    for i, ch in enumerate(text):
        out[i] = col
        col = 0 if ch == "\n" else col + 1
    return out


def make_recording(out: Path, text: str = TEXT, *, seed: int = 0, gates: bool = True, topk: bool = True) -> Path:
    """A 2x8 'LSTM' recording: L1.c.3 = +1 inside [[links]] and -1 outside; L0.c.0 = the column;
    L0.h.1 = a ramp; top-k guesses: the true next character first (p 0.6), then fixed letters."""
    rng = np.random.default_rng(seed)
    vocab = Vocab.from_text(text)
    n = len(text)
    ids = vocab.encode(text)
    w = RecordingWriter(out)
    w.write_text(text)
    w.save_array("ids", ids.astype(np.int64))
    link, col = inside_links(text), column_of(text)
    for layer in range(LAYERS):
        h = np.tanh(rng.normal(0, 0.4, (n, H))).astype(np.float32)
        c = rng.normal(0, 0.5, (n, H)).astype(np.float32)
        if layer == 0:
            c[:, 0] = col
            h[:, 1] = np.linspace(-1, 1, n)
        else:
            c[:, 3] = np.where(link, 1.0, -1.0) + rng.normal(0, 0.05, n)
        w.save_array(f"L{layer}.h", h)
        w.save_array(f"L{layer}.c", c)
        if gates:
            for g in "ifgo":
                v = rng.uniform(0, 1, (n, H)) if g != "g" else rng.uniform(-1, 1, (n, H))
                if g == "f":
                    v[:, :3] = rng.uniform(0.92, 1.0, (n, 3))  # right-saturated forget units
                w.save_array(f"L{layer}.gates.{g}", v.astype(np.float16))
    nxt = np.append(ids[1:], ids[-1])
    fill = [vocab.encode(ch)[0] for ch in "e tan"]
    topk_ids = np.array([[t] + [f for f in fill if f != t][:K - 1] for t in nxt], dtype=np.int32)
    topk_probs = np.tile(np.array([0.6, 0.2, 0.1, 0.06, 0.04], dtype=np.float16), (n, 1))
    if topk:
        w.save_array("topk_ids", topk_ids)
        w.save_array("topk_probs", topk_probs)
    loss = np.full(n, 0.737, dtype=np.float32)
    loss[-1] = np.nan
    w.save_array("loss_bits", loss)
    meta = {"n_rows": n, "vocab": vocab.to_json(),
            "model_config": {"model": "lstm", "num_layers": LAYERS, "rnn_size": H},
            "text": {"sha256": text_sha256(text), "n_chars": n, "source": "synthetic"},
            "checkpoint": {"path": str(out) + "-no-such-checkpoint"}}
    return w.finish(meta)
