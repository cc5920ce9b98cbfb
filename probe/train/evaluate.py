"""Loss of a checkpoint over a whole split (train, val or test) of its own corpus.

The default is exact: one stream, the hidden state carried from the split's
first symbol to its last, the text fed in chunks. Every symbol of the split
after the first is predicted (the first one is only read, as there is nothing
before it), so a split of n symbols gives n - 1 predictions.

Bits per *character* divide the total bits by the number of characters in the
predicted text. For a char vocabulary that is the number of symbols; for a byte
vocabulary it is the number of UTF-8 characters (bytes that do not continue a
multi-byte character), the unit in which compressors and char models compare.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from probe.model import checkpoint as ckpt
from probe.data import corpus
from probe.checks import check_at_least, check_choice, check_int
from probe.errors import ProbeError
from probe.model.charrnn import CharRNN
from probe.train.precision import check_bf16
from probe.data.vocab import Vocab, decode_utf8

LN2 = math.log(2)
PARTS = ("train", "val", "test")


def count_utf8_chars(data: bytes | np.ndarray) -> int:
    """Characters in UTF-8 bytes: every byte that is not a continuation byte (10xxxxxx) starts one."""
    arr = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else np.asarray(data)
    return int(np.count_nonzero((arr & 0xC0) != 0x80))


def corpus_ids(meta: dict, vocab: Vocab) -> np.ndarray:
    """The checkpoint's whole corpus encoded with its vocabulary, after checking the file's sha256."""
    data = meta.get("data")
    _, raw = corpus.read_training_corpus(data)
    ids = vocab.encode(raw if vocab.encoding == "byte" else decode_utf8(raw, str(data["corpus"])))
    split = corpus.Split.from_json(data["split"])
    if split.n != len(ids):
        raise ProbeError(f"corpus {data['corpus']} encodes to {len(ids):,} symbols, "
                         f"but the checkpoint's split counts {split.n:,}")
    return ids


def split_ids(meta: dict, vocab: Vocab, part: str) -> np.ndarray:
    """The symbols of one split (`train`, `val` or `test`) of the checkpoint's corpus."""
    check_choice("part", part, PARTS)
    ids = corpus_ids(meta, vocab)
    a, b = corpus.Split.from_json(meta["data"]["split"]).range(part)
    return ids[a:b]


@torch.no_grad()
def sequence_loss(model: CharRNN, ids: np.ndarray, *, streams: int = 1, bf16: bool = False,
                  chunk: int = 2048) -> float:
    """Total loss in nats of predicting ids[1:] from ids[:-1].

    streams=1 is exact (one state carried over the whole text). With several
    streams the text is cut into `streams` contiguous rows that each start from
    a zero state (faster, slightly pessimistic); the remainder that does not
    fill a row is continued from the last row's state, so every symbol is
    still predicted once.
    """
    check_at_least(streams=(streams, 1), chunk=(chunk, 1))
    n_pred = len(ids) - 1
    if n_pred < 1:
        return 0.0
    device = next(model.parameters()).device
    t = torch.as_tensor(np.ascontiguousarray(ids, dtype=np.int64), device=device)
    streams = min(streams, n_pred)
    L = n_pred // streams
    # row r reads t[r*L : (r+1)*L] and predicts t[r*L+1 : (r+1)*L+1]
    x = t[: streams * L].view(streams, L)
    y = t[1: streams * L + 1].view(streams, L)
    was = model.training
    model.eval()
    try:
        total, state = _run(model, x, y, None, bf16, chunk)
        rest = n_pred - streams * L
        if rest:
            last = [tuple(s[:, -1:].contiguous() for s in st) if isinstance(st, tuple) else st[:, -1:].contiguous()
                    for st in state]
            xr = t[streams * L: n_pred].view(1, -1)
            yr = t[streams * L + 1: n_pred + 1].view(1, -1)
            more, _ = _run(model, xr, yr, last, bf16, chunk)
            total += more
    finally:
        model.train(was)
    return total


def _run(model: CharRNN, x: torch.Tensor, y: torch.Tensor, state, bf16: bool, chunk: int):
    total = 0.0
    for s in range(0, x.shape[1], chunk):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits, state = model(x[:, s:s + chunk], state)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y[:, s:s + chunk].reshape(-1),
                               reduction="sum")
        total += float(loss)
    return total, state


def evaluate_split(checkpoint_or_path: ckpt.Checkpoint | str | Path, part: str = "test", *, streams: int = 1,
                   bf16: bool = False, max_chars: int | None = None, chunk: int = 2048) -> dict:
    """Loss of a checkpoint on one split of its own corpus.

    `max_chars` keeps only the split's first `max_chars` symbols (a quick look,
    not a result to report). Returns a dict with `loss_nats` (mean per
    predicted symbol), `bits_per_symbol`, `bits_per_char`, `total_bits`,
    `n_symbols` / `n_chars` (predicted), `n_unk` (char vocabularies), and what
    was measured (`checkpoint`, `part`, `corpus`, `vocab`, `streams`, `bf16`,
    `seconds`).
    """
    ck = checkpoint_or_path if isinstance(checkpoint_or_path, ckpt.Checkpoint) else ckpt.load(checkpoint_or_path)
    if max_chars is not None:
        check_int("max_chars", max_chars, min=2)
    ids = split_ids(ck.meta, ck.vocab, part)
    truncated = max_chars is not None and max_chars < len(ids)
    if truncated:
        ids = ids[:max_chars]
    if len(ids) < 2:
        raise ProbeError(f"the {part} split holds {len(ids)} symbols: nothing to predict")
    if bf16:
        check_bf16(next(ck.model.parameters()).device, ck.config.model)
    t0 = time.time()
    nats = sequence_loss(ck.model, ids, streams=streams, bf16=bf16, chunk=chunk)
    seconds = time.time() - t0
    predicted = ids[1:]
    n_sym = len(predicted)
    n_chars = count_utf8_chars(predicted.astype(np.uint8)) if ck.vocab.encoding == "byte" else n_sym
    bits = nats / LN2
    return {
        "checkpoint": str(ck.path),
        "part": part,
        "corpus": ck.meta["data"]["corpus"],
        "vocab": ck.vocab.encoding,
        "streams": streams,
        "bf16": bf16,
        "truncated": truncated,
        "n_symbols": n_sym,
        "n_chars": n_chars,
        "n_unk": (int(np.count_nonzero(predicted == ck.vocab.unk))
                  if ck.vocab.encoding == "char" and ck.vocab.unk is not None else 0),
        "loss_nats": nats / n_sym,
        "bits_per_symbol": bits / n_sym,
        "bits_per_char": bits / n_chars if n_chars else float("nan"),
        "total_bits": bits,
        "seconds": seconds,
    }
