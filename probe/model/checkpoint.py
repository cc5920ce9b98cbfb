"""Checkpoint folders: weights in safetensors, everything else in JSON, written atomically.

A run folder holds `latest/` and `best/`; each is a complete checkpoint:

    model.safetensors     weights
    checkpoint.json       format, configs, vocabulary, data split, metrics and sample history,
                          sha256 of every file (written last: its presence means complete)
    trainer.safetensors   optimizer tensors, RNG state, carried hidden state (resume only)
    trainer.json          optimizer hyper-parameters, step, learning-rate scale (resume only)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from probe.errors import ProbeError
from probe.model.charrnn import CharRNN, ModelConfig
from probe.data.vocab import Vocab

FORMAT = "probe-checkpoint"
VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (temp file in the same folder, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(dest: Path, model: CharRNN, meta: dict, trainer_tensors: dict | None = None,
         trainer_json: dict | None = None, dtype: torch.dtype = torch.float32) -> None:
    """Write a complete checkpoint folder at `dest`, replacing any old one only once the new one is whole."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().to("cpu", dtype).contiguous() for k, v in _plain_state_dict(model).items()}
    if not all(torch.isfinite(v).all() for v in weights.values()):
        raise ProbeError("refusing to save a checkpoint with NaN or infinite weights")
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_file(weights, str(tmp / "model.safetensors"))
        if trainer_tensors is not None:
            save_file({k: v.contiguous() for k, v in trainer_tensors.items()}, str(tmp / "trainer.safetensors"))
            write_json(tmp / "trainer.json", trainer_json or {})
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        meta = dict(meta, format=FORMAT, version=VERSION, files=files, saved_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
        write_json(tmp / "checkpoint.json", meta)
        _fsync_dir(tmp)
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _plain_state_dict(model) -> dict:
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    return model.state_dict()


def resolve(path: str | Path, which: str = "best") -> Path:
    """A checkpoint folder, or a run folder (then its `best/`, else `latest/`)."""
    p = Path(path)
    if not p.exists():
        raise ProbeError(f"no such checkpoint: {path}")
    if (p / "checkpoint.json").exists():
        return p
    order = [which, "latest" if which == "best" else "best"]
    for name in order:
        if (p / name / "checkpoint.json").exists():
            return p / name
    for leftover in sorted(p.glob(".latest.old-*")) + sorted(p.glob(".best.old-*")):
        if (leftover / "checkpoint.json").exists():  # a crash between the two renames
            return leftover
    raise ProbeError(f"{path} is not a probe checkpoint (no checkpoint.json, best/ or latest/ inside)")


@dataclass
class Checkpoint:
    path: Path
    meta: dict
    model: CharRNN
    vocab: Vocab
    trainer_tensors: dict = field(default_factory=dict)
    trainer_json: dict = field(default_factory=dict)

    @property
    def config(self) -> ModelConfig:
        return self.model.cfg


def read_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / "checkpoint.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProbeError(f"corrupted checkpoint {path}: checkpoint.json is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ProbeError(f"{path} is not a probe checkpoint (format {meta.get('format') if isinstance(meta, dict) else '?'})")
    if meta.get("version") != VERSION:
        raise ProbeError(
            f"checkpoint {path} has format version {meta.get('version')}; this probe reads version {VERSION}"
        )
    return meta


def load(path: str | Path, which: str = "best", device: str | torch.device = "cpu",
         with_trainer: bool = False) -> Checkpoint:
    """Load and verify a checkpoint (hashes, shapes); the model comes back in eval mode, float32."""
    p = resolve(path, which)
    meta = read_meta(p)
    for name, digest in meta.get("files", {}).items():
        f = p / name
        if not f.exists():
            raise ProbeError(f"incomplete checkpoint {p}: {name} is missing")
        if _sha256(f) != digest:
            raise ProbeError(f"corrupted checkpoint {p}: {name} does not match its recorded sha256")
    try:
        cfg = ModelConfig(**meta["model_config"])
        vocab = Vocab.from_json(meta["vocab"])
        model = CharRNN(cfg)
        weights = load_file(str(p / "model.safetensors"))
        model.load_state_dict({k: v.float() for k, v in weights.items()})
    except (KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise ProbeError(f"corrupted checkpoint {p}: {str(e).splitlines()[0][:200]}") from None
    model.to(device).eval()
    ck = Checkpoint(path=p, meta=meta, model=model, vocab=vocab)
    if with_trainer:
        if not (p / "trainer.safetensors").exists():
            raise ProbeError(f"checkpoint {p} holds no trainer state (a shipped copy?): it cannot be resumed")
        try:
            ck.trainer_tensors = load_file(str(p / "trainer.safetensors"))
            ck.trainer_json = json.loads((p / "trainer.json").read_text())
        except (SafetensorError, json.JSONDecodeError, OSError) as e:
            raise ProbeError(f"corrupted checkpoint {p}: trainer state: {e}") from None
    return ck


def export(source: str | Path, dest: str | Path, half: bool = True, which: str = "best") -> Path:
    """A lean copy for shipping: weights (float16 by default) and checkpoint.json, no trainer state."""
    ck = load(source, which=which)
    meta = {k: v for k, v in ck.meta.items() if k not in ("files", "format", "version", "saved_at")}
    meta["exported_from"] = {"path": str(ck.path), "step": ck.meta.get("step"),
                             "dtype": "float16" if half else "float32"}
    save(Path(dest), ck.model, meta, dtype=torch.float16 if half else torch.float32)
    return Path(dest)
