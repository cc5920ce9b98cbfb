"""A generated library of candidate concepts: what a unit of a character model might track.

`candidate_library(text)` reads the text's statistics and returns a few hundred `Concept`s, each a
labelling of the text (binary, integer or continuous), all computed with vectorised numpy:

* the built-in concepts (`probe.analysis.concepts.BUILTIN`);
* character classes (letter, digit, upper, lower, space, newline, punctuation, ...), for the current,
  the next and the previous character;
* the current / next / previous character is X, for the frequent symbols;
* position in the word, line and sentence (integers);
* inside each bracket, quote and markup pair that occurs (with the depth for nesting ones);
* the most frequent n-gram contexts (2-4 characters just read: `after 'the '`);
* byte models: the position inside a multi-byte UTF-8 character (row-level concepts, `RowConcept`).

Labellings that are constant, too rare (fewer than `min_count` characters on either side) or duplicates
of an earlier one (a binary one and its complement count as one; continuous ones up to an affine map)
are dropped. Labels are computed once and kept for the text they came from.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from probe.analysis.concepts import BUILTIN, Concept
from probe.checks import check_int, check_number

CLASSES = ("letter", "digit", "upper", "lower", "space", "newline", "whitespace", "punct", "alnum", "non-ascii")
PAIRS = (("(", ")"), ("[", "]"), ("{", "}"), ("<", ">"), ("[[", "]]"), ("{{", "}}"), ("&lt;", "&gt;"))
TOGGLES = {'"': '"', "`": "`", "''": r"(?<!')''(?!')", "'''": r"(?<!')'''(?!')", "==": r"(?<!=)==+(?!=)",
           "&quot;": "&quot;", "$": r"\$", "*": r"(?<!\*)\*\*?(?!\*)"}
TAG = re.compile(r"<(/?)([A-Za-z][\w:.-]*)[^<>\n]*?(/?)>")
ESCAPED_TAG = re.compile(r"&lt;(/?)([A-Za-z][\w:.-]*)(?:[^&\n]|&(?!gt;))*?(/?)&gt;")


@dataclass
class RowConcept(Concept):
    """A concept labelled per recorded row, not per character (byte models: a byte inside its character).

    `row_fn(char_of_row)` gives one label per row; `labels(text)` (the Concept API) gives the label of
    each character's first byte.
    """

    row_fn: Callable[[np.ndarray], np.ndarray] = field(default=None, repr=False)

    def row_labels_for(self, rec) -> np.ndarray:
        dtype = {"binary": np.uint8, "continuous": np.float32, "integer": np.int32}[self.label_type]
        return np.asarray(self.row_fn(np.asarray(rec.char_of_row)), dtype=dtype)


class _Cached:
    """A labelling function that remembers its labels for one text (the one the library was built on)."""

    def __init__(self, fn: Callable[[str], np.ndarray], text: str, labels: np.ndarray):
        self.fn, self.text, self.values = fn, text, labels

    def __call__(self, text: str) -> np.ndarray:
        if text is self.text or (len(text) == len(self.text) and text == self.text):
            return self.values
        return self.fn(text)


def concept_labels(rec, concept: Concept) -> np.ndarray:
    """One label per row of `rec` (row-level concepts directly, others through rec.row_labels)."""
    if isinstance(concept, RowConcept):
        return concept.row_labels_for(rec)
    return np.asarray(rec.row_labels(concept.labels(rec.text)))


# --------------------------------------------------------------------------- vectorised text helpers

def codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _table(text: str):
    """(unique characters, inverse index): per-character properties are looked up per distinct character."""
    cp = codepoints(text)
    uniq, inv = np.unique(cp, return_inverse=True)
    return [chr(int(c)) for c in uniq], inv.astype(np.int64)


def _class_masks(text: str) -> dict[str, np.ndarray]:
    chars, inv = _table(text)
    tests = {"letter": str.isalpha, "digit": str.isdigit, "upper": str.isupper, "lower": str.islower,
             "space": lambda c: c == " ", "newline": lambda c: c == "\n", "whitespace": str.isspace,
             "punct": lambda c: not c.isalnum() and not c.isspace() and c.isprintable(),
             "alnum": str.isalnum, "non-ascii": lambda c: ord(c) > 127}
    return {name: np.array([bool(t(c)) for c in chars], bool)[inv] for name, t in tests.items()}


def _shift(a: np.ndarray, k: int, fill=0) -> np.ndarray:
    """a shifted by k positions: out[t] = a[t - k] (k > 0: previous), a[t + |k|] for k < 0 (next)."""
    out = np.full_like(a, fill)
    if k > 0:
        out[k:] = a[:-k]
    elif k < 0:
        out[:k] = a[-k:]
    else:
        out[:] = a
    return out


def _since(mark: np.ndarray) -> np.ndarray:
    """Characters since the last True of `mark` strictly before each position (from the text start if none)."""
    idx = np.arange(len(mark))
    last = np.maximum.accumulate(np.where(mark, idx, -1)) if len(mark) else idx
    before = _shift(last, 1, -1)
    return idx - before - 1


def _count_since(events: np.ndarray, reset: np.ndarray) -> np.ndarray:
    """Events (inclusive) since the last reset (exclusive of events before it)."""
    cum = np.cumsum(events)
    idx = np.arange(len(events))
    last = np.maximum.accumulate(np.where(reset, idx, -1))
    base = np.where(last >= 0, cum[np.maximum(last, 0)], 0)
    return cum - base


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position within the run from 1, characters left in the run after this one); 0 outside runs."""
    n = len(mask)
    idx = np.arange(n)
    start = mask & ~_shift(mask, 1, False)
    end = mask & ~_shift(mask, -1, False)
    first = np.maximum.accumulate(np.where(start, idx, 0))
    last = np.minimum.accumulate(np.where(end, idx, n)[::-1])[::-1]
    return np.where(mask, idx - first + 1, 0), np.where(mask, last - idx, 0)


