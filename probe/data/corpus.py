"""Loading text files (plain, .bz2, .gz, .xz), the bundled corpora, and contiguous splits."""
from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
from dataclasses import dataclass
from pathlib import Path

from probe import resources
from probe.errors import ProbeError

BUNDLED_FILES = {"wiki": "enwiki-sample.xml.bz2", "shakespeare": "tinyshakespeare.txt.bz2"}
# name -> the file inside this installation (probe.resources: package data, or a checkout's data/)
BUNDLED = {name: (resources.corpora_dir() or Path(resources.CORPUS_PREFIX)) / file
           for name, file in BUNDLED_FILES.items()}
# Why these defaults: Tiny Shakespeare is pure ASCII (65 symbols), so `char` is
# exact and readable. The Wikipedia sample has 866 distinct characters, 613 of
# them seen fewer than 10 times: `byte` keeps every one of them (no <unk>), so
# its bits per byte compare honestly with gzip/bz2/xz.
DEFAULT_VOCAB = {"wiki": "byte", "shakespeare": "char"}


def resolve(path_or_name: str) -> Path:
    """A bundled corpus name (`wiki`, `shakespeare`) or a path to an existing file."""
    if path_or_name in BUNDLED_FILES:
        return resources.corpus_path(BUNDLED_FILES[path_or_name])
    p = Path(path_or_name)
    if not p.exists():
        raise ProbeError(f"no such file: {path_or_name} (bundled corpora: {', '.join(BUNDLED)})")
    if p.is_dir():
        raise ProbeError(f"{path_or_name} is a folder, not a text file")
    return p


def read_bytes(path: Path) -> bytes:
    """The raw bytes of a file, decompressing .bz2/.gz/.xz."""
    opener = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise ProbeError(f"cannot read {path}: {e}") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def portable_path(path: Path) -> str:
    """`data/<file>` for a bundled corpus (found again in any installation), else the absolute path."""
    path = Path(path).resolve()
    folder = resources.corpora_dir()
    if folder is not None and path.parent == folder.resolve():
        return resources.CORPUS_PREFIX + path.name
    return str(path)


def locate(stored: str) -> Path:
    """Inverse of `portable_path`: `data/<file>` is the bundled corpus of this installation."""
    p = Path(stored)
    if p.is_absolute():
        return p
    if stored.startswith(resources.CORPUS_PREFIX) and "/" not in stored[len(resources.CORPUS_PREFIX):]:
        folder = resources.corpora_dir()
        if folder is not None:
            return folder / stored[len(resources.CORPUS_PREFIX):]
    root = resources.source_root()  # another path stored relative to a checkout (older checkpoints)
    return root / p if root is not None else p


def read_training_corpus(data: dict) -> tuple[Path, bytes]:
    """The corpus a checkpoint was trained on (its meta['data']), read and checked against its sha256."""
    if not isinstance(data, dict) or "corpus" not in data or "split" not in data:
        raise ProbeError("the checkpoint names no training corpus (meta['data'] lacks corpus or split)")
    path = locate(data["corpus"])
    if not path.exists():
        raise ProbeError(f"the checkpoint's corpus {data['corpus']} is not on this machine")
    raw = read_bytes(path)
    if data.get("sha256") and sha256(raw) != data["sha256"]:
        raise ProbeError(f"corpus {data['corpus']} changed since the model was trained (sha256 differs)")
    return path, raw


@dataclass(frozen=True)
class Split:
    """Contiguous train/val/test boundaries in symbol positions: [0,a) [a,b) [b,n)."""

    n: int
    a: int
    b: int

    @classmethod
    def make(cls, n: int, val_frac: float = 0.05, test_frac: float = 0.05) -> "Split":
        if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
            raise ProbeError(f"bad split fractions: val {val_frac}, test {test_frac}")
        b = n - int(round(n * test_frac))
        a = b - int(round(n * val_frac))
        return cls(n=n, a=a, b=b)

    def range(self, part: str) -> tuple[int, int]:
        return {"train": (0, self.a), "val": (self.a, self.b), "test": (self.b, self.n)}[part]

    def to_json(self) -> dict:
        return {"n": self.n, "train": [0, self.a], "val": [self.a, self.b], "test": [self.b, self.n]}

    @classmethod
    def from_json(cls, d: dict) -> "Split":
        return cls(n=d["n"], a=d["val"][0], b=d["val"][1])
