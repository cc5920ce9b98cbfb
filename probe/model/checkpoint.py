"""Checkpoint folders: weights in safetensors, everything else in JSON; a kill at any moment loses nothing.

A run folder holds `latest/` and `best/`; each is a complete checkpoint:

    model.safetensors     weights
    checkpoint.json       format, configs, vocabulary, data split, metrics and sample history,
                          sha256 of every file (written last: its presence means complete)
    trainer.safetensors   optimizer tensors, RNG state, carried hidden state (resume only)
    trainer.json          optimizer hyper-parameters, step, learning-rate scale (resume only)

A save writes a hidden `.latest.tmp-<pid>-<start>-<host>/` whole, then swaps it in with two renames
(`latest/` to `.latest.old-…/`, the new folder to `latest/`) and deletes the old one. At every moment of
that, a complete copy of the newest checkpoint is on disk under one of those names: `find_resume` picks
the newest complete one by step (every file checked against its sha256) and `recover` puts it back at
`latest/` (and `best/`) and deletes the temporary folders of processes that no longer run.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from probe import files as _files, resources
from probe.errors import ProbeError
from probe.files import HOST as _HOST, Owner, start_time as _start_time, temp_name  # noqa: F401 (re-exported)
from probe.model.charrnn import CELLS, CharRNN, ModelConfig
from probe.data.vocab import Vocab

FORMAT = "probe-checkpoint"
VERSION = 1
NAMES = ("latest", "best")  # the checkpoint folders of a run
TRAINER_FILES = ("trainer.safetensors", "trainer.json")


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


# --------------------------------------------------------------------------- temporary folders and their owners
# Owner, temp_name and the leftovers of dead processes live in probe.files (recordings use them too);
# the names below stay importable from here, and a checkpoint's temporary folders are of kinds tmp and old.

LEFTOVER = re.compile(r"^\.(?P<dest>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)(?:-(?P<start>\d+)-(?P<host>.+))?$")
_KINDS_OF_SAVES = ("tmp", "old")


def leftovers(run: Path, dest: str) -> list[tuple[Path, Owner]]:
    """The temporary folders of `dest` in `run` (new ones `tmp` first, then `old`), with their owners."""
    return _files.leftovers(run, dest, _KINDS_OF_SAVES)


def clean_leftovers(run: Path, dests=NAMES) -> list[str]:
    """Delete the temporary folders of `dests` whose owner no longer runs; the names deleted."""
    return _files.clean_leftovers(run, dests, _KINDS_OF_SAVES)


def candidates(run: Path, dest: str) -> list[Path]:
    """Where a checkpoint `dest` of `run` can be after a kill: `run/dest`, then its temporary folders."""
    named = [Path(run) / dest] if (Path(run) / dest).is_dir() else []
    return named + [p for p, _ in leftovers(run, dest)]


def holds_run(run: Path) -> bool:
    """Whether `run` holds a run: latest/ or best/, or a checkpoint left in the temporary folder of a killed save."""
    return any((Path(run) / dest).exists() or any((p / "checkpoint.json").exists() for p, _ in leftovers(run, dest))
               for dest in NAMES)


# --------------------------------------------------------------------------- save

def save(dest: Path, model: CharRNN, meta: dict, trainer_tensors: dict | None = None,
         trainer_json: dict | None = None, dtype: torch.dtype = torch.float32) -> None:
    """Write a complete checkpoint folder at `dest`, replacing any old one only once the new one is whole."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().to("cpu", dtype).contiguous() for k, v in _plain_state_dict(model).items()}
    if not all(torch.isfinite(v).all() for v in weights.values()):
        raise ProbeError("refusing to save a checkpoint with NaN or infinite weights")
    owner = Owner.current()
    tmp = dest.with_name(temp_name(dest.name, "tmp", owner))
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
        _swap_in(tmp, dest, owner)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    clean_leftovers(dest.parent, (dest.name,))