def reflected_depth(opens: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Nesting depth from +1 events (`opens`) and -1 events (`closes`, applied first at the same position),
    never below 0 (unmatched closers are ignored): the walk S reflected at 0, S - min(0, running min of S)."""
    n = len(opens)
    steps = np.empty(2 * n, np.int64)
    steps[0::2] = -closes.astype(np.int64)
    steps[1::2] = opens
    s = np.cumsum(steps)
    d = s - np.minimum(0, np.minimum.accumulate(s)) if n else s
    return d[1::2].astype(np.int32)


def _token_spans(text: str, pattern: str) -> tuple[np.ndarray, np.ndarray]:
    starts, ends = [], []
    for m in re.finditer(pattern, text):
        starts.append(m.start())
        ends.append(m.end())
    return np.asarray(starts, np.int64), np.asarray(ends, np.int64)


def pair_depth(text: str, open_tok: str, close_tok: str) -> np.ndarray:
    """Depth inside open_tok ... close_tok, both tokens counted inside their own pair."""
    n = len(text)
    o_s, _ = _token_spans(text, re.escape(open_tok))
    _, c_e = _token_spans(text, re.escape(close_tok))
    opens, closes = np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64)
    np.add.at(opens, o_s, 1)
    np.add.at(closes, c_e, 1)
    return reflected_depth(opens, closes)[:n]


def toggle_inside(text: str, pattern: str) -> np.ndarray:
    """Inside a pair of the symmetric delimiter `pattern` (paired in order within each line), delimiters included."""
    n = len(text)
    s, e = _token_spans(text, pattern)
    out = np.zeros(n + 1, np.int64)
    if len(s) >= 2:
        nl = np.flatnonzero(codepoints(text) == 10)
        line = np.searchsorted(nl, s)
        first = np.r_[0, np.flatnonzero(np.diff(line)) + 1]
        rank = np.arange(len(s)) - np.repeat(first, np.diff(np.r_[first, len(s)]))
        ok = (rank[:-1] % 2 == 0) & (line[:-1] == line[1:])
        np.add.at(out, s[:-1][ok], 1)
        np.add.at(out, e[1:][ok], -1)
    return (np.cumsum(out)[:n] > 0).astype(np.uint8)


def tag_depths(text: str, rx: re.Pattern, min_count: int, top: int) -> dict[str, np.ndarray]:
    """Depth inside each frequent element <name>...</name> (or &lt;name&gt;...): name -> depth."""
    events: dict[str, list[tuple[int, int]]] = {}
    for m in rx.finditer(text):
        if m.group(3):  # self-closing
            continue
        name = m.group(2).lower()
        events.setdefault(name, []).append((m.start() if not m.group(1) else -1, m.end() if m.group(1) else -1))
    n = len(text)
    ranked = sorted(events, key=lambda k: -sum(1 for o, _ in events[k] if o >= 0))
    out = {}
    for name in ranked[:top]:
        ev = events[name]
        o = np.array([a for a, _ in ev if a >= 0], np.int64)
        c = np.array([b for _, b in ev if b >= 0], np.int64)
        if len(o) < 2 or len(c) < 2:
            continue
        opens, closes = np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64)
        np.add.at(opens, o, 1)
        np.add.at(closes, c, 1)
        d = reflected_depth(opens, closes)[:n]
        if int((d > 0).sum()) >= min_count:
            out[name] = d
    return out


def show(s: str) -> str:
    """A symbol or n-gram as it appears in a concept name."""
    return {" ": "space", "\n": "newline", "\t": "tab", "\r": "cr"}.get(s, s) if len(s) == 1 else repr(s)


# --------------------------------------------------------------------------- position helpers

def positions(text: str) -> dict[str, np.ndarray]:
    """Integer positions: in the word, in the line (in words), in the sentence (characters and words)."""
    cp = codepoints(text)
    cls = _class_masks(text)
    word = cls["alnum"] | (cp == ord("_"))
    wpos, wleft = _runs(word)
    wstart = word & ~_shift(word, 1, False)
    newline = cp == 10
    end_mark = np.isin(cp, [ord("."), ord("!"), ord("?")]) & (_shift(cls["whitespace"], -1, True))
    blank = newline & _shift(newline, 1, False)
    sent_end = end_mark | blank
    return {"word-pos": wpos, "word-left": wleft,
            "line-word": _count_since(wstart.astype(np.int64), newline),
            "sentence-pos": _since(sent_end), "sentence-word": _count_since(wstart.astype(np.int64), sent_end)}


def ngram_contexts(text: str, ns=(2, 3, 4), top: int = 25, min_count: int = 20) -> list[tuple[str, np.ndarray]]:
    """The `top` most frequent n-grams for each n, as (n-gram, mask of the positions right after reading it)."""
    chars, ids = _table(text)
    V = max(len(chars), 2)
    out = []
    for n in ns:
        if len(ids) < n or V ** n >= 2 ** 62:
            continue
        key = np.zeros(len(ids), np.int64)
        for j in range(n):
            key = key * V + _shift(ids, j, 0)
        key[:n - 1] = -1
        vals, counts = np.unique(key[n - 1:], return_counts=True)
        order = np.argsort(-counts, kind="stable")
        for i in order[:top]:
            if counts[i] < min_count:
                break
            k, gram = int(vals[i]), []
            for _ in range(n):
                gram.append(chars[k % V])
                k //= V
            out.append(("".join(gram), key == vals[i]))
    return out


def utf8_row_concepts() -> list[RowConcept]:
    """Byte models: a row's place inside its UTF-8 character (lead byte, continuation, bytes to come)."""
    def index(cor):
        cor = np.asarray(cor)
        idx = np.arange(len(cor))
        start = np.r_[True, cor[1:] != cor[:-1]] if len(cor) else np.zeros(0, bool)
        return idx - np.maximum.accumulate(np.where(start, idx, 0))

    def length(cor):
        cor = np.asarray(cor)
        return np.bincount(cor - cor[0] if len(cor) else cor)[cor - cor[0]] if len(cor) else cor

    def first_byte(fn):
        return lambda text: np.zeros(len(text), np.int32)

    specs = [("utf8-byte", "integer", "index of the byte inside its UTF-8 character (0: first byte)", index),
             ("utf8-left", "integer", "bytes of the character still to come after this one",
              lambda cor: length(cor) - 1 - index(cor)),
             ("utf8-cont", "binary", "a continuation byte of a multi-byte UTF-8 character", lambda cor: index(cor) > 0),
             ("utf8-lead", "binary", "the first byte of a multi-byte UTF-8 character",
              lambda cor: (index(cor) == 0) & (length(cor) > 1))]
    return [RowConcept(name, kind, desc, first_byte(fn), row_fn=fn) for name, kind, desc, fn in specs]


# --------------------------------------------------------------------------- the library

def _value_counts(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values, counts): bincount for small non-negative integers, else np.unique."""
    if y.dtype.kind in "bui" and len(y) and y.min() >= 0 and y.max() < 1 << 20:
        counts = np.bincount(y.astype(np.int64))
        vals = np.flatnonzero(counts)
        return vals, counts[vals]
    return np.unique(y, return_counts=True)


def _fingerprint(y: np.ndarray, vals: np.ndarray) -> str | None:
    """A key equal for labellings that score the same (a binary one and its complement; affine maps of
    a continuous one); None for a constant labelling."""
    if len(vals) < 2:
        return None
    if len(vals) == 2:
        b = (y == vals[1]).astype(np.uint8)
        if b[0]:
            b = 1 - b
        return "b" + hashlib.sha1(b.tobytes()).hexdigest()
    y = y.astype(np.float64)
    z = (y - y.mean()) / y.std()
    nz = np.flatnonzero(np.abs(z) > 1e-9)
    if z[nz[0]] < 0:
        z = -z
    return "c" + hashlib.sha1(np.round(z, 5).astype(np.float32).tobytes()).hexdigest()


def candidate_library(text: str, *, byte_model: bool = False, min_count: int = 20, min_frac: float = 0.0005,
                      top_symbols: int = 40, top_ngrams: int = 25, include_builtin: bool = True) -> list[Concept]:
    """Candidate concepts generated from `text` (see the module docstring); a few hundred for a long text.

    A labelling is kept when at least max(min_count, min_frac * len(text)) characters differ from its
    most common label, and it is not a duplicate of an earlier one.
    """
    check_int("min_count", min_count, min=1)
    check_number("min_frac", min_frac, min=0, max=1)
    check_int("top_symbols", top_symbols, min=0)
    check_int("top_ngrams", top_ngrams, min=0)
    need = max(min_count, int(min_frac * len(text)))
    out: list[Concept] = []
    seen: set[str] = set()

    def add(name: str, label_type: str, description: str, fn: Callable[[str], np.ndarray], y=None) -> None:
        y = np.asarray(fn(text) if y is None else y)
        if len(y) != len(text):
            return
        y = y.astype({"binary": np.uint8, "continuous": np.float32, "integer": np.int32}[label_type])
        vals, counts = _value_counts(y)
        if len(vals) < 2 or len(y) - counts.max() < need:  # constant, or too rare
            return
        key = _fingerprint(y, vals)
        if key in seen:
            return
        seen.add(key)
        out.append(Concept(name, label_type, description, _Cached(fn, text, y)))

    if not text:
        return []
    if include_builtin:
        for c in BUILTIN.values():
            add(c.name, c.label_type, c.description, c.labels)
    cls = _class_masks(text)
    for name, m in cls.items():
        add(name, "binary", f"the character is {name}", lambda t, name=name: _class_masks(t)[name], m)
    for name, m in cls.items():
        add(f"next:{name}", "binary", f"the next character is {name}",
            lambda t, name=name: _shift(_class_masks(t)[name], -1, False), _shift(m, -1, False))
        add(f"prev:{name}", "binary", f"the previous character is {name}",
            lambda t, name=name: _shift(_class_masks(t)[name], 1, False), _shift(m, 1, False))
    cp = codepoints(text)
    syms, counts = np.unique(cp, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    frequent = [int(syms[i]) for i in order if counts[i] >= need]

    def is_sym(t: str, c: int, k: int) -> np.ndarray:
        return _shift(codepoints(t) == c, k, False)

    for c in frequent[:max(top_symbols, 60)]:
        add(f"char:{show(chr(c))}", "binary", f"the character is {chr(c)!r}", lambda t, c=c: is_sym(t, c, 0),
            cp == c)
    for k, word in ((-1, "next"), (1, "prev")):
        for c in frequent[:top_symbols]:
            add(f"{word}:{show(chr(c))}", "binary", f"the {word} character is {chr(c)!r}",
                lambda t, c=c, k=k: is_sym(t, c, k), _shift(cp == c, k, False))
    for name, y in positions(text).items():
        add(name, "integer", f"position: {name}", lambda t, name=name: positions(t)[name], y)
    for o, c in PAIRS:
        if o not in text or c not in text:
            continue
        d = pair_depth(text, o, c)
        add(f"in {o}\u2026{c}", "binary", f"inside {o}...{c}, delimiters included",
            lambda t, o=o, c=c: pair_depth(t, o, c) > 0, d > 0)
        if int((d > 1).sum()) >= need:
            add(f"depth {o}\u2026{c}", "integer", f"nesting depth of {o}...{c}",
                lambda t, o=o, c=c: pair_depth(t, o, c), d)
    for tok, pattern in TOGGLES.items():
        if tok in text:
            add(f"in {tok}\u2026{tok}", "binary", f"inside {tok}...{tok} on one line, delimiters included",
                lambda t, p=pattern: toggle_inside(t, p))
    for rx, fmt in ((TAG, "<{}>"), (ESCAPED_TAG, "&lt;{}&gt;")):
        for tag, d in tag_depths(text, rx, need, 12).items():
            shown = fmt.format(tag)
            add(f"in {shown}", "binary", f"inside the element {shown}...", 
                lambda t, rx=rx, tag=tag: tag_depths(t, rx, 1, 10 ** 6).get(tag, np.zeros(len(t), np.int32)) > 0,
                d > 0)
    for gram, m in ngram_contexts(text, top=top_ngrams, min_count=need):
        add(f"after {gram!r}", "binary", f"just after reading {gram!r}",
            lambda t, g=gram: _after(t, g), m)
    if byte_model:
        chars, inv = _table(text)
        multi = np.array([len(ch.encode("utf-8", "surrogatepass")) > 1 for ch in chars], bool)[inv]
        add("utf8-multibyte", "binary", "a character of more than one UTF-8 byte",
            lambda t: np.array([len(ch.encode("utf-8", "surrogatepass")) > 1 for ch in t], bool), multi)
        if int(multi.sum()) >= need:
            out.extend(utf8_row_concepts())
    return out


def _after(text: str, gram: str) -> np.ndarray:
    """1 on the last character of each occurrence of `gram` (overlapping ones included)."""
    out = np.zeros(len(text), np.uint8)
    for m in re.finditer(f"(?={re.escape(gram)})", text):
        out[m.start() + len(gram) - 1] = 1
    return out
