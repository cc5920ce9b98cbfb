"""Where does one model beat another? Per-character loss of two models (checkpoints or n-grams) on one text.

A side is a checkpoint (run or checkpoint folder) or `ngram:N`, an order-N modified Kneser-Ney model
fitted on the training split of the first checkpoint given (cached per corpus and order, see
`probe.model.ngram.fit_cached`). Both sides are scored on the same characters: the unit is the
UTF-8 character, and a byte model's loss for a character is the sum of its bytes' losses (the chain
rule: its probability is the product of theirs). The text's first character is not predicted (there
is nothing before it) and is left out of every number.

Δ = bits(B) - bits(A) per character: positive where A wins, negative where B wins.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from probe.analysis import concepts as concepts_mod
from probe.analysis.concepts import Concept
from probe.data import corpus
from probe.data.vocab import Vocab, decode_utf8
from probe.checks import ParamError
from probe.errors import ProbeError
from probe.model import checkpoint as ckpt
from probe.model.ngram import fit_cached
from probe.record.recording import char_of_row_for_bytes, decode_bytes
from probe.record.source import recording_checkpoint

LN2 = math.log(2)
BLOCK = 1000  # characters per bootstrap block
DISTANCE_BINS = (1, 3, 6, 11, 21, 51, 101, 201, 501, 1001, 2001, 5001)  # left edges, in characters
CONTEXT_CHARS = 4  # characters of context in the `contexts` table
# Built-in concepts compared by default, with how a non-binary one becomes "inside".
DEFAULT_CONCEPTS = ("url", "wiki-link", "quote", "xml-tag", "comment", "bracket-depth", "indent")


# --------------------------------------------------------------------------- sides and text

@dataclass
class Side:
    """One side of a comparison: a loaded checkpoint, or an n-gram order."""

    spec: str
    checkpoint: ckpt.Checkpoint | None = None
    order: int | None = None

    @property
    def is_ngram(self) -> bool:
        return self.order is not None


def parse_side(spec, param: str = "a") -> Side:
    """`ngram:N` or a checkpoint path (or a loaded Checkpoint)."""
    if isinstance(spec, ckpt.Checkpoint):
        return Side(spec=str(spec.path), checkpoint=spec)
    spec = str(spec)
    if spec.startswith("ngram:"):
        n = spec[len("ngram:"):]
        if not n.isdigit() or int(n) < 1:
            raise ParamError(param, f"{spec!r}: the n-gram order must be a positive integer")
        return Side(spec=f"ngram:{int(n)}", order=int(n))
    return Side(spec=spec, checkpoint=ckpt.load(spec))


@dataclass
class Text:
    """The compared text as characters, and as the bytes (byte models) the characters came from."""

    chars: str
    raw: bytes
    source: str

    def symbols(self, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
        """(symbol ids, character index of each symbol) of this text under `vocab`."""
        if vocab.encoding == "byte":
            return np.frombuffer(self.raw, dtype=np.uint8).astype(np.int64), char_of_row_for_bytes(self.raw)
        return vocab.encode(self.chars), np.arange(len(self.chars), dtype=np.int64)


def text_of(ref: ckpt.Checkpoint, text=None, part: str = "val") -> Text:
    """The text to compare on: `ref`'s own split `part` by default, a file (Path), a str/bytes or a Text."""
    if isinstance(text, Text):
        return text
    if text is None:
        data = ref.meta.get("data") or {}
        path, raw = corpus.read_training_corpus(data)
        a, b = corpus.Split.from_json(data["split"]).range(part)
        if ref.vocab.encoding == "byte":
            piece = raw[a:b]
            return Text(decode_bytes(piece), piece, f"{part} split of {data['corpus']}")
        chars = decode_utf8(raw, str(path))[a:b]
        return Text(chars, chars.encode("utf-8"), f"{part} split of {data['corpus']}")
    if isinstance(text, Path):
        if not text.is_file():
            raise ProbeError(f"text: no such text file: {text}")
        raw = corpus.read_bytes(text)
        source = str(text)
    elif isinstance(text, str):
        raw, source = text.encode("utf-8"), "inline text"
    elif isinstance(text, (bytes, bytearray)):
        raw, source = bytes(text), "inline bytes"
    else:
        raise ProbeError(f"text must be a str, bytes or a file path, not {type(text).__name__}")
    return Text(decode_bytes(raw), raw, source)


def training_ids(ck: ckpt.Checkpoint) -> np.ndarray:
    """The training split of a checkpoint's corpus, encoded with its vocabulary."""
    from probe.train.evaluate import split_ids
    return split_ids(ck.meta, ck.vocab, "train")


