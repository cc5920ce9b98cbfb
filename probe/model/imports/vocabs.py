"""The vocabulary an imported model was trained with, in any of the shapes people keep it.

A JSON list of symbols (`["\\n", " ", "!", ...]`: symbol i has id i), a JSON string (`"\\n !..."`), a JSON
object either way round (`{"a": 0, ...}` or `{"0": "a", ...}`, also nested under `itos`/`stoi`/`chars`...),
or the word `bytes` (ids are UTF-8 bytes, 256 of them). The ids are kept as they are: they index the
embedding and the read-out rows. Every id 0..N-1 needs a symbol of one character; a symbol U+FFFD is taken
as the unknown symbol, otherwise the vocabulary has none and characters outside it are refused.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from probe.data.vocab import UNK, Vocab
from probe.errors import ProbeError

BYTES_WORDS = ("bytes", "byte")
WRAPPERS = ("itos", "ix_to_char", "idx2char", "chars", "symbols", "vocab", "stoi", "char_to_ix", "char2idx")


def read_vocab(spec) -> Vocab:
    """A Vocab from `spec`: a Vocab, the word "bytes", a list of symbols, a string of symbols, a dict, or the
    path (pathlib.Path, or a str naming an existing .json file) of a JSON file holding one of those."""
    if isinstance(spec, Vocab):
        return spec
    if isinstance(spec, str) and spec.strip().lower() in BYTES_WORDS:
        return Vocab.byte()
    if isinstance(spec, Path) or (isinstance(spec, str) and spec.endswith(".json")):
        return _read_file(Path(spec))
    return vocab_from_json(spec, "the vocabulary")


def _read_file(p: Path) -> Vocab:
    if not p.is_file():
        raise ProbeError(f"no such vocabulary file: {p}")
    raw = p.read_bytes()
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProbeError(f"vocabulary {p} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ProbeError(f"vocabulary {p} is not JSON ({e.msg} at line {e.lineno}); give a JSON list of "
                         "symbols, a string, an object, or the word bytes") from None
    return vocab_from_json(obj, f"vocabulary {p}")


def vocab_from_json(obj, where: str = "the vocabulary") -> Vocab:
    """A Vocab from a parsed JSON value (list, string, object, or "bytes")."""
    if isinstance(obj, str):
        if obj.strip().lower() in BYTES_WORDS:
            return Vocab.byte()
        return _from_list(list(obj), where)
    if isinstance(obj, list):
        return _from_list(obj, where)
    if isinstance(obj, dict):
        return _from_dict(obj, where)
    raise ProbeError(f"{where} is {type(obj).__name__}, not a list of symbols, a string, an object or bytes")


def _from_list(symbols: list, where: str) -> Vocab:
    unk = symbols.index(UNK) if UNK in symbols else None
    try:
        return Vocab.from_symbols(symbols, unk=unk)
    except ProbeError as e:
        raise ProbeError(f"{where}: {e}") from None


def _from_dict(d: dict, where: str) -> Vocab:
    if not d:
        raise ProbeError(f"{where} is empty")
    keys = list(d)
    if any(len(k) != 1 and not re.fullmatch(r"\d+", k) for k in keys):  # not a symbol map: a wrapper object
        for name in WRAPPERS:
            if name in d:
                return vocab_from_json(d[name], f"{where} ({name})")
        raise ProbeError(f"{where}: key {keys[0] if len(keys[0]) != 1 else next(k for k in keys if len(k) != 1)!r} "
                         f"is not a symbol (one character) or an id; the vocabulary may sit under one of "
                         f"{', '.join(WRAPPERS)}")
    values = list(d.values())
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        by_id = {}
        for sym, i in d.items():
            if i in by_id:
                raise ProbeError(f"{where}: id {i} has two symbols ({by_id[i]!r} and {sym!r})")
            by_id[i] = sym
    elif all(isinstance(v, str) for v in values) and all(re.fullmatch(r"\d+", k) for k in keys):
        by_id = {int(k): v for k, v in d.items()}
    else:
        raise ProbeError(f"{where}: an object must map symbols to ids ({{\"a\": 0}}) or ids to symbols "
                         f"({{\"0\": \"a\"}})")
    n = len(by_id)
    missing = next((i for i in range(n) if i not in by_id), None)
    if missing is not None:
        raise ProbeError(f"{where}: no symbol has id {missing} (ids must run from 0 to {n - 1}; the largest is "
                         f"{max(by_id)})")
    return _from_list([by_id[i] for i in range(n)], where)
