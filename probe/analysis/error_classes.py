"""The error breakdown of Karpathy, Johnson & Fei-Fei (2015), "Visualizing and Understanding Recurrent
Networks" (arXiv 1506.02078), section "Error analysis: breaking down the failure cases": which oracle
would have fixed each error of a model.

An error is a character to which the model gives probability below 0.5 (a byte model: the product of
its bytes' probabilities, i.e. the character's probability by the chain rule). Oracles then remove
errors in the paper's order, each taking only the errors still left; every error lands in the first
class that removes it:

1. n-gram (n = 1..9): modified Kneser-Ney models of each order 1 to 9 fitted on the model's training
   split (in its own symbols: bytes for a byte model, so "order" counts bytes there); an error is
   removed when that model gives the character probability >= 0.5. Order n takes what orders < n left.
2. dynamic memory (n = 100, 500, 1000, 5000): the character lies in a word, is not its first
   character, and the whole word occurs as a substring of the n characters before the word.
3. rare words (seen <= t times, t = 0..5): the character lies in a word seen at most t times in the
   training split.
4. word model: the character follows a space, a newline or a quote (' or ", or the escape &quot; with
   which XML text such as the wiki dump writes a double quote): the start of a word.
5. punctuation: the character is punctuation (Unicode category P*).
6. boost (b = 0.1, 0.2, 0.3, 0.4): boosting the model's probability of the character by b would reach
   0.5 (probability >= 0.5 - b); the steps are ours (the paper does not list them).
7. remaining: probability below 0.1 and none of the above.

A word is a maximal run of Unicode word characters (`\\w+`: letters, digits, underscore).
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from probe.analysis.compare import Text, char_bits, model_symbol_bits, text_of, training_ids
from probe.data import corpus
from probe.data.vocab import decode_utf8
from probe.checks import ParamError
from probe.errors import ProbeError
from probe.model import checkpoint as ckpt
from probe.model.ngram import fit_cached

NGRAM_ORDERS = tuple(range(1, 10))  # the paper's n-gram oracle: n = 1..9
MEMORY_WINDOWS = (100, 500, 1000, 5000)  # the paper's dynamic n-long memory oracles
RARE_COUNTS = tuple(range(0, 6))  # the paper's rare-word thresholds: 0..5
BOOSTS = (0.1, 0.2, 0.3, 0.4)
WORD_STARTERS = frozenset(" \n\"'")
ESCAPED_QUOTE = "&quot;"  # a double quote as XML text writes it (the wiki dump): counts as a quote
_WORD = re.compile(r"\w+")

GROUP_DEFINITIONS = {
    "n-gram": "an order-n Kneser-Ney model (training split) gives the character p >= 0.5",
    "dynamic memory": "not a word's first character, and the whole word occurs in the n characters before it",
    "rare words": "inside a word seen at most t times in the training split",
    "word model": "the character follows a space, a newline or a quote (' \" &quot;)",
    "punctuation": "the character is punctuation (Unicode category P)",
    "boost": "p >= 0.5 - b: a boost of b would fix it",
    "remaining": "p < 0.1 and no oracle above fixes it",
}


@dataclass
class ErrorBreakdown:
    """Counts and shares of a model's errors by the first oracle that removes them."""

    checkpoint: str
    text: str
    n_chars: int
    n_errors: int
    table: pd.DataFrame  # group, cls, n_errors, share, cumulative_share, definition
    labels: np.ndarray  # per character: index into table rows, -1 for no error (and the first character)
    probs: np.ndarray  # per character: the model's probability of it (NaN for the first)

    @property
    def error_rate(self) -> float:
        return self.n_errors / self.n_chars if self.n_chars else float("nan")

    def to_dict(self) -> dict:
        return {"checkpoint": self.checkpoint, "text": self.text, "n_chars": self.n_chars,
                "n_errors": self.n_errors, "error_rate": self.error_rate,
                "classes": self.table.to_dict(orient="records")}