def _swap_in(new: Path, dest: Path, owner: Owner) -> None:
    """Rename the complete folder `new` to `dest`: the old `dest` goes aside first, then is deleted.

    Killed at any point, a complete copy of the newest checkpoint is under `new` or `dest`.
    """
    _fsync_dir(new)
    old = dest.with_name(temp_name(dest.name, "old", owner))
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    try:
        os.replace(new, dest)
    except BaseException:
        if old.exists() and not dest.exists():
            os.replace(old, dest)
        raise
    _fsync_dir(dest.parent)
    shutil.rmtree(old, ignore_errors=True)


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


# --------------------------------------------------------------------------- find, verify, recover

def resolve(path: str | Path, which: str = "best") -> Path:
    """A checkpoint folder, or a run folder (then its `best/`, else `latest/`, else the newest complete
    checkpoint left in the temporary folders of a killed save), or the name of a shipped model (`wiki`,
    `shakespeare`: see probe.resources); an existing folder of that name wins over the shipped model."""
    p = Path(path)
    if not p.exists():
        shipped = resources.shipped_model_path(str(path)) if str(path) == p.name else None
        if shipped is not None:
            return shipped
        names = resources.shipped_models()
        raise ProbeError(f"no such checkpoint: {path}" + (f" (shipped models: {', '.join(names)})" if names else ""))
    if (p / "checkpoint.json").exists():
        return p
    order = [which, "latest" if which == "best" else "best"]
    for name in order:
        if (p / name / "checkpoint.json").exists():
            return p / name
    hidden = [q for name in order for q, _ in leftovers(p, name)]
    found, _ = newest_complete(hidden)
    if found is not None:
        return found
    raise ProbeError(f"{path} is not a probe checkpoint (no checkpoint.json, best/ or latest/ inside)")


def verify(path: Path, trainer: bool = False) -> dict:
    """The checkpoint.json of a complete checkpoint folder, every file checked against its sha256.

    `trainer`: it must also hold the trainer state that resuming needs. ProbeError otherwise.
    """
    path = Path(path)
    if not (path / "checkpoint.json").is_file():
        raise ProbeError(f"incomplete checkpoint {path}: no checkpoint.json")
    meta = read_meta(path)
    for name, digest in meta["files"].items():
        f = path / name
        if not f.is_file():
            raise ProbeError(f"incomplete checkpoint {path}: {name} is missing")
        if _sha256(f) != digest:
            raise ProbeError(f"corrupted checkpoint {path}: {name} does not match its recorded sha256")
    if trainer and not all(name in meta["files"] for name in TRAINER_FILES):
        raise ProbeError(f"checkpoint {path} holds no trainer state (a shipped copy?): it cannot be resumed")
    return meta


def newest_complete(paths: list[Path], trainer: bool = False) -> tuple[Path | None, list[str]]:
    """The complete checkpoint of highest step among `paths` (the first of equals), and why each other failed."""
    best, best_step, problems = None, -1, []
    for p in paths:
        try:
            meta = verify(p, trainer)
        except ProbeError as e:
            problems.append(str(e))
            continue
        step = meta.get("step", 0)
        if step > best_step:
            best, best_step = p, step
    return best, problems


@dataclass
class ResumePoint:
    """Where `--resume` continues: the run folder new checkpoints go to, and the checkpoint to start from."""
    run: Path
    folder: Path  # may be a temporary folder of a killed save until `recover` puts it at latest/
    meta: dict
    named: bool  # the user named this checkpoint folder itself (not the run, nor its latest/)
    problems: list[str] = field(default_factory=list)  # checkpoints passed over, and why

    def describe(self) -> str:
        where = self.folder.name + ("" if self.folder.name.startswith(".") else "/")
        note = f"resuming {self.run} from {where} at step {self.meta.get('step', 0)}"
        if self.folder.name.startswith("."):
            note += " (the newest complete checkpoint: a save was cut short)"
        if self.problems:
            note += "; passed over: " + "; ".join(self.problems)
        return note


