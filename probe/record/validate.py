"""Check a recording against its own meta.json when it is opened: cheap checks, one line naming the broken file.

Only headers and sizes are read (a .npy header, a file's length), never the
data: a truncated, replaced or garbage array, or a meta.json that is valid
JSON of the wrong shape, is refused before any analysis touches it.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from probe.errors import ProbeError
from probe.names import GATES, STATES, array_name

_FORMATS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_meta(where: str, meta) -> None:
    """The keys a recording is read by, with their types (other keys are free)."""
    if not isinstance(meta, dict):
        raise ProbeError(f"{where}: expected a JSON object, found a JSON {type(meta).__name__}")
    for key, typ, what in (("n_rows", int, "an integer"), ("vocab", dict, "an object"),
                           ("model_config", dict, "an object"), ("arrays", dict, "an object")):
        if key not in meta:
            raise ProbeError(f"{where}: no {key!r}")
        if not isinstance(meta[key], typ) or isinstance(meta[key], bool):
            raise ProbeError(f"{where}: {key!r} must be {what}, not {type(meta[key]).__name__}")
    if meta["n_rows"] < 1:
        raise ProbeError(f"{where}: 'n_rows' must be at least 1, not {meta['n_rows']}")
    vocab = meta["vocab"]
    if vocab.get("kind") not in ("byte", "char"):
        raise ProbeError(f"{where}: vocab 'kind' must be byte or char, not {vocab.get('kind')!r}")
    if vocab["kind"] == "char":
        symbols = vocab.get("symbols")
        if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) and len(s) == 1
                                                                     for s in symbols):
            raise ProbeError(f"{where}: vocab 'symbols' must be a list of single characters")
    mc = meta["model_config"]
    if mc.get("model") not in STATES:
        raise ProbeError(f"{where}: model_config 'model' must be one of {', '.join(STATES)}, not {mc.get('model')!r}")
    for key in ("num_layers", "rnn_size"):
        if not _is_int(mc.get(key)) or mc[key] < 1:
            raise ProbeError(f"{where}: model_config {key!r} must be a positive integer, not {mc.get(key)!r}")
    for name, spec in meta["arrays"].items():
        if not (isinstance(spec, dict) and isinstance(spec.get("file"), str) and isinstance(spec.get("shape"), list)
                and all(_is_int(d) and d >= 0 for d in spec["shape"]) and isinstance(spec.get("dtype"), str)):
            raise ProbeError(f"{where}: array {name!r} must be described by file, shape (integers) and dtype")
        f = spec["file"]
        if f != os.path.basename(f) or f in ("", ".", "..") or not f.endswith(".npy"):
            raise ProbeError(f"{where}: array {name!r} names the file {f!r}, not a .npy file inside the recording")


def expected_shapes(meta: dict) -> dict[str, tuple]:
    """The shape every array of this recording must have, from its meta (arrays it may hold or must hold)."""
    n, mc = meta["n_rows"], meta["model_config"]
    cell, H, L = mc["model"], mc["rnn_size"], mc["num_layers"]
    shapes: dict[str, tuple] = {array_name(l, k): (n, H) for l in range(L) for k in STATES[cell] + GATES[cell]}
    shapes.update({"ids": (n,), "char_of_row": (n,), "loss_bits": (n,)})
    return shapes


def read_npy_header(path: Path) -> tuple[tuple, np.dtype, bool, int]:
    """(shape, dtype, fortran_order, data offset) of a .npy file, reading its header only."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version not in _FORMATS:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, fortran, dtype = _FORMATS[version](f)
        except (ValueError, SyntaxError, TypeError, EOFError) as e:
            raise ProbeError(f"{path}: not a valid .npy file ({str(e).splitlines()[0][:120] if str(e) else 'bad header'})") \
                from None
        return tuple(shape), dtype, bool(fortran), f.tell()


