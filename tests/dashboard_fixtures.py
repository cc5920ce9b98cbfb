"""Synthetic recordings with planted units, for the dashboard tests (built with RecordingWriter)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from probe.names import array_name
from probe.record.recording import RecordingWriter
from probe.data.vocab import Vocab

WORDS = ["the", "king", "said", "to", "his", "lord", "and", "she", "was", "not", "<b>", "&amp;", "{x}", "wit"]
QUOTE_UNIT = "L1.c.3"    # +1 inside "double quotes", -0.5 outside (plus a little noise)
COLUMN_UNIT = "L0.h.2"   # the column in the line / 100


def synthetic_text(n_chars: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    out, n = [], 0
    while n < n_chars:
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(3, 12))]
        if rng.random() < 0.5:
            a = rng.integers(0, len(words))
            words[a] = '"' + words[a] + " " + WORDS[rng.integers(0, len(WORDS))] + '"'
        line = " ".join(words) + ("\n" if rng.random() < 0.7 else "\n\n")
        out.append(line)
        n += len(line)
    return "".join(out)[:n_chars]


def planted(text: str, hidden: int, kind: str, layer: int, rng: np.random.Generator) -> np.ndarray:
    n = len(text)
    a = rng.normal(0, 0.3, size=(n, hidden)).astype(np.float32)
    if kind in ("i", "f", "o"):
        a = 1 / (1 + np.exp(-a * 4))
    if (layer, kind) == (1, "c"):
        inside = np.zeros(n, bool)
        q = False
        for j, ch in enumerate(text):
            if ch == '"':
                q = not q
            inside[j] = q or ch == '"'
        a[:, 3] = np.where(inside, 1.0, -0.5) + rng.normal(0, 0.05, n)
        a[:, 5] = rng.normal(0, 40, n)  # a big cell: checks ranges beyond [-1, 1]
    if (layer, kind) == (0, "h"):
        col, c = np.zeros(n, np.float32), 0
        for j, ch in enumerate(text):
            col[j] = c
            c = 0 if ch == "\n" else c + 1
        a[:, 2] = col / 100
    return a


def make_recording(out: Path, text: str, hidden: int = 16, layers: int = 2, kinds=("h", "c", "i", "f", "g", "o"),
                   k: int = 5, seed: int = 0, checkpoint: str | None = None) -> Path:
    rng = np.random.default_rng(seed)
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    n = len(ids)
    w = RecordingWriter(out)
    w.write_text(text)
    w.save_array("ids", ids.astype(np.int64))
    for layer in range(layers):
        for kind in kinds:
            dtype = np.float32 if kind == "c" else np.float16
            w.save_array(array_name(layer, kind), planted(text, hidden, kind, layer, rng).astype(dtype))
    # top-k: the true next symbol first with probability 0.5, then others
    nxt = np.concatenate([ids[1:], ids[:1]])
    tk = np.stack([nxt] + [(nxt + j) % vocab.size for j in range(1, k)], axis=1).astype(np.int32)
    probs = np.tile(np.array([0.5, 0.2, 0.1, 0.05, 0.03][:k], np.float16), (n, 1))
    w.save_array("topk_ids", tk)
    w.save_array("topk_probs", probs)
    loss = np.full(n, 1.0, np.float32)
    loss[-1] = np.nan
    w.save_array("loss_bits", loss)
    meta = {"n_rows": n, "vocab": vocab.to_json(),
            "model_config": {"vocab_size": vocab.size, "model": "lstm", "rnn_size": hidden, "num_layers": layers,
                             "embed_size": 8, "dropout": 0.0},
            "text": {"n_chars": len(text), "source": "synthetic"}}
    if checkpoint:
        meta["checkpoint"] = {"path": str(checkpoint)}
    return w.finish(meta)


def post_callback(client, app, output_start: str, inputs: dict, changed: str, state: dict | None = None):
    """POST one Dash callback (the one whose output key starts with `output_start`) as the browser would;
    the response's JSON, or None for 204. The callback must answer, never with an HTTP 500."""
    key = next(k for k in app.callback_map if k.startswith(output_start))
    cb = app.callback_map[key]
    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1].split("@")[0]}
               for o in key.strip(".").split("...")]
    body = {"output": key, "outputs": outputs,
            "inputs": [dict(i, value=inputs.get(f"{i['id']}.{i['property']}")) for i in cb["inputs"]],
            "state": [dict(s, value=(state or {}).get(f"{s['id']}.{s['property']}")) for s in cb["state"]],
            "changedPropIds": [changed]}
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code in (200, 204), (r.status_code, r.data[:300])
    return r

