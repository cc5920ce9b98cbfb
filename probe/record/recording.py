"""The recording format: a folder of memory-mappable .npy arrays plus meta.json (written last).

Layout of a recording folder:

    meta.json            format, version, checkpoint identity, text hash, vocabulary, arrays, shapes
    text.txt             the recorded text (UTF-8)
    ids.npy              (rows,) input symbol id at every row
    char_of_row.npy      (rows,) character index of every row (byte models only; else rows are characters)
    L{l}.h.npy           (rows, H) hidden state of layer l after reading the row's symbol
    L{l}.c.npy           (rows, H) LSTM cell state (float32 by default: long-memory units grow past float16)
    L{l}.gates.{g}.npy   (rows, H) gate activations (LSTM i f g o; GRU r z n), when recorded
    topk_ids.npy         (rows, k) the k most likely next symbols after the row
    topk_probs.npy       (rows, k) their probabilities
    loss_bits.npy        (rows,) -log2 p(next symbol); NaN on the last row (no next symbol)

A unit is named `L{layer}.{kind}.{index}` everywhere: `L1.c.123`, `L0.f.12`, `L2.h.7` (probe.names).
Row r holds the state after reading symbol r; its top-k predict symbol r+1.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from probe.data.vocab import Vocab
from probe.checks import ParamError
from probe.errors import ProbeError
from probe.files import Owner, clean_leftovers, decimal_bytes, free_bytes, temp_name
from probe.record.validate import check_recording, check_text
from probe.names import Unit, array_name, kinds, parse_unit  # noqa: F401 (Unit, parse_unit: re-exported)

FORMAT = "probe-recording"
VERSION = 1
PARTIAL = "partial"  # `.NAME.partial-<pid>-<start>-<host>`: a recording being written (probe.files.temp_name)
REPLACED = "replaced"  # `.NAME.replaced-…`: the recording it replaces, for the moment between two renames


# --------------------------------------------------------------------------- text <-> rows

def char_of_row_for_bytes(data: bytes) -> np.ndarray:
    """For a byte-level text: index of the character that each byte belongs to.

    Characters are those of `data.decode('utf-8', 'replace')` with each invalid
    byte counted as one character (see `decode_bytes`).
    """
    b = np.frombuffer(data, dtype=np.uint8)
    try:
        data.decode("utf-8")
        starts = (b & 0xC0) != 0x80
        return (np.cumsum(starts) - 1).astype(np.int64)
    except UnicodeDecodeError:
        out = np.empty(len(b), dtype=np.int64)
        i = ci = 0
        while i < len(data):
            n = _utf8_len(data, i)
            out[i:i + n] = ci
            i += n
            ci += 1
        return out


def _utf8_len(data: bytes, i: int) -> int:
    for n in (1, 2, 3, 4):
        try:
            data[i:i + n].decode("utf-8")
            return n
        except UnicodeDecodeError:
            continue
    return 1


def decode_bytes(data: bytes) -> str:
    """UTF-8 decode where each invalid byte becomes one U+FFFD (keeps `char_of_row_for_bytes` aligned)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        out, i = [], 0
        while i < len(data):
            n = _utf8_len(data, i)
            chunk = data[i:i + n]
            try:
                out.append(chunk.decode("utf-8"))
            except UnicodeDecodeError:
                out.append("\ufffd")
            i += n
        return "".join(out)


# --------------------------------------------------------------------------- writing

class NpyWriter:
    """Writes a .npy file of known final shape chunk by chunk with ordinary writes.

    (Not a writable memmap: a full disk then raises OSError here instead of SIGBUS.)
    """

    def __init__(self, path: Path, shape: tuple, dtype):
        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self.rows_written = 0
        self.f = open(self.path, "wb")
        np.lib.format.write_array_header_1_0(
            self.f, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape})

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.shape[1:] != self.shape[1:]:
            raise ValueError(f"{self.path.name}: chunk shape {chunk.shape} does not fit {self.shape}")
        self.f.write(memoryview(chunk.reshape(-1)).cast("B"))  # the array's own buffer, no copy
        self.rows_written += chunk.shape[0]

    def close(self) -> None:
        self.f.close()
        if self.rows_written != self.shape[0]:
            raise ValueError(f"{self.path.name}: wrote {self.rows_written} rows of {self.shape[0]}")