def find_resume(path: str | Path) -> ResumePoint:
    """The newest complete checkpoint (with trainer state) of a run folder, or the checkpoint folder named.

    A run folder, its `latest/` (even when a kill removed it) or a temporary folder inside it all mean
    the run: its newest complete checkpoint by step, whatever moment a kill hit a save. Read only.
    """
    p = Path(path)
    named = (p / "checkpoint.json").exists() and p.name != "latest" and not LEFTOVER.match(p.name)
    if named:
        return ResumePoint(p.parent, p, verify(p, trainer=True), named=True)
    run = p.parent if p.name == "latest" or LEFTOVER.match(p.name) else p
    if not run.is_dir():
        raise ProbeError(f"no such checkpoint: {path}")
    folders = candidates(run, "latest") + candidates(run, "best")
    if not folders:
        raise ProbeError(f"{path} is not a probe checkpoint (no checkpoint.json, best/ or latest/ inside)")
    found, problems = newest_complete(folders, trainer=True)
    if found is None:
        raise ProbeError(f"{problems[0]}; {run} holds no other complete checkpoint to resume from")
    return ResumePoint(run, found, read_meta(found), named=False, problems=problems)


def recover(run: Path) -> list[str]:
    """Put the newest complete checkpoint of `run` at `latest/` and its newest complete best at `best/`,
    whatever moment a kill hit a save; delete the temporary folders of processes that no longer run.

    Returns one line per thing done (nothing on a run that needs nothing).
    """
    run, notes = Path(run), []
    for dest, pool, trainer in (("latest", NAMES, True), ("best", ("best",), False)):
        found, _ = newest_complete([p for name in pool for p in candidates(run, name)], trainer)
        if found is None or found == run / dest:
            continue
        move = found.parent == run and any(p == found and not o.running() for p, o in leftovers(run, dest))
        _install(found, run / dest, move)
        notes.append(f"{dest}/ restored from {found.name}")
    gone = clean_leftovers(run)
    if gone:
        notes.append(f"removed {len(gone)} temporary folder(s) of stopped saves: {', '.join(gone)}")
    return notes


def _install(src: Path, dest: Path, move: bool) -> None:
    """Make `dest` a copy of the complete checkpoint `src` (renamed when `move`, else copied first)."""
    owner = Owner.current()
    if not move:
        tmp = dest.with_name(temp_name(dest.name, "tmp", owner))
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        src = tmp
    _swap_in(src, dest, owner)


# --------------------------------------------------------------------------- read and validate

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


_KINDS = {
    "an integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "a number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "a string": lambda v: isinstance(v, str),
    "an object": lambda v: isinstance(v, dict),
    "a list": lambda v: isinstance(v, list),
}


def _bad(path: Path, problem: str) -> ProbeError:
    return ProbeError(f"corrupted checkpoint {path}: {problem}")


def _field(path: Path, obj: dict, key: str, kind: str, where: str = "checkpoint.json", required: bool = True):
    """obj[key] when it is of `kind`; a clear error when it is missing (and `required`) or of another type."""
    if key not in obj:
        if required:
            raise _bad(path, f"{where} lacks {key!r}")
        return None
    value = obj[key]
    if not _KINDS[kind](value):
        raise _bad(path, f"{where}: {key} is {json.dumps(value)[:40]}, not {kind}")
    return value


def _json_type(value) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null")