def words(chars: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Per character the index of its word (-1 outside words), and each word's (start, end)."""
    of = np.full(len(chars), -1, dtype=np.int64)
    spans = []
    for j, m in enumerate(_WORD.finditer(chars)):
        of[m.start():m.end()] = j
        spans.append(m.span())
    return of, spans


def training_word_counts(ck: ckpt.Checkpoint) -> Counter:
    """How often each word occurs in the checkpoint's training split."""
    data = ck.meta.get("data") or {}
    path, raw = corpus.read_training_corpus(data)
    a = corpus.Split.from_json(data["split"]).range("train")[1]
    if ck.vocab.encoding == "byte":
        train = raw[:a].decode("utf-8", errors="replace")
    else:
        train = decode_utf8(raw, str(path))[:a]
    return Counter(_WORD.findall(train))


def after_word_starter(chars: str) -> np.ndarray:
    """Per character: does it follow a space, a newline, a quote (' or ") or the escape &quot;?"""
    n = len(chars)
    out = np.zeros(n, dtype=bool)
    if n > 1:
        out[1:] = np.isin(np.array(list(chars[:-1])), list(WORD_STARTERS))
    k = len(ESCAPED_QUOTE)
    start = chars.find(ESCAPED_QUOTE)
    while start >= 0:
        if start + k < n:
            out[start + k] = True
        start = chars.find(ESCAPED_QUOTE, start + 1)
    return out


def memory_distance(chars: str, spans: list[tuple[int, int]], wanted: np.ndarray, window: int) -> np.ndarray:
    """Per word: characters back from its start to the nearest earlier whole occurrence as a substring
    (the occurrence's start), within `window`; a large number where there is none. Only `wanted` words."""
    out = np.full(len(spans), np.iinfo(np.int64).max, dtype=np.int64)
    for j in np.flatnonzero(wanted):
        s, e = spans[j]
        w = chars[s:e]
        hit = chars.rfind(w, max(0, s - window), s)
        if hit >= 0:
            out[j] = s - hit
    return out


def breakdown(checkpoint, text=None, *, part: str = "val", cache=None, model_bits=None) -> ErrorBreakdown:
    """The paper's error breakdown of one checkpoint on a text (default: its own split `part`).

    model_bits: the model's per-character bits on the text when already known (e.g. from a recording:
    `probe.analysis.compare.recording_char_bits`), else the model is run over the text."""
    ck = checkpoint if isinstance(checkpoint, ckpt.Checkpoint) else ckpt.load(checkpoint)
    if part not in ("train", "val", "test"):
        raise ParamError("part", f"must be train, val or test, not {part!r}")
    t: Text = text_of(ck, Path(text) if isinstance(text, Path) else text, part)
    n = len(t.chars)
    if n < 2:
        raise ProbeError(f"the text ({t.source}) holds {n} character(s): nothing to predict")
    ids, char_of = t.symbols(ck.vocab)
    if len(ids) < max(NGRAM_ORDERS):
        raise ProbeError(f"the text holds {len(ids)} symbols, fewer than the n-gram oracle's order "
                         f"{max(NGRAM_ORDERS)}")
    if model_bits is None:
        bits = char_bits(model_symbol_bits(ck.model, ids), char_of, n)
    else:
        bits = np.asarray(model_bits, dtype=np.float64)
        if bits.shape != (n,):
            raise ProbeError(f"model_bits holds {bits.size:,} values for a text of {n:,} characters")
    p = 2.0 ** -bits
    valid = np.isfinite(p)
    left = valid & (p < 0.5)  # errors not yet removed
    n_errors = int(left.sum())
    labels = np.full(n, -1, dtype=np.int64)
    rows: list[tuple[str, str, str]] = []

    def take(group: str, cls: str, fixed: np.ndarray, definition: str) -> None:
        hit = left & fixed
        labels[hit] = len(rows)
        rows.append((group, cls, definition))
        left[hit] = False

    train = training_ids(ck)
    for order in NGRAM_ORDERS:
        if not left.any():
            p_ng = np.zeros(n)
        else:
            m = fit_cached(train, order, ck.vocab.size, cache=cache)
            p_ng = 2.0 ** -char_bits(-m.log2_probs(ids), char_of, n)
        take("n-gram", f"{order}-gram", p_ng >= 0.5, f"an order-{order} Kneser-Ney model gives p >= 0.5")
    word_of, spans = words(t.chars)
    first_of_word = np.zeros(n, dtype=bool)
    first_of_word[[s for s, _ in spans]] = True
    in_word_later = (word_of >= 0) & ~first_of_word
    wanted = np.zeros(len(spans), dtype=bool)
    wanted[np.unique(word_of[left & in_word_later])] = True
    dist = memory_distance(t.chars, spans, wanted, max(MEMORY_WINDOWS))
    word_dist = np.where(word_of >= 0, dist[np.maximum(word_of, 0)] if len(spans) else 0, np.iinfo(np.int64).max)
    for w in MEMORY_WINDOWS:
        take("dynamic memory", f"memory {w}", in_word_later & (word_dist <= w),
             f"the word occurs in the {w} characters before it")
    counts = training_word_counts(ck)
    seen = np.array([counts.get(t.chars[s:e], 0) for s, e in spans], dtype=np.int64)
    word_seen = np.where(word_of >= 0, seen[np.maximum(word_of, 0)] if len(spans) else 0, np.iinfo(np.int64).max)
    for c in RARE_COUNTS:
        take("rare words", f"word seen <= {c}x", word_seen <= c, f"in a word seen at most {c} times in training")
    take("word model", "after space/newline/quote", after_word_starter(t.chars), GROUP_DEFINITIONS["word model"])
    punct = np.array([unicodedata.category(ch).startswith("P") for ch in t.chars], dtype=bool)
    take("punctuation", "punctuation", punct, GROUP_DEFINITIONS["punctuation"])
    for b in BOOSTS:
        take("boost", f"boost {b:g}", p >= 0.5 - b - 1e-12, f"p >= {0.5 - b:g}")
    take("remaining", "remaining", np.ones(n, dtype=bool), GROUP_DEFINITIONS["remaining"])
    counts_per = np.bincount(labels[labels >= 0], minlength=len(rows))
    share = counts_per / n_errors if n_errors else np.zeros(len(rows))
    table = pd.DataFrame({"group": [r[0] for r in rows], "cls": [r[1] for r in rows], "n_errors": counts_per,
                          "share": share, "cumulative_share": np.cumsum(share),
                          "definition": [r[2] for r in rows]})
    return ErrorBreakdown(checkpoint=str(ck.path), text=t.source, n_chars=int(valid.sum()), n_errors=n_errors,
                          table=table, labels=labels, probs=p)


def group_table(b: ErrorBreakdown) -> pd.DataFrame:
    """The breakdown summed per group (n-gram, dynamic memory, ...), in the paper's order."""
    g = b.table.groupby("group", sort=False)[["n_errors", "share"]].sum().reset_index()
    g["definition"] = g.group.map(GROUP_DEFINITIONS)
    return g