def npy_bytes(shape: tuple, dtype) -> int:
    """The size of the .npy file `NpyWriter` writes for this shape and dtype: its header and the data."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)})
    return head.tell() + math.prod(shape) * np.dtype(dtype).itemsize


META_ROOM = 1 << 20  # kept free beyond the files for meta.json (written last; a few KB)


@dataclass(frozen=True)
class DiskPlan:
    """What a recording will write before it starts: the bytes of each file, and the space there is."""

    out: Path
    rows: int
    files: dict[str, int]  # file name -> bytes (meta.json aside: a few KB)
    free: int  # bytes free for this user on the disk that will hold `out`
    disk: Path  # the existing folder `free` was measured at
    cleaned: tuple[str, ...] = ()  # hidden folders of recordings killed part-way, deleted before (probe.files)

    @classmethod
    def at(cls, out: str | Path, rows: int, files: dict[str, int], cleaned=None) -> "DiskPlan":
        free, disk = free_bytes(Path(out).parent)
        return cls(Path(out), int(rows), dict(files), free, disk, tuple(cleaned or ()))

    @property
    def total(self) -> int:
        """Bytes of every file (meta.json aside)."""
        return sum(self.files.values())

    def describe(self) -> str:
        """'recording 304,487 rows: 6.6 GB in recordings/wiki-val'."""
        return f"recording {self.rows:,} rows: {decimal_bytes(self.total)} in {self.out}"

    def check(self) -> None:
        """ParamError (one line) when the disk lacks the space: nothing is written then."""
        if self.total + META_ROOM > self.free:
            raise ParamError("layers", f"not enough disk for the recording {self.out}: it takes "
                             f"{decimal_bytes(self.total)} ({self.total:,} bytes), {self.disk} has "
                             f"{decimal_bytes(self.free)} free; free some space, or record fewer arrays "
                             f"({{layers}}, {{kinds}}) or less text", advice=True, others=("kinds",))

    def to_dict(self) -> dict:
        return {"out": str(self.out), "rows": self.rows, "bytes": self.total, "files": dict(self.files),
                "free": self.free, "disk": str(self.disk), "cleaned": list(self.cleaned)}


def clean_partials(parent: str | Path) -> list[str]:
    """Delete the hidden folders that recordings killed part-way left in `parent` (`.NAME.partial-…`,
    `.NAME.replaced-…`), of processes that no longer run only; the names deleted."""
    return clean_leftovers(parent, None, (PARTIAL, REPLACED), keep_own=True)


class RecordingWriter:
    """Builds a recording in a temporary folder; `finish()` writes meta.json last and moves it in place.

    Until `finish()`, the destination does not exist (or still holds the old
    recording, with overwrite=True): an interrupted recording is never taken for
    a complete one. The temporary folder is `.NAME.partial-<pid>-<start>-<host>` beside it: after a
    kill, `clean_partials` (run by the next `record` into the same folder) knows whose it was.
    """

    def __init__(self, out: str | Path, overwrite: bool = False):
        self.out = Path(out)
        if self.out.exists() and not overwrite:
            raise ParamError("overwrite", f"{self.out} already exists; pass {{overwrite=True}} to replace it", advice=True)
        if self.out.exists() and not (self.out / "meta.json").exists() and any(self.out.iterdir()):
            raise ProbeError(f"{self.out} exists and is not a recording; refusing to overwrite it")
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ProbeError(f"cannot create {self.out.parent}: {e.strerror}") from None
        self.owner = Owner.current()
        self.tmp = self.out.with_name(temp_name(self.out.name, PARTIAL, self.owner))
        shutil.rmtree(self.tmp, ignore_errors=True)
        try:
            self.tmp.mkdir()
        except OSError as e:
            raise ProbeError(f"cannot write in {self.out.parent}: {e.strerror}") from None
        self.writers: dict[str, NpyWriter] = {}
        self.arrays: dict[str, dict] = {}

    def array(self, name: str, shape: tuple, dtype) -> NpyWriter:
        w = NpyWriter(self.tmp / f"{name}.npy", shape, dtype)
        self.writers[name] = w
        self.arrays[name] = {"file": f"{name}.npy", "shape": list(shape), "dtype": np.dtype(dtype).name}
        return w

    def save_array(self, name: str, data: np.ndarray) -> None:
        self.array(name, data.shape, data.dtype).write(data)

    def write_text(self, text: str) -> None:
        (self.tmp / "text.txt").write_text(text, encoding="utf-8", newline="")

    def finish(self, meta: dict) -> Path:
        for w in self.writers.values():
            w.close()
        meta = dict(meta, format=FORMAT, version=VERSION, arrays=self.arrays)
        with open(self.tmp / "meta.json", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        old = self.out.with_name(temp_name(self.out.name, REPLACED, self.owner))
        if self.out.exists():
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        shutil.rmtree(old, ignore_errors=True)
        return self.out

    def abort(self) -> None:
        for w in self.writers.values():
            try:
                w.f.close()
            except OSError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- reading

class Recording:
    """A recording opened lazily: arrays are memory-mapped on first use, never loaded whole.

    >>> rec = Recording.open("recordings/wiki-val")
    >>> rec.unit("L1.c.123", 0, 2000)          # float32 activations of one unit
    >>> rec.frame(["L1.c.123", "L2.h.7"], 0, 500)  # a DataFrame with the characters
    """

    def __init__(self, path: Path, meta: dict):
        self.path, self.meta = Path(path), meta
        self.reused = False  # set by probe.record.recorder.record(reuse=True) when it kept this recording as it was
        self._maps: dict[str, np.ndarray] = {}
        self._text: str | None = None
        self.vocab = Vocab.from_json(meta["vocab"])

    @classmethod
    def open(cls, path: str | Path) -> "Recording":
        p = Path(path)
        if not p.exists():
            raise ProbeError(f"no such recording: {path}")
        if not (p / "meta.json").exists():
            raise ProbeError(f"{path} is not a complete recording (no meta.json: interrupted, or not a recording)")
        try:
            meta = json.loads((p / "meta.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise ProbeError(f"{path}/meta.json is not valid JSON") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ProbeError(f"{path} is not a probe recording ({path}/meta.json is not a recording's meta)")
        if meta.get("version") != VERSION:
            raise ProbeError(f"recording {path} has format version {meta.get('version')}; this probe reads {VERSION}")
        check_recording(p, meta)  # headers and sizes of every array against meta.json, no data read
        return cls(p, meta)

    # what is inside ----------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return int(self.meta["n_rows"])

    def __len__(self) -> int:
        return self.n_rows

    @property
    def cell(self) -> str:
        """The recurrent cell: lstm, gru or rnn."""
        return self.meta["model_config"]["model"]

    @property
    def num_layers(self) -> int:
        return int(self.meta["model_config"]["num_layers"])

    @property
    def hidden_size(self) -> int:
        return int(self.meta["model_config"]["rnn_size"])

    @property
    def layers(self) -> list[int]:
        """Recorded layers, e.g. [0, 1, 2] ([0, 2] for a recording of some layers only)."""
        arrays = self.meta["arrays"]
        return [l for l in range(self.num_layers) if any(array_name(l, k) in arrays for k in kinds(self.cell))]

    @property
    def kinds(self) -> list[str]:
        """Recorded kinds, e.g. ['h', 'c', 'i', 'f', 'g', 'o'] (['h', 'c'] for a recording of some kinds only)."""
        arrays = self.meta["arrays"]
        return [k for k in kinds(self.cell) if any(array_name(l, k) in arrays for l in range(self.num_layers))]

    def arrays_for(self, kinds: list[str] | None = None) -> list[str]:
        """The array names of these kinds (default: all recorded) in every recorded layer."""
        kinds = self.kinds if kinds is None else kinds
        return [array_name(l, k) for l in self.layers for k in kinds]

    def has(self, name: str) -> bool:
        return name in self.meta["arrays"]

    # arrays --------------------------------------------------------------------
    def array(self, name: str) -> np.ndarray:
        """The memory-mapped array `name` (`L1.c`, `L0.gates.f`, `topk_ids`, `loss_bits`, `ids`)."""
        if name not in self._maps:
            if name not in self.meta["arrays"]:
                have = ", ".join(sorted(self.meta["arrays"]))
                raise ProbeError(f"recording {self.path} has no {name} (it has: {have})")
            self._maps[name] = np.load(self.path / self.meta["arrays"][name]["file"], mmap_mode="r")
        return self._maps[name]

    def check_unit(self, unit: str | Unit) -> Unit:
        u = parse_unit(unit) if isinstance(unit, str) else unit
        if not 0 <= u.layer < self.num_layers:
            raise ProbeError(f"no unit {u}: the model has layers L0..L{self.num_layers - 1}")
        if u.layer not in self.layers:
            raise ProbeError(f"no unit {u}: this recording holds layers {', '.join(map(str, self.layers))} only")
        if u.kind not in self.kinds:
            raise ProbeError(f"no unit {u}: this recording holds kinds {', '.join(self.kinds)}")
        if not 0 <= u.index < self.hidden_size:
            raise ProbeError(f"no unit {u}: units run from 0 to {self.hidden_size - 1}")
        if u.array not in self.meta["arrays"]:
            raise ProbeError(f"no unit {u}: this recording has no {u.array}")
        return u

    def _rows(self, start: int | None, stop: int | None) -> slice:
        start = 0 if start is None else start
        stop = self.n_rows if stop is None else stop
        if not (0 <= start < stop <= self.n_rows):
            raise ProbeError(f"row range {start}:{stop} is empty or outside 0:{self.n_rows}")
        return slice(start, stop)

    def unit(self, unit: str | Unit, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """float32 activations of one unit over rows [start, stop)."""
        u = self.check_unit(unit)
        return np.asarray(self.array(u.array)[self._rows(start, stop), u.index], dtype=np.float32)

    def units(self, units: list[str | Unit], start: int | None = None, stop: int | None = None) -> np.ndarray:
        """(rows, len(units)) float32."""
        rows = self._rows(start, stop)
        us = [self.check_unit(u) for u in units]
        return np.stack([np.asarray(self.array(u.array)[rows, u.index], dtype=np.float32) for u in us], axis=1) \
            if us else np.zeros((rows.stop - rows.start, 0), np.float32)

    def get(self, layer: int, kind: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """float32 (rows, H) block of one layer and kind."""
        self.check_unit(Unit(layer, kind, 0))
        return np.asarray(self.array(array_name(layer, kind))[self._rows(start, stop)], dtype=np.float32)

    def iter_chunks(self, names: list[str], chunk_rows: int = 65536, start: int = 0,
                    stop: int | None = None) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
        """Stream arrays in row chunks: yields (start, stop, {name: float32 block})."""
        stop = self.n_rows if stop is None else stop
        for s in range(start, stop, chunk_rows):
            e = min(stop, s + chunk_rows)
            yield s, e, {n: np.asarray(self.array(n)[s:e], dtype=np.float32) for n in names}

    def all_units(self, kinds: list[str] | None = None) -> list[Unit]:
        """Every unit of these kinds (default: all recorded) in every recorded layer."""
        kinds = self.kinds if kinds is None else kinds
        return [Unit(l, k, i) for l in self.layers for k in kinds for i in range(self.hidden_size)]

    # predictions --------------------------------------------------------------
    @property
    def topk_ids(self) -> np.ndarray:
        return self.array("topk_ids")

    @property
    def topk_probs(self) -> np.ndarray:
        return self.array("topk_probs")

    @property
    def loss_bits(self) -> np.ndarray:
        return self.array("loss_bits")

    def topk(self, start: int | None = None, stop: int | None = None) -> list[list[tuple[str, float]]]:
        """For each row, the model's top-k next symbols as (symbol, probability)."""
        rows = self._rows(start, stop)
        ids, probs = np.asarray(self.topk_ids[rows]), np.asarray(self.topk_probs[rows], dtype=np.float32)
        return [[(self.vocab.symbol(int(i)), float(p)) for i, p in zip(ri, rp)] for ri, rp in zip(ids, probs)]

    # text ------------------------------------------------------------------------
    @property
    def text(self) -> str:
        if self._text is None:
            try:
                with open(self.path / "text.txt", encoding="utf-8", newline="") as f:  # keep \r\n as two characters
                    text = f.read()
            except UnicodeDecodeError:
                raise ProbeError(f"{self.path / 'text.txt'}: not UTF-8 text") from None
            last = int(self.array("char_of_row")[-1]) if self.by_bytes else None
            check_text(self.path, self.meta, text, last)
            self._text = text
        return self._text

    @property
    def by_bytes(self) -> bool:
        return self.vocab.encoding == "byte"

    @property
    def char_of_row(self) -> np.ndarray:
        """(rows,) index into `text` of each row's character."""
        if not self.by_bytes:
            return np.arange(self.n_rows)
        return self.array("char_of_row")

    def row_of_char(self, j: int | np.ndarray) -> int | np.ndarray:
        """First row of character j (rows are characters for char models)."""
        if not self.by_bytes:
            return j
        return np.searchsorted(self.char_of_row, j, side="left")

    def row_labels(self, char_labels: np.ndarray) -> np.ndarray:
        """Per-character labels (len(text)) -> per-row labels (n_rows)."""
        char_labels = np.asarray(char_labels)
        if len(char_labels) != len(self.text):
            raise ValueError(f"{len(char_labels)} labels for a text of {len(self.text)} characters")
        return char_labels if not self.by_bytes else char_labels[np.asarray(self.char_of_row)]

    def row_strings(self, start: int | None = None, stop: int | None = None) -> list[str]:
        """Display string of each row: its character (byte models: the character on its first byte, '' after)."""
        rows = self._rows(start, stop)
        if not self.by_bytes:
            return list(self.text[rows])
        cor = np.asarray(self.char_of_row[max(rows.start - 1, 0):rows.stop])
        out = []
        prev = cor[0] if rows.start > 0 else -1
        for c in cor[(1 if rows.start > 0 else 0):]:
            out.append(self.text[c] if c != prev else "")
            prev = c
        return out

    def frame(self, units: list[str], start: int | None = None, stop: int | None = None):
        """A pandas DataFrame: row, char, loss_bits, then one column per unit."""
        import pandas as pd
        rows = self._rows(start, stop)
        d = {"row": np.arange(rows.start, rows.stop), "char": self.row_strings(rows.start, rows.stop)}
        if self.has("loss_bits"):
            d["loss_bits"] = np.asarray(self.loss_bits[rows], dtype=np.float32)
        for u, col in zip(units, self.units(units, rows.start, rows.stop).T):
            d[str(u)] = col
        return pd.DataFrame(d)

    def __repr__(self) -> str:
        layers = "" if len(self.layers) == self.num_layers else f", layers {','.join(map(str, self.layers))}"
        return (f"Recording({str(self.path)!r}, {self.n_rows:,} rows, {self.cell} "
                f"{self.num_layers}x{self.hidden_size}, kinds {''.join(self.kinds)}{layers})")


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
