"""Features as units: a recording seen through a sparse autoencoder, computed lazily.

`FeatureRecording(rec, loaded)` looks like a `Recording` whose only kind is the SAE's feature kind
(`h.f` for an SAE on `L2.h`): `array("L2.h.f")` is a (rows, d_sae) float32 array-like whose row slices
run the encoder on the recorded state of those rows, `unit("L2.h.f123")` is one feature's activation,
and everything else (text, vocabulary, top-k guesses, loss, row labels, meta) is the recording's. So
`find_neurons`, the atlas, neuron cards and heatmaps take features like units.

Rows are encoded in aligned blocks of BLOCK_ROWS (each block always by the same encoder call, so a
value never depends on which slice asked for it) and kept sparse (the top-k code: at most k values and
their feature indices per row) in a small least-recently-used cache.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from probe.errors import ProbeError
from probe.names import Site, Unit, parse_unit
from probe.record.recording import Recording
from probe.sae.io import check_compatible, load_sae

BLOCK_ROWS = 512           # rows encoded together (and cached) as one block
CACHE_BYTES = 128 << 20    # sparse blocks kept, at most (indices + values)


def check_checkpoint(loaded, ck) -> None:
    """A one-line ProbeError unless the SAE `loaded` was trained on a state site of the checkpoint `ck`'s weights."""
    site: Site = loaded.site
    cfg = ck.model.cfg
    states = ("h", "c") if cfg.model == "lstm" else ("h",)
    if site.kind not in states or not 0 <= site.layer < cfg.num_layers:
        raise ProbeError(f"the SAE {loaded.name} is on {site.label}, which the {cfg.num_layers}-layer "
                         f"{cfg.model.upper()} of {ck.path} does not have")
    want = (ck.meta.get("files") or {}).get("model.safetensors")
    have = (loaded.source or {}).get("weights_sha256")
    if not want or not have or want != have:
        raise ProbeError(f"the SAE {loaded.name} was trained on the states of model weights {str(have)[:12] or '?'}, "
                         f"checkpoint {ck.path} holds weights {str(want)[:12] or '?'}: train an SAE on this model")
    if int(loaded.sae.W_enc.shape[0]) != cfg.rnn_size:
        raise ProbeError(f"the SAE {loaded.name} reads {int(loaded.sae.W_enc.shape[0])} inputs; {site.label} of "
                         f"{ck.path} has {cfg.rnn_size} units")


class FeatureArray:
    """The (rows, d_sae) float32 feature activations of a FeatureRecording, computed on indexing.

    Supports `a[start:stop]`, `a[row]`, `a[start:stop, j]` (one feature: read from the sparse code),
    `a[start:stop, cols]` and `np.asarray(a)` (every row: only for small recordings).
    """

    def __init__(self, frec: "FeatureRecording"):
        self._f = frec
        self.shape = (frec.n_rows, frec.d_sae)
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        out = self[0:self.shape[0]]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) != 2:
            raise IndexError("a feature array takes [rows] or [rows, features]")
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        n = self.shape[0]
        if isinstance(rows, (int, np.integer)):
            r = int(rows) + (n if rows < 0 else 0)
            if not 0 <= r < n:
                raise IndexError(f"row {rows} out of range 0:{n}")
            return self._f.features(r, r + 1, cols)[0]
        if isinstance(rows, slice):
            start, stop, step = rows.indices(n)
            if start >= stop if step > 0 else True:
                if step > 0:
                    return np.zeros((0,) + self._cols_shape(cols), np.float32)
                return self._f.features(0, n, cols)[rows]  # a reversed slice: rare, read whole
            out = self._f.features(start, stop, cols)
            return out if step == 1 else out[::step]
        idx = np.asarray(rows)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = np.where(idx < 0, idx + n, idx).astype(np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"rows out of range 0:{n}")
        if not len(idx):
            return np.zeros((0,) + self._cols_shape(cols), np.float32)
        return np.stack([self._f.features(int(r), int(r) + 1, cols)[0] for r in idx])

    def _cols_shape(self, cols) -> tuple:
        return () if isinstance(cols, (int, np.integer)) else (len(np.arange(self.shape[1])[cols]),)