def read_meta(path: Path) -> dict:
    """checkpoint.json of the checkpoint folder `path`, checked for what every reader needs."""
    path = Path(path)
    try:
        meta = json.loads((path / "checkpoint.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProbeError(f"corrupted checkpoint {path}: checkpoint.json is not valid JSON") from None
    if not isinstance(meta, dict):
        raise ProbeError(f"{path} is not a probe checkpoint (checkpoint.json holds {_json_type(meta)}, not an object)")
    if meta.get("format") != FORMAT:
        raise ProbeError(f"{path} is not a probe checkpoint (format {meta.get('format')})")
    if meta.get("version") != VERSION:
        raise ProbeError(
            f"checkpoint {path} has format version {meta.get('version')}; this probe reads version {VERSION}"
        )
    _check_files(path, _field(path, meta, "files", "an object"))
    _check_model_config(path, _field(path, meta, "model_config", "an object"))
    _check_vocab(path, _field(path, meta, "vocab", "an object"), meta["model_config"]["vocab_size"])
    _field(path, meta, "step", "an integer", required=False)
    _field(path, meta, "data", "an object", required=False)
    return meta


def _check_files(path: Path, files: dict) -> None:
    for name, digest in files.items():
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", name) or not (
                isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise _bad(path, f"checkpoint.json: files has a bad entry {json.dumps(name)[:40]}")
    if "model.safetensors" not in files:
        raise _bad(path, "checkpoint.json: files does not list model.safetensors")


def _check_model_config(path: Path, mc: dict) -> None:
    where = "checkpoint.json: model_config"
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(mc) - known)
    if unknown:
        raise _bad(path, f"{where} has unknown key {unknown[0]!r}")
    for key in ("vocab_size", "rnn_size", "num_layers", "embed_size"):
        value = _field(path, mc, key, "an integer", where, required=key == "vocab_size")
        if value is not None and value < 1:
            raise _bad(path, f"{where}: {key} is {value}, not at least 1")
    model = _field(path, mc, "model", "a string", where, required=False)
    if model is not None and model not in CELLS:
        raise _bad(path, f"{where}: model is {model!r}, not one of {', '.join(CELLS)}")
    dropout = _field(path, mc, "dropout", "a number", where, required=False)
    if dropout is not None and not 0 <= dropout < 1:
        raise _bad(path, f"{where}: dropout is {dropout}, not in [0, 1)")


def _check_vocab(path: Path, vocab: dict, vocab_size: int) -> None:
    kind = vocab.get("kind")
    if kind == "byte":
        size = 256
    elif kind == "char":
        symbols = vocab.get("symbols")
        if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) and len(s) == 1
                                                                   for s in symbols):
            raise _bad(path, "checkpoint.json: vocab.symbols is not a list of single characters")
        if len(set(symbols)) != len(symbols):
            raise _bad(path, "checkpoint.json: vocab.symbols repeats a character")
        size = len(symbols)
    else:
        raise _bad(path, f"checkpoint.json: vocab.kind is {json.dumps(kind)[:40]}, not \"char\" or \"byte\"")
    if size != vocab_size:
        raise _bad(path, f"the vocabulary has {size} symbols but model_config.vocab_size (the rows of the "
                         f"embedding and the head) is {vocab_size}")


def _check_weights(path: Path, cfg: ModelConfig, weights: dict) -> None:
    """The tensors of model.safetensors against the ones the model config makes (names, shapes)."""
    try:
        with torch.device("meta"):  # shapes only, nothing allocated
            wanted = CharRNN(cfg).state_dict()
    except ProbeError as e:
        raise _bad(path, f"checkpoint.json: model_config: {e}") from None
    missing = [k for k in wanted if k not in weights]
    if missing:
        raise _bad(path, f"model.safetensors lacks {len(missing)} tensor(s) of the model: {', '.join(missing[:3])}")
    extra = [k for k in weights if k not in wanted]
    if extra:
        raise _bad(path, f"model.safetensors holds tensor(s) the model does not have: {', '.join(extra[:3])}")
    for name, ref in wanted.items():
        got = tuple(weights[name].shape)
        if got != tuple(ref.shape):
            raise _bad(path, f"model.safetensors: {name} has shape {got}, but the model config "
                             f"({cfg.model} {cfg.num_layers}x{cfg.rnn_size}, embed {cfg.embed_size}, vocab "
                             f"{cfg.vocab_size}) makes {tuple(ref.shape)}")
        if not weights[name].is_floating_point():
            raise _bad(path, f"model.safetensors: {name} holds {weights[name].dtype}, not floating point numbers")