def check_array(path: Path, name: str, spec: dict, want_shape: tuple | None) -> None:
    """One array file against its meta entry and the recording's shape: header, dtype, shape, size."""
    if not path.is_file():
        raise ProbeError(f"{path}: missing (meta.json lists {name})")
    shape, dtype, fortran, offset = read_npy_header(path)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise ProbeError(f"{path}: holds {dtype} values, not numbers")
    if fortran:
        raise ProbeError(f"{path}: stored in Fortran order (probe writes C order): replaced by another file?")
    if dtype.name != spec["dtype"]:
        raise ProbeError(f"{path}: holds {dtype.name}, meta.json says {spec['dtype']}")
    if list(shape) != spec["shape"]:
        raise ProbeError(f"{path}: shape {shape}, meta.json says {tuple(spec['shape'])}")
    if want_shape is not None and shape != want_shape:
        raise ProbeError(f"{path}: shape {shape} does not fit the recording ({want_shape}: n_rows and model size "
                         f"in meta.json)")
    need = offset + math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if size < need:
        raise ProbeError(f"{path}: truncated ({size:,} of {need:,} bytes)")
    if size > need:
        raise ProbeError(f"{path}: {size - need:,} bytes more than its header describes: replaced or corrupted")


def check_recording(path: Path, meta) -> None:
    """Validate the recording folder `path` against `meta` (its parsed meta.json); ProbeError naming the file."""
    path = Path(path)
    check_meta(f"{path / 'meta.json'}", meta)
    shapes = expected_shapes(meta)
    n = meta["n_rows"]
    k = None
    for name, spec in meta["arrays"].items():
        want = shapes.get(name)
        if name in ("topk_ids", "topk_probs"):
            if len(spec["shape"]) != 2 or spec["shape"][0] != n or (k is not None and spec["shape"][1] != k):
                raise ProbeError(f"{path / spec['file']}: shape {tuple(spec['shape'])} in meta.json does not fit "
                                 f"{n} rows of top-k predictions")
            k = spec["shape"][1]
            want = (n, k)
        check_array(path / spec["file"], name, spec, want)
    check_subset(path / "meta.json", meta)
    if meta["vocab"]["kind"] == "byte" and "char_of_row" not in meta["arrays"]:
        raise ProbeError(f"{path / 'meta.json'}: a byte-level recording must list char_of_row")
    if not (path / "text.txt").is_file():
        raise ProbeError(f"{path / 'text.txt'}: missing")


def check_subset(where: Path, meta: dict) -> None:
    """meta.json's "layers" and "kinds" (the recorded subset; absent in older recordings: all of them), when
    present: layers of the model, kinds of its cell, and an array for each pair."""
    if "layers" not in meta and "kinds" not in meta:
        return
    mc = meta["model_config"]
    layers, kinds = meta.get("layers"), meta.get("kinds")
    if not (isinstance(layers, list) and layers and all(_is_int(l) and 0 <= l < mc["num_layers"] for l in layers)):
        raise ProbeError(f"{where}: 'layers' must list layers of the model (0..{mc['num_layers'] - 1}), not {layers!r}")
    cell_kinds = STATES[mc["model"]] + GATES[mc["model"]]
    if not (isinstance(kinds, list) and kinds and all(k in cell_kinds for k in kinds)):
        raise ProbeError(f"{where}: 'kinds' must list kinds of a {mc['model']} ({', '.join(cell_kinds)}), "
                         f"not {kinds!r}")
    for l in layers:
        for k in kinds:
            if array_name(l, k) not in meta["arrays"]:
                raise ProbeError(f"{where}: 'layers' and 'kinds' name {array_name(l, k)}, which 'arrays' lacks")


def check_text(path: Path, meta: dict, text: str, last_char_of_row: int | None) -> None:
    """The recorded text against the rows: one row per character, or (bytes) the last row's character is the last."""
    n = meta["n_rows"]
    if meta["vocab"]["kind"] == "char" and len(text) != n:
        raise ProbeError(f"{path / 'text.txt'}: {len(text):,} characters, but the recording has {n:,} rows")
    if last_char_of_row is not None and last_char_of_row != len(text) - 1:
        raise ProbeError(f"{path / 'text.txt'}: {len(text):,} characters, but the rows end on character "
                         f"{last_char_of_row:,} (char_of_row.npy)")
