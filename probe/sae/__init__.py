"""Sparse autoencoders on a recurrent model's states: the model (`model`), its training (`train`, `step`,
`data`), its folder (`io`) and its metrics (`metrics`: FVU, L0, dead/dense features, loss recovered).

Light to import: the names below load their module (and torch) on first use.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"TopKSAE": "model", "train_sae": "train", "SAETrainResult": "train", "save_sae": "io",
            "load_sae": "io", "LoadedSAE": "io", "check_compatible": "io", "held_out_metrics": "metrics",
            "loss_recovered": "metrics", "reconstruct_hook": "metrics"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"probe.sae.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'probe.sae' has no attribute {name!r}")
