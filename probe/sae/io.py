"""An SAE's folder, in the layout SAELens users know, written whole or not at all.

    sae_weights.safetensors   W_enc (d_in, d_sae), b_enc, W_dec (d_sae, d_in), b_dec (float32)
    cfg.json                  SAELens-style config: architecture "topk", d_in, d_sae, k, hook_name "L2.h", ...
    probe.json                format, the site, the source (the model's weights sha256, cell, sizes, the
                              recording or stream), how it was trained, per-epoch history
    metrics.json              held-out metrics (FVU, mean L0, dead/dense features, loss recovered)
    sparsity.safetensors      "sparsity": log10 of each feature's firing frequency on the held-out rows
    trainer.safetensors       resume state: Adam moments and steps, rows since each latent last fired
    trainer.json              resume state: step, epochs done, the settings a resumed run must match

A save writes a hidden temporary folder beside the target, then renames the old folder away, the new one in,
and deletes the old: a kill at any moment leaves the previous complete folder (or its hidden copy), never a
half-written one under the target's name.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from probe.errors import ProbeError
from probe.files import fsync_file
from probe.names import Site, parse_array
from probe.sae.model import TopKSAE

FORMAT = "probe-sae"
VERSION = 1
WEIGHTS, CFG, PROBE, METRICS, SPARSITY = ("sae_weights.safetensors", "cfg.json", "probe.json", "metrics.json",
                                          "sparsity.safetensors")
TRAINER_TENSORS, TRAINER_JSON = "trainer.safetensors", "trainer.json"
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


@dataclass
class LoadedSAE:
    """An SAE read from its folder: the model (eval, float32, cpu) and what it was trained on."""

    sae: TopKSAE
    site: Site
    source: dict
    name: str
    path: Path
    metrics: dict | None
    cfg: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)

    @property
    def hook_name(self) -> str:
        return self.site.array

    def to_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "site": self.site.label, "d_in": self.sae.d_in,
                "d_sae": self.sae.d_sae, "k": self.sae.k, "source": self.source, "train": self.train,
                "metrics": self.metrics}


def _json(obj) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def sae_cfg(sae: TopKSAE, site: Site, source: dict) -> dict:
    """The SAELens-style cfg.json."""
    return {"architecture": "topk", "d_in": sae.d_in, "d_sae": sae.d_sae, "k": sae.k,
            "activation_fn_str": "topk", "activation_fn_kwargs": {"k": sae.k}, "apply_b_dec_to_input": True,
            "normalize_activations": "none", "hook_name": site.array, "hook_layer": site.layer, "hook_head_index": None,
            "dtype": "float32", "device": "cpu", "model_name": source.get("model_name"),
            "model_class_name": f"probe.CharRNN({source.get('cell')})", "prepend_bos": False,
            "dataset_path": source.get("recording") or source.get("checkpoint"), "context_size": None,
            "finetuning_scaling_factor": False, "sae_lens_training_version": None}


def _clean_leftovers(dest: Path) -> None:
    """Remove the temporary and old copies of `dest` left by processes that no longer run (killed mid-save)."""
    import re

    import psutil
    pattern = re.compile(rf"^\.{re.escape(dest.name)}\.(?:tmp|old)-(\d+)$")
    for p in dest.parent.glob(f".{dest.name}.*-*"):
        m = pattern.match(p.name)
        if m and p.is_dir() and (int(m.group(1)) == os.getpid() or not psutil.pid_exists(int(m.group(1)))):
            shutil.rmtree(p, ignore_errors=True)


def _swap_in(tmp: Path, dest: Path) -> None:
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def save_sae(folder: str | Path, sae: TopKSAE, *, site: Site, source: dict, train_info: dict,
             metrics: dict | None = None, sparsity: torch.Tensor | None = None,
             trainer: tuple[dict[str, torch.Tensor], dict] | None = None) -> Path:
    """Write the SAE folder `folder` atomically (replacing an existing one); returns its path.

    trainer: (tensors, json) of the resume state, or None (a folder without it cannot be resumed).
    """
    dest = Path(folder)
    if dest.exists() and not dest.is_dir():
        raise ProbeError(f"cannot write the SAE to {dest}: it is a file")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _clean_leftovers(dest)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        tmp.mkdir()
    except OSError as e:
        raise ProbeError(f"cannot write the SAE to {dest}: {e.strerror or e}") from None
    try:
        files = {WEIGHTS: None, CFG: None, PROBE: None}
        save_file({p: getattr(sae, p).detach().float().contiguous().cpu() for p in PARAMS}, str(tmp / WEIGHTS),
                  metadata={"format": FORMAT})
        (tmp / CFG).write_text(_json(sae_cfg(sae, site, source)), encoding="utf-8")
        (tmp / PROBE).write_text(_json({"format": FORMAT, "version": VERSION, "site": site.label, "source": source,
                                        "train": train_info}), encoding="utf-8")
        if metrics is not None:
            (tmp / METRICS).write_text(_json(metrics), encoding="utf-8")
            files[METRICS] = None
        if sparsity is not None:
            save_file({"sparsity": sparsity.float().contiguous()}, str(tmp / SPARSITY))
            files[SPARSITY] = None
        if trainer is not None:
            save_file({k: v.contiguous() for k, v in trainer[0].items()}, str(tmp / TRAINER_TENSORS))
            (tmp / TRAINER_JSON).write_text(_json(trainer[1]), encoding="utf-8")
            files[TRAINER_TENSORS] = files[TRAINER_JSON] = None
        for name in files:
            fsync_file(tmp / name)
        _swap_in(tmp, dest)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise ProbeError(f"cannot write the SAE to {dest}: {e.strerror or e}") from None
        raise
    return dest


def _read_json(path: Path, what: str) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProbeError(f"{path.parent} is not an SAE folder (no {path.name})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ProbeError(f"{path} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProbeError(f"{path} holds no {what} (not a JSON object)")
    return obj


def _int_field(cfg: dict, key: str, path: Path) -> int:
    v = cfg.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ProbeError(f"{path}: {key} is {json.dumps(v)[:30]}, not a positive integer")
    return v


def load_sae(folder: str | Path) -> LoadedSAE:
    """Read an SAE folder; a ProbeError (one line) when it is missing or not a complete, consistent SAE."""
    path = Path(folder)
    if not path.exists():
        raise ProbeError(f"no such SAE folder: {folder}")
    if not path.is_dir():
        raise ProbeError(f"{folder} is not an SAE folder (a file)")
    cfg = _read_json(path / CFG, "SAE config")
    info = _read_json(path / PROBE, "probe SAE description")
    if info.get("format") != FORMAT:
        raise ProbeError(f"{path / PROBE} is not a probe SAE description (format {info.get('format')!r})")
    if info.get("version") != VERSION:
        raise ProbeError(f"SAE {path} has format version {info.get('version')}; this probe reads {VERSION}")
    if cfg.get("architecture") != "topk":
        raise ProbeError(f"{path / CFG}: architecture {cfg.get('architecture')!r}; probe reads top-k SAEs only")
    d_in, d_sae, k = (_int_field(cfg, key, path / CFG) for key in ("d_in", "d_sae", "k"))
    if k > d_sae:
        raise ProbeError(f"{path / CFG}: k is {k}, more than d_sae {d_sae}")
    try:
        site = parse_array(str(info.get("site")))
    except ProbeError:
        raise ProbeError(f"{path / PROBE}: site {info.get('site')!r} is not a site like L2.h") from None
    if cfg.get("hook_name") != site.array:
        raise ProbeError(f"{path}: cfg.json's hook_name {cfg.get('hook_name')!r} is not probe.json's site {site}")
    source = info.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("weights_sha256"), str):
        raise ProbeError(f"{path / PROBE}: source lacks the model's weights_sha256")
    try:
        weights = load_file(str(path / WEIGHTS))
    except FileNotFoundError:
        raise ProbeError(f"{path} is not an SAE folder (no {WEIGHTS})") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise ProbeError(f"{path / WEIGHTS} is not a readable safetensors file ({str(e)[:80]})") from None
    sae = TopKSAE(d_in, d_sae, k)
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for name, shape in shapes.items():
        t = weights.get(name)
        if t is None:
            raise ProbeError(f"{path / WEIGHTS} lacks {name}")
        if tuple(t.shape) != shape or not t.is_floating_point():
            raise ProbeError(f"{path / WEIGHTS}: {name} is {t.dtype} {tuple(t.shape)}, not floating point {shape}")
        if not torch.isfinite(t).all():
            raise ProbeError(f"{path / WEIGHTS}: {name} holds NaN or infinite values")
        getattr(sae, name).data.copy_(t.float())
    sae.eval().requires_grad_(False)
    metrics = _read_json(path / METRICS, "metrics") if (path / METRICS).exists() else None
    return LoadedSAE(sae=sae, site=site, source=source, name=path.resolve().name, path=path, metrics=metrics,
                     cfg=cfg, train=info.get("train") if isinstance(info.get("train"), dict) else {})


def load_trainer(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The resume state of an SAE folder, or None when it has none."""
    path = Path(folder)
    if not (path / TRAINER_JSON).exists() or not (path / TRAINER_TENSORS).exists():
        return None
    meta = _read_json(path / TRAINER_JSON, "trainer state")
    try:
        tensors = load_file(str(path / TRAINER_TENSORS))
    except (SafetensorError, OSError, ValueError) as e:
        raise ProbeError(f"{path / TRAINER_TENSORS} is not a readable safetensors file ({str(e)[:80]})") from None
    return tensors, meta


def check_compatible(loaded: LoadedSAE, rec) -> None:
    """Refuse (ProbeError) an SAE whose site is not in the recording `rec`, or that was trained on another
    model's states (weights sha256) or another layer width."""
    site = loaded.site
    if not rec.has(site.array):
        raise ProbeError(f"the SAE {loaded.name} reads {site}, which recording {rec.path.name} does not hold")
    ours = loaded.source.get("weights_sha256")
    theirs = (rec.meta.get("checkpoint") or {}).get("sha256")
    if ours != theirs:
        raise ProbeError(f"the SAE {loaded.name} was trained on the states of model {str(ours)[:12]}, "
                         f"recording {rec.path.name} is of model {str(theirs)[:12]}")
    if rec.hidden_size != loaded.sae.d_in:
        raise ProbeError(f"the SAE {loaded.name} reads {loaded.sae.d_in} units, recording {rec.path.name}'s "
                         f"{site} has {rec.hidden_size}")