# --------------------------------------------------------------------------- per-character loss

def model_symbol_bits(model, ids: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Bits of every symbol given those before it, one exact pass (state carried); entry 0 is NaN."""
    import torch

    ids = np.asarray(ids, dtype=np.int64)
    out = np.full(len(ids), np.nan)
    if len(ids) < 2:
        return out
    x = torch.as_tensor(ids[:-1]).view(1, -1)
    y = torch.as_tensor(ids[1:])
    was = model.training
    model.eval()
    state = None
    try:
        with torch.no_grad():
            for s in range(0, len(ids) - 1, chunk):
                logits, state = model(x[:, s:s + chunk], state)
                lp = torch.log_softmax(logits[0].float(), dim=-1)
                yy = y[s:s + chunk]
                out[1 + s:1 + s + len(yy)] = (-lp.gather(1, yy.unsqueeze(1))[:, 0] / LN2).double().numpy()
    finally:
        model.train(was)
    return out


def char_bits(symbol_bits: np.ndarray, char_of: np.ndarray, n_chars: int) -> np.ndarray:
    """Per-character bits: the sum over each character's symbols; NaN for the first character."""
    b = np.asarray(symbol_bits, dtype=np.float64)
    ok = np.isfinite(b)
    out = np.bincount(char_of[ok], weights=b[ok], minlength=n_chars)[:n_chars]
    out[0] = np.nan
    return out


def side_bits(side: Side, text: Text, ref: ckpt.Checkpoint, *, cache=None) -> np.ndarray:
    """Per-character bits of one side on `text` (n-grams fitted on `ref`'s training split)."""
    ck = side.checkpoint if side.checkpoint is not None else ref
    ids, char_of = text.symbols(ck.vocab)
    if side.is_ngram:
        if len(ids) < side.order:
            raise ProbeError(f"the text holds {len(ids)} symbols, fewer than the n-gram order {side.order}")
        model = fit_cached(training_ids(ref), side.order, ref.vocab.size, cache=cache)
        bits = -model.log2_probs(ids)
        bits[0] = np.nan
    else:
        bits = model_symbol_bits(ck.model, ids)
    return char_bits(bits, char_of, len(text.chars))


def ngram_char_bits(order: int, text: Text, ref: ckpt.Checkpoint, *, cache=None) -> np.ndarray:
    """Per-character bits of an order-`order` n-gram fitted on `ref`'s training split (fit cached)."""
    return side_bits(Side(spec=f"ngram:{order}", order=order), text, ref, cache=cache)


# --------------------------------------------------------------------------- a recording as side A

def recording_text(rec) -> Text:
    """The recorded text as a Text (a byte recording: exactly the recorded bytes)."""
    raw = np.asarray(rec.array("ids")).astype(np.uint8).tobytes() if rec.by_bytes else rec.text.encode("utf-8")
    return Text(rec.text, raw, f"recording {rec.path.name}")


def recording_char_bits(rec) -> np.ndarray:
    """Per-character bits of the recorded model, from the recording's `loss_bits` (no model run).

    Row r's loss_bits is the loss of the symbol at row r + 1, so a symbol's bits are the previous row's;
    a character's bits are the sum over its symbols (NaN for the first character)."""
    if not rec.has("loss_bits"):
        raise ProbeError(f"recording {rec.path} has no loss_bits: record it again to compare its model")
    loss = np.asarray(rec.loss_bits, dtype=np.float64)
    symbol = np.concatenate([[np.nan], loss[:-1]])
    return char_bits(symbol, np.asarray(rec.char_of_row, dtype=np.int64), len(rec.text))


def compare_recording(rec, baseline, *, checkpoint=None, concepts=None, n_boot: int = 1000, seed: int = 0,
                      cache=None) -> Comparison:
    """The recorded model (A, its loss read from the recording) against `baseline` (B: `ngram:N`, fitted on
    the training split of the recording's checkpoint, or another checkpoint run over the recorded text)."""
    sb = parse_side(baseline, "baseline")
    ck = recording_checkpoint(rec, checkpoint, same_weights=False)
    cs = resolve_concepts(concepts)
    t = recording_text(rec)
    if len(t.chars) < 2:
        raise ProbeError(f"the recorded text holds {len(t.chars)} character(s): nothing to compare")
    sa = Side(spec=f"recording {rec.path.name}", checkpoint=ck)
    note = _vocab_note(sa, sb, ck, t)
    a_bits = recording_char_bits(rec)
    b_bits = side_bits(sb, t, ck, cache=cache)
    return _with_tables(Comparison(a=sa.spec, b=sb.spec, text=t, a_bits=a_bits, b_bits=b_bits, note=note),
                        cs, n_boot, seed)


def _vocab_note(a: Side, b: Side, ref: ckpt.Checkpoint, text: Text) -> str:
    va = (a.checkpoint or ref).vocab
    vb = (b.checkpoint or ref).vocab
    if va == vb:
        return f"same vocabulary ({va.encoding}); compared per UTF-8 character"
    for side, v in ((a, va), (b, vb)):
        if v.encoding == "char":
            unk = v.unknown(text.chars)
            if unk:
                raise ProbeError(f"the models have different vocabularies and {side.spec} reads "
                                 f"{sum(unk.values()):,} characters of the text as <unk> (e.g. "
                                 f"{next(iter(unk))!r}): their losses there do not compare")
    return (f"different vocabularies ({va.encoding} vs {vb.encoding}): compared on a common unit, the UTF-8 "
            "character (a byte model's loss for a character is the sum over its bytes)")


# --------------------------------------------------------------------------- statistics

def block_bootstrap(delta: np.ndarray, mask: np.ndarray, *, block: int = BLOCK, n_boot: int = 1000,
                    seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Confidence interval of the mean of delta[mask], resampling contiguous blocks of `block` characters."""
    ok = mask & np.isfinite(delta)
    nb = max(1, -(-len(delta) // block))
    idx = np.minimum(np.arange(len(delta)) // block, nb - 1)
    sums = np.bincount(idx[ok], weights=delta[ok], minlength=nb)
    counts = np.bincount(idx[ok], minlength=nb).astype(np.float64)
    if counts.sum() == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, nb, size=(n_boot, nb))
    c = counts[pick].sum(1)
    means = sums[pick].sum(1)[c > 0] / c[c > 0]
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def concept_mask(concept: Concept, chars: str) -> np.ndarray:
    """Inside a concept: binary labels, or a positive bracket depth / indentation."""
    labels = concept.labels(chars)
    if concept.label_type == "continuous":
        raise ProbeError(f"concept {concept.name} is continuous: it has no inside and outside to compare")
    return labels > 0


def resolve_concepts(concepts) -> list[Concept]:
    """Concept objects from names (built-in), regexes (`re:` prefix not needed for a Concept) or Concepts."""
    if concepts is None:
        return [concepts_mod.BUILTIN[name] for name in DEFAULT_CONCEPTS]
    out = []
    for c in concepts:
        if isinstance(c, Concept):
            out.append(c)
        elif isinstance(c, str):
            out.append(concepts_mod.builtin(c))
        else:
            raise ProbeError(f"concepts: each must be a built-in name or a Concept, not {type(c).__name__}")
    return out


# --------------------------------------------------------------------------- long-range pairs

@dataclass
class Pair:
    kind: str
    opener: int  # character index of the opener's first character
    closer: int  # first character of the closer
    length: int  # characters of the closer that are scored together


_XML_OPEN = re.compile(r"<([A-Za-z][\w:.-]*)[^<>\n]*(?<!/)>|&lt;([A-Za-z][\w:.-]*)(?:(?!&gt;|&lt;)[^\n])*?(?<!/)&gt;")
_XML_CLOSE = re.compile(r"</([A-Za-z][\w:.-]*)>|&lt;/([A-Za-z][\w:.-]*)&gt;")
_WIKI_LINK = re.compile(r"\[\[[^\[\]\n]*\]\]")
_QUOTE = re.compile(r"\"[^\"\n]*\"|&quot;(?:(?!&quot;)[^\n])*&quot;")


def matched_pairs(chars: str) -> list[Pair]:
    """Openers and their closers: brackets (), [], {} (nested, one stack each); double quotes on one line
    (`"` or `&quot;`); XML tags <name ...> ... </name> (also escaped &lt; &gt;), the closer being the name and
    `>` after `</`; wiki links [[ ]], the closer being `]]`."""
    pairs: list[Pair] = []
    stacks = {")": [], "]": [], "}": []}
    opens = {"(": ")", "[": "]", "{": "}"}
    for i, ch in enumerate(chars):
        if ch in opens:
            stacks[opens[ch]].append(i)
        elif ch in stacks and stacks[ch]:
            pairs.append(Pair(f"bracket {chars[stacks[ch][-1]]}{ch}", stacks[ch].pop(), i, 1))
    for m in _QUOTE.finditer(chars):
        q = 1 if m.group(0).startswith('"') else len("&quot;")
        pairs.append(Pair("quote", m.start(), m.end() - q, q))
    for m in _WIKI_LINK.finditer(chars):
        pairs.append(Pair("wiki link [[ ]]", m.start(), m.end() - 2, 2))
    open_stack: dict[str, list[int]] = {}
    events = [(m.start(), 0, m) for m in _XML_OPEN.finditer(chars)] + \
             [(m.start(), 1, m) for m in _XML_CLOSE.finditer(chars)]
    for pos, is_close, m in sorted(events, key=lambda e: (e[0], e[1])):
        name = m.group(1) or m.group(2)
        if not is_close:
            open_stack.setdefault(name, []).append(pos)
        elif open_stack.get(name):
            slash = m.start() + (2 if m.group(0).startswith("<") else len("&lt;/"))
            pairs.append(Pair("xml tag", open_stack[name].pop(), slash, m.end() - slash))
    return pairs


def _bin_labels() -> list[str]:
    edges = list(DISTANCE_BINS)
    return [f"{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:])] + [f"{edges[-1]}+"]


def long_range(pairs: list[Pair], a_bits: np.ndarray, b_bits: np.ndarray, names=("A", "B")) -> pd.DataFrame:
    """Probability each side gives the closer (all its characters together), by kind and distance bin."""
    cols = ["kind", "distance", "n", f"p_{names[0]}", f"p_{names[1]}", f"bits_{names[0]}", f"bits_{names[1]}",
            "delta_bits"]
    rows = []
    if pairs:
        kind = np.array([p.kind for p in pairs])
        dist = np.array([p.closer - p.opener for p in pairs])
        ba = np.array([np.sum(a_bits[p.closer:p.closer + p.length]) for p in pairs])
        bb = np.array([np.sum(b_bits[p.closer:p.closer + p.length]) for p in pairs])
        ok = np.isfinite(ba) & np.isfinite(bb)
        which = np.searchsorted(DISTANCE_BINS, dist, side="right") - 1
        labels = _bin_labels()
        for group in sorted(set(kind)) + ["all"]:
            sel = ok & ((kind == group) if group != "all" else True)
            for j, label in enumerate(labels):
                s = sel & (which == j)
                if s.any():
                    rows.append([group, label, int(s.sum()), float(np.mean(2.0 ** -ba[s])),
                                 float(np.mean(2.0 ** -bb[s])), float(ba[s].mean()), float(bb[s].mean()),
                                 float((bb[s] - ba[s]).mean())])
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- the comparison

@dataclass
class Comparison:
    """Per-character bits of two sides on one text, and the tables built from them."""

    a: str
    b: str
    text: Text
    a_bits: np.ndarray  # per character; NaN for the first
    b_bits: np.ndarray
    note: str
    summary: pd.DataFrame = field(default=None)
    by_char: pd.DataFrame = field(default=None)
    contexts: pd.DataFrame = field(default=None)
    long_range: pd.DataFrame = field(default=None)

    @property
    def delta(self) -> np.ndarray:
        """bits(B) - bits(A) per character: > 0 where A wins."""
        return self.b_bits - self.a_bits

    def best_window(self, width: int = 1500) -> tuple[int, int]:
        """The `width`-character window where A's total advantage is largest (for the heatmap)."""
        d = np.nan_to_num(self.delta)
        n = len(d)
        if n <= width:
            return 0, n
        c = np.concatenate([[0.0], np.cumsum(d)])
        start = int(np.argmax(c[width:] - c[:-width]))
        return start, start + width

    def to_dict(self) -> dict:
        valid = np.isfinite(self.delta)
        return {"a": self.a, "b": self.b, "text": self.text.source, "n_chars": int(valid.sum()), "note": self.note,
                "delta": "bits(B) - bits(A) per character: > 0 where A wins",
                "summary": self.summary.to_dict(orient="records"),
                "by_char": self.by_char.to_dict(orient="records"),
                "contexts": self.contexts.to_dict(orient="records"),
                "long_range": self.long_range.to_dict(orient="records")}


def _summary(cmp: Comparison, concepts: list[Concept], n_boot: int, seed: int) -> pd.DataFrame:
    d = cmp.delta
    valid = np.isfinite(d)
    regions = [("all", "", valid)]
    for c in concepts:  # a concept absent from the text (or covering all of it) gives no rows
        m = concept_mask(c, cmp.text.chars)
        if (valid & m).any() and (valid & ~m).any():
            regions += [(c.name, "inside", valid & m), (c.name, "outside", valid & ~m)]
    rows = []
    for name, where, m in regions:
        n = int(m.sum())
        lo, hi = block_bootstrap(d, m, n_boot=n_boot, seed=seed)
        rows.append([name, where, n, float(cmp.a_bits[m].mean()), float(cmp.b_bits[m].mean()),
                     float(d[m].mean()), lo, hi])
    return pd.DataFrame(rows, columns=["region", "where", "n_chars", "bpc_a", "bpc_b", "delta_bpc",
                                       "ci_low", "ci_high"])


def _by_char(cmp: Comparison) -> pd.DataFrame:
    d = cmp.delta
    ok = np.flatnonzero(np.isfinite(d))
    cps = np.frombuffer(cmp.text.chars.encode("utf-32-le"), dtype=np.uint32)[ok]
    uniq, inv, counts = np.unique(cps, return_inverse=True, return_counts=True)
    total = np.bincount(inv, weights=d[ok])
    df = pd.DataFrame({"char": [chr(int(u)) for u in uniq], "n": counts, "delta_bits_total": total,
                       "delta_bits_mean": total / counts,
                       "bits_a_mean": np.bincount(inv, weights=cmp.a_bits[ok]) / counts,
                       "bits_b_mean": np.bincount(inv, weights=cmp.b_bits[ok]) / counts})
    return df.sort_values("delta_bits_total", ascending=False, ignore_index=True)


def _contexts(cmp: Comparison, k: int = CONTEXT_CHARS) -> pd.DataFrame:
    """Total Δ per (k characters before, character), both ends of the ranking."""
    d = cmp.delta
    chars = cmp.text.chars
    ok = np.flatnonzero(np.isfinite(d))
    ok = ok[ok >= k]
    keys = pd.Series([chars[i - k:i + 1] for i in ok])
    df = pd.DataFrame({"key": keys, "d": d[ok]}).groupby("key", sort=False)["d"].agg(["count", "sum", "mean"])
    df = df.reset_index().rename(columns={"count": "n", "sum": "delta_bits_total", "mean": "delta_bits_mean"})
    df["context"] = df.key.str[:-1]
    df["char"] = df.key.str[-1]
    df = df[["context", "char", "n", "delta_bits_total", "delta_bits_mean"]]
    df = df.sort_values("delta_bits_total", ascending=False, ignore_index=True)
    return pd.concat([df.head(50), df.tail(50)]).drop_duplicates().reset_index(drop=True)


def compare(a, b, text=None, *, part: str = "val", concepts=None, n_boot: int = 1000, seed: int = 0,
            cache=None) -> Comparison:
    """Compare two sides (`ngram:N` or a checkpoint, path or loaded) on one text.

    text: None (the split `part` of the first checkpoint's corpus), a file (Path), or a str/bytes.
    concepts: built-in names or Concept objects for inside/outside rows (default: `DEFAULT_CONCEPTS`).
    Returns a Comparison whose tables (`summary`, `by_char`, `contexts`, `long_range`) are DataFrames.
    """
    sa, sb = parse_side(a, "a"), parse_side(b, "b")
    if sa.is_ngram and sb.is_ngram:
        raise ProbeError("a and b are both n-grams: at least one must be a checkpoint (its training split "
                         "fits the n-gram, its vocabulary reads the text)")
    if part not in ("train", "val", "test"):
        raise ParamError("part", f"must be train, val or test, not {part!r}")
    ref = sa.checkpoint if sa.checkpoint is not None else sb.checkpoint
    cs = resolve_concepts(concepts)
    t = text_of(ref, Path(text) if isinstance(text, Path) else text, part)
    if len(t.chars) < 2:
        raise ProbeError(f"the text ({t.source}) holds {len(t.chars)} character(s): nothing to predict")
    note = _vocab_note(sa, sb, ref, t)
    a_bits = side_bits(sa, t, ref, cache=cache)
    b_bits = side_bits(sb, t, ref, cache=cache)
    cmp = Comparison(a=sa.spec, b=sb.spec, text=t, a_bits=a_bits, b_bits=b_bits, note=note)
    return _with_tables(cmp, cs, n_boot, seed)


def _with_tables(cmp: Comparison, concepts: list[Concept], n_boot: int, seed: int) -> Comparison:
    """Fill the comparison's tables from its per-character bits."""
    cmp.summary = _summary(cmp, concepts, n_boot, seed)
    cmp.by_char = _by_char(cmp)
    cmp.contexts = _contexts(cmp)
    cmp.long_range = long_range(matched_pairs(cmp.text.chars), cmp.a_bits, cmp.b_bits, names=("a", "b"))
    return cmp
