"""Vocabularies: `char` (Unicode code points, rare ones mapped to <unk>) and `byte` (256 symbols)."""
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
    encoding "char": id 0 is <unk>; the others are the characters seen at least
    `min_count` times in the training text. (JSON keeps the key "kind".)
    """

    encoding: str
    symbols: list[str] = field(default_factory=list)  # char: symbols[0] is UNK
    _lookup: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """The encoding under its JSON name (kept for callers written before `encoding`)."""
        return self.encoding

    # construction -------------------------------------------------------
    @classmethod
    def byte(cls) -> "Vocab":
        return cls(encoding="byte", symbols=[])

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
        return {"kind": self.encoding, "symbols": self.symbols if self.encoding == "char" else None}

    @classmethod
    def from_json(cls, d: dict) -> "Vocab":
        if d.get("kind") == "byte":
            return cls.byte()
        if d.get("kind") == "char" and isinstance(d.get("symbols"), list):
            return cls(encoding="char", symbols=list(d["symbols"]))
        raise ProbeError(f"unknown vocabulary description: {str(d)[:80]}")

    # encoding -------------------------------------------------------------
    def _table(self) -> np.ndarray:
        if self._lookup is None:
            top = max((ord(s) for s in self.symbols), default=0) + 1
            table = np.zeros(top, dtype=np.int64)
            for i, s in enumerate(self.symbols):
                if i:
                    table[ord(s)] = i
            self._lookup = table
        return self._lookup

    def encode(self, text: str | bytes) -> np.ndarray:
        """Ids of `text` (int64). Characters outside a char vocabulary become <unk> (id 0)."""
        if self.encoding == "byte":
            data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
            return np.frombuffer(data, dtype=np.uint8).astype(np.int64)
        if isinstance(text, bytes):
            text = decode_utf8(text)
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        table = self._table()
        ids = np.zeros(len(cps), dtype=np.int64)
        inside = cps < len(table)
        ids[inside] = table[cps[inside]]
        return ids

    def unknown(self, text: str) -> Counter:
        """Characters of `text` that this vocabulary cannot represent, with counts."""
        if self.encoding == "byte":
            return Counter()
        known = set(self.symbols[1:])
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