def _check_trainer(path: Path, meta: dict, tj, tensors: dict) -> None:
    """What resuming needs from checkpoint.json, trainer.json and trainer.safetensors."""
    _field(path, meta, "train_config", "an object")
    data = _field(path, meta, "data", "an object")
    _field(path, data, "sha256", "a string", "checkpoint.json: data")
    step = _field(path, meta, "step", "an integer")
    _field(path, meta, "metrics", "a list", required=False)
    _field(path, meta, "samples", "a list", required=False)
    _field(path, meta, "best_val_loss", "a number", required=False)
    if not isinstance(tj, dict):
        raise _bad(path, f"trainer.json holds {_json_type(tj)}, not an object")
    if _field(path, tj, "step", "an integer", "trainer.json") != step:
        raise _bad(path, f"trainer.json is at step {tj['step']}, checkpoint.json at step {step}")
    lr_scale = _field(path, tj, "lr_scale", "a number", "trainer.json")
    if not (lr_scale > 0 and math.isfinite(lr_scale)):
        raise _bad(path, f"trainer.json: lr_scale is {lr_scale}, not a positive number")
    if (_field(path, tj, "rollbacks", "an integer", "trainer.json", required=False) or 0) < 0:
        raise _bad(path, "trainer.json: rollbacks is negative")
    opt = _field(path, tj, "optimizer", "an object", "trainer.json")
    groups = _field(path, opt, "param_groups", "a list", "trainer.json: optimizer")
    if not groups or not all(isinstance(g, dict) for g in groups):
        raise _bad(path, "trainer.json: optimizer.param_groups is not a list of objects")
    _field(path, opt, "scalars", "an object", "trainer.json: optimizer", required=False)
    rng = tensors.get("rng.cpu")
    if rng is None or rng.dtype != torch.uint8 or rng.dim() != 1:
        raise _bad(path, "trainer.safetensors lacks the random generator's state (rng.cpu)")


def load(path: str | Path, which: str = "best", device: str | torch.device = "cpu",
         with_trainer: bool = False) -> Checkpoint:
    """Load and verify a checkpoint (hashes, keys, shapes); the model comes back in eval mode, float32."""
    p = resolve(path, which)
    meta = verify(p)
    cfg = ModelConfig(**meta["model_config"])
    vocab = Vocab.from_json(meta["vocab"])
    try:
        weights = load_file(str(p / "model.safetensors"))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise _bad(p, f"model.safetensors: {str(e).splitlines()[0][:200] or type(e).__name__}") from None
    _check_weights(p, cfg, weights)
    model = CharRNN(cfg)
    try:
        model.load_state_dict({k: v.float() for k, v in weights.items()})
    except (RuntimeError, ValueError) as e:
        raise _bad(p, f"model.safetensors: {str(e).splitlines()[0][:200] or type(e).__name__}") from None
    model.to(device).eval()
    ck = Checkpoint(path=p, meta=meta, model=model, vocab=vocab)
    if with_trainer:
        if not all((p / name).exists() for name in TRAINER_FILES):
            raise ProbeError(f"checkpoint {p} holds no trainer state (a shipped copy?): it cannot be resumed")
        try:
            ck.trainer_tensors = load_file(str(p / "trainer.safetensors"))
        except (SafetensorError, OSError, RuntimeError, ValueError) as e:
            raise _bad(p, f"trainer.safetensors: {str(e).splitlines()[0][:200] or type(e).__name__}") from None
        try:
            ck.trainer_json = json.loads((p / "trainer.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _bad(p, "trainer.json is not valid JSON") from None
        _check_trainer(p, meta, ck.trainer_json, ck.trainer_tensors)
    return ck


def export(source: str | Path, dest: str | Path, half: bool = True, which: str = "best") -> Path:
    """A lean copy for shipping: weights (float16 by default) and checkpoint.json, no trainer state."""
    ck = load(source, which=which)
    meta = {k: v for k, v in ck.meta.items() if k not in ("files", "format", "version", "saved_at")}
    meta["exported_from"] = {"path": str(ck.path), "step": ck.meta.get("step"),
                             "dtype": "float16" if half else "float32"}
    save(Path(dest), ck.model, meta, dtype=torch.float16 if half else torch.float32)
    return Path(dest)