class FeatureRecording:
    """A Recording-like view of `rec` whose units are the features of the SAE `loaded` (see the module doc)."""

    def __init__(self, rec: Recording, loaded, *, cache_bytes: int = CACHE_BYTES):
        check_compatible(loaded, rec)
        self.rec, self.sae = rec, loaded
        self.state_site: Site = loaded.site
        self.feature_site: Site = loaded.site.features
        self.sae_name: str = str(loaded.name)
        self._model = loaded.sae.eval()
        self.d_sae = int(self._model.W_enc.shape[1])
        self._array = FeatureArray(self)
        self._blocks: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_bytes, self._held = int(cache_bytes), 0
        self._lock = threading.Lock()
        arrays = dict(rec.meta.get("arrays", {}))
        arrays[self.feature_site.array] = {"file": None, "shape": [rec.n_rows, self.d_sae], "dtype": "float32"}
        self.meta = dict(rec.meta, arrays=arrays,
                         sae={"name": self.sae_name, "path": str(loaded.path), "site": self.state_site.label,
                              "d_sae": self.d_sae})

    # what is inside ----------------------------------------------------------
    def __getattr__(self, name):  # text, vocab, cell, by_bytes, char_of_row, row_labels, topk, loss_bits, ...
        if name == "rec":
            raise AttributeError(name)
        return getattr(self.rec, name)

    @property
    def n_rows(self) -> int:
        return self.rec.n_rows

    def __len__(self) -> int:
        return self.rec.n_rows

    @property
    def path(self) -> Path:
        return self.rec.path

    @property
    def num_layers(self) -> int:
        return self.rec.num_layers

    @property
    def hidden_size(self) -> int:
        """Units per array: the SAE's dictionary size."""
        return self.d_sae

    @property
    def kinds(self) -> list[str]:
        return [self.feature_site.kind]

    @property
    def layers(self) -> list[int]:
        """The one layer that has features."""
        return [self.feature_site.layer]

    def arrays_for(self, kinds: list[str] | None = None) -> list[str]:
        kinds = self.kinds if kinds is None else kinds
        return [self.feature_site.array] if self.feature_site.kind in kinds else []

    def has(self, name: str) -> bool:
        return name == self.feature_site.array or self.rec.has(name)

    def array(self, name: str):
        """The lazy feature array (`L2.h.f`), or the recording's own array of that name."""
        return self._array if name == self.feature_site.array else self.rec.array(name)

    def check_unit(self, unit: str | Unit) -> Unit:
        u = parse_unit(unit) if isinstance(unit, str) else unit
        if u.site != self.feature_site:
            raise ProbeError(f"no unit {u} here: the SAE {self.sae_name} gives features "
                             f"{self.feature_site.unit(0)}..{self.feature_site.unit(self.d_sae - 1)}")
        if not 0 <= u.index < self.d_sae:
            raise ProbeError(f"no feature {u}: the SAE {self.sae_name} has features 0 to {self.d_sae - 1}")
        return u

    def all_units(self, kinds: list[str] | None = None) -> list[Unit]:
        return self.feature_site.units(self.d_sae) if self.arrays_for(kinds) else []

    # activations -----------------------------------------------------------------
    def _rows(self, start: int | None, stop: int | None) -> slice:
        return self.rec._rows(start, stop)

    def features(self, start: int, stop: int, cols=slice(None)) -> np.ndarray:
        """float32 feature activations of rows [start, stop): all features, or `cols` (an index, a slice...)."""
        first, last = start // BLOCK_ROWS, (stop - 1) // BLOCK_ROWS
        parts = []
        for b in range(first, last + 1):
            idx, val = self._block(b)
            a, e = max(start, b * BLOCK_ROWS) - b * BLOCK_ROWS, min(stop, (b + 1) * BLOCK_ROWS) - b * BLOCK_ROWS
            parts.append(_densify(idx[a:e], val[a:e], self.d_sae, cols))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            hit = self._blocks.get(b)
            if hit is not None:
                self._blocks.move_to_end(b)
                return hit
            s, e = b * BLOCK_ROWS, min(self.n_rows, (b + 1) * BLOCK_ROWS)
            x = np.asarray(self.rec.array(self.state_site.array)[s:e], dtype=np.float32)
            hit = self._encode(x)
            self._blocks[b] = hit
            self._held += hit[0].nbytes + hit[1].nbytes
            while self._held > self._cache_bytes and len(self._blocks) > 1:
                _, (i, v) = self._blocks.popitem(last=False)
                self._held -= i.nbytes + v.nbytes
            return hit

    def warm(self, start_row: int = 0, stop: threading.Event | None = None) -> int:
        """Encode blocks into the cache from `start_row`'s block to the end, then from the beginning, while the
        cache has room for them without evicting any; returns how many were encoded. For a background thread
        (the dashboard's), so that later windows are read from the cache instead of the encoder."""
        n_blocks = -(-self.n_rows // BLOCK_ROWS)
        first = min(n_blocks - 1, max(0, int(start_row) // BLOCK_ROWS))
        done = 0
        for b in [*range(first, n_blocks), *range(first)]:
            if stop is not None and stop.is_set():
                break
            with self._lock:
                if b in self._blocks:
                    continue
                per_block = self._held / len(self._blocks) if self._blocks else 0
                if self._held + per_block > self._cache_bytes:
                    break
            self._block(b)
            done += 1
        return done

    def cached_rows(self) -> int:
        """Rows whose features are in the cache."""
        with self._lock:
            return sum(len(idx) for idx, _ in self._blocks.values())

    @torch.no_grad()
    def _encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sparse code of rows x: the top-k form when the SAE has one, else the non-zeros of `encode`."""
        t = torch.from_numpy(np.array(x, dtype=np.float32))  # a writable copy (a memory map's rows are read-only)
        if hasattr(self._model, "encode_topk"):
            val, idx = self._model.encode_topk(t)
            return idx.to(torch.int32).numpy(), val.to(torch.float32).numpy()
        return sparse_code(self._model.encode(t))

    def unit(self, unit: str | Unit, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """float32 activations of one feature over rows [start, stop)."""
        u, rows = self.check_unit(unit), self._rows(start, stop)
        return self.features(rows.start, rows.stop, u.index)

    def units(self, units: list[str | Unit], start: int | None = None, stop: int | None = None) -> np.ndarray:
        """(rows, len(units)) float32."""
        rows = self._rows(start, stop)
        idx = [self.check_unit(u).index for u in units]
        return self.features(rows.start, rows.stop, np.asarray(idx, np.int64)) if idx else \
            np.zeros((rows.stop - rows.start, 0), np.float32)

    def get(self, layer: int, kind: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """float32 (rows, d_sae) block of the features."""
        self.check_unit(Unit(layer, kind, 0))
        rows = self._rows(start, stop)
        return self.features(rows.start, rows.stop)

    def iter_chunks(self, names: list[str], chunk_rows: int = 65536, start: int = 0, stop: int | None = None):
        """Stream arrays in row chunks: yields (start, stop, {name: float32 block})."""
        stop = self.n_rows if stop is None else stop
        for s in range(start, stop, chunk_rows):
            e = min(stop, s + chunk_rows)
            yield s, e, {n: np.asarray(self.array(n)[s:e], dtype=np.float32) for n in names}

    def frame(self, units: list[str], start: int | None = None, stop: int | None = None):
        """A pandas DataFrame: row, char, loss_bits, then one column per feature."""
        import pandas as pd
        rows = self._rows(start, stop)
        d = {"row": np.arange(rows.start, rows.stop), "char": self.rec.row_strings(rows.start, rows.stop)}
        if self.rec.has("loss_bits"):
            d["loss_bits"] = np.asarray(self.rec.loss_bits[rows], dtype=np.float32)
        for u, col in zip(units, self.units(units, rows.start, rows.stop).T):
            d[str(u)] = col
        return pd.DataFrame(d)

    def __repr__(self) -> str:
        return (f"FeatureRecording({str(self.path)!r}, {self.n_rows:,} rows, SAE {self.sae_name} on "
                f"{self.state_site.label}: {self.d_sae:,} features {self.feature_site.array})")


def sparse_code(z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(indices int32, values float32), each (rows, m): every non-zero of each row of `z` (m: the most in a row)."""
    m = int((z != 0).sum(1).max()) if z.shape[0] else 0
    m = max(m, 1)
    val, idx = torch.topk(z, m, dim=1, sorted=False)
    return idx.to(torch.int32).numpy(), val.to(torch.float32).numpy()


def _densify(idx: np.ndarray, val: np.ndarray, d: int, cols) -> np.ndarray:
    """Rows of a sparse code as dense float32, all `d` columns or `cols`."""
    if isinstance(cols, (int, np.integer)):
        j = int(cols) + (d if cols < 0 else 0)
        if not 0 <= j < d:
            raise IndexError(f"feature {cols} out of range 0:{d}")
        return np.where(idx == j, val, np.float32(0)).sum(1, dtype=np.float32)
    out = np.zeros((idx.shape[0], d), np.float32)
    np.put_along_axis(out, idx.astype(np.int64), val, axis=1)
    return out if isinstance(cols, slice) and cols == slice(None) else out[:, cols]


def open_features(recording: str | Path | Recording, sae_folder: str | Path) -> FeatureRecording:
    """The recording `recording` seen through the SAE in `sae_folder`; a one-line ProbeError when they do not match."""
    rec = recording if isinstance(recording, Recording) else Recording.open(recording)
    return FeatureRecording(rec, load_sae(sae_folder))
