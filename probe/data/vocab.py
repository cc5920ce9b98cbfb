"""Vocabularies: `char` (Unicode code points, rare ones mapped to <unk>) and `byte` (256 symbols).

A `char` vocabulary made by probe has <unk> at id 0 and the other characters sorted. One brought with an
imported model (`Vocab.from_symbols`) keeps its own ids and order, and may have no <unk> at all (`unk` None):
then a character outside it cannot be encoded and is refused.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from probe.checks import ParamError
from probe.errors import ProbeError

UNK = "\ufffd"  # shown for the unknown symbol of a char vocabulary


@dataclass
class Vocab:
    """Maps text to integer ids and back.

    encoding "byte": ids are the UTF-8 bytes of the text (any file works).
    encoding "char": id `unk` (0 unless the vocabulary came with an imported model) is <unk>; the others
    are the characters seen at least `min_count` times in the training text. `unk` None: no <unk> id.
    (JSON keeps the key "kind"; "unk" is written only when it is not 0.)
    """

    encoding: str
    symbols: list[str] = field(default_factory=list)  # char: symbols[unk] is UNK
    _lookup: np.ndarray | None = field(default=None, repr=False, compare=False)
    unk: int | None = 0  # char: the id of <unk>, or None (an imported vocabulary without one); byte: None

    def __post_init__(self) -> None:
        if self.encoding == "byte":
            self.unk = None

    @property
    def kind(self) -> str:
        """The encoding under its JSON name (kept for callers written before `encoding`)."""
        return self.encoding

    # construction -------------------------------------------------------
    @classmethod
    def byte(cls) -> "Vocab":
        return cls(encoding="byte", symbols=[])

    @classmethod
    def from_symbols(cls, symbols, unk: int | None = None) -> "Vocab":
        """A char vocabulary with these ids (symbols[i] has id i), e.g. an imported model's; `unk`: the id
        unknown characters become, or None to refuse them. ProbeError on a symbol that is not one
        character or that repeats."""
        symbols = list(symbols)
        if not symbols:
            raise ProbeError("the vocabulary is empty")
        seen: dict[str, int] = {}
        for i, s in enumerate(symbols):
            if not isinstance(s, str) or len(s) != 1:
                raise ProbeError(f"vocabulary symbol {s!r} (id {i}) is not one character: probe models read "
                                 "characters (or bytes: use the vocabulary `bytes`)")
            if s in seen:
                raise ProbeError(f"vocabulary symbol {s!r} has two ids ({seen[s]} and {i})")
            seen[s] = i
        if unk is not None and not (isinstance(unk, int) and not isinstance(unk, bool) and 0 <= unk < len(symbols)):
            raise ProbeError(f"vocabulary: unk is {unk!r}, not an id below {len(symbols)}")
        return cls(encoding="char", symbols=symbols, unk=unk)

    @classmethod
    def from_text(cls, text: str, min_count: int = 1) -> "Vocab":
        counts = Counter(text)
        kept = sorted(ch for ch, n in counts.items() if n >= min_count and ch != UNK)
        return cls(encoding="char", symbols=[UNK] + kept)

    @property
    def size(self) -> int:
        return 256 if self.encoding == "byte" else len(self.symbols)

    # serialisation --------------------------------------------------------
    def to_json(self) -> dict:
        d = {"kind": self.encoding, "symbols": self.symbols if self.encoding == "char" else None}
        if self.encoding == "char" and self.unk != 0:
            d["unk"] = self.unk
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Vocab":
        if d.get("kind") == "byte":
            return cls.byte()
        if d.get("kind") == "char" and isinstance(d.get("symbols"), list):
            unk = d.get("unk", 0)  # written before imports: always 0
            if unk is not None and not (isinstance(unk, int) and not isinstance(unk, bool)
                                        and 0 <= unk < len(d["symbols"])):
                raise ProbeError(f"unknown vocabulary description: unk is {str(unk)[:20]}, not an id of its symbols")
            return cls(encoding="char", symbols=list(d["symbols"]), unk=unk)
        raise ProbeError(f"unknown vocabulary description: {str(d)[:80]}")

    # encoding -------------------------------------------------------------
    def _table(self) -> np.ndarray:
        """Code point -> id; code points outside the vocabulary hold `unk` (-1 when there is none)."""
        if self._lookup is None:
            top = max((ord(s) for s in self.symbols), default=0) + 1
            table = np.full(top, -1 if self.unk is None else self.unk, dtype=np.int64)
            for i, s in enumerate(self.symbols):
                if i != self.unk:
                    table[ord(s)] = i
            self._lookup = table
        return self._lookup

    def encode(self, text: str | bytes) -> np.ndarray:
        """Ids of `text` (int64). Characters outside a char vocabulary become <unk> (id `unk`);
        without an <unk> id they are refused (ProbeError naming the first)."""
        if self.encoding == "byte":
            data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
            return np.frombuffer(data, dtype=np.uint8).astype(np.int64)
        if isinstance(text, bytes):
            text = decode_utf8(text)
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        table = self._table()
        ids = np.full(len(cps), -1 if self.unk is None else self.unk, dtype=np.int64)
        inside = cps < len(table)
        ids[inside] = table[cps[inside]]
        if self.unk is None and len(ids) and ids.min() < 0:
            bad = np.flatnonzero(ids < 0)
            ch = chr(int(cps[bad[0]]))
            raise ProbeError(f"the text has {len(bad):,} character(s) outside the model's vocabulary, which has no "
                             f"<unk> symbol (first {ch!r}, U+{ord(ch):04X}, at character {int(bad[0]):,})")
        return ids

    def unknown(self, text: str) -> Counter:
        """Characters of `text` that this vocabulary cannot represent, with counts."""
        if self.encoding == "byte":
            return Counter()
        known = set(s for i, s in enumerate(self.symbols) if i != self.unk)
        return Counter(ch for ch in text if ch not in known)

    def symbol(self, i: int) -> str:
        """Printable form of one id (bytes >= 128 as \\xNN)."""
        if self.encoding == "byte":
            return chr(i) if i < 128 else f"\\x{i:02x}"
        return self.symbols[i]

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        if self.encoding == "byte":
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join(self.symbols[i] for i in ids)

    def decode_bytes(self, ids) -> bytes:
        if self.encoding == "byte":
            return bytes(int(i) for i in ids)
        return self.decode(ids).encode("utf-8")


def decode_utf8(data: bytes, name: str = "text") -> str:
    """Strict UTF-8 decode with a one-line error that says where it failed."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParamError(
            "vocab", f"{name} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "use {vocab=byte} for binary data", advice=True) from None
