"""Where probe's package data lies: the bundled corpora, the shipped models and the dashboard's assets.

The one place that finds them. An installed probe (a wheel, `pip install .`) holds them as package data,
found with importlib.resources: `probe.shipped.corpora` (the repository's `data/`), `probe.shipped.models`
(`trained_models/`: each model's weights, checkpoint.json, card.json, README.md) and `dashboards/assets`.
A source tree without that mapping (a checkout on PYTHONPATH, an editable install) has them at the
repository's top instead: they are taken from there only when the package holds none and the package
lies in a checkout (a folder with pyproject.toml beside `probe/`). Bottom layer: stdlib only.
"""
from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

from probe.errors import ProbeError

MODELS_PACKAGE = "probe.shipped.models"
CORPORA_PACKAGE = "probe.shipped.corpora"
ASSETS_PACKAGE = "dashboards"
CHECKOUT_DIRS = {MODELS_PACKAGE: "trained_models", CORPORA_PACKAGE: "data"}  # where a checkout keeps them
MODEL_FILE = "checkpoint.json"  # a folder holding it is a shipped model
CARD_FILE = "card.json"
CORPUS_PREFIX = "data/"  # how a checkpoint stores a bundled corpus: data/<file> (portable across installs)


def _as_dir(resource) -> Path | None:
    """A Traversable as a real folder on disk (an unpacked install or a checkout), else None."""
    paths = getattr(resource, "_paths", None)  # a namespace package's MultiplexedPath
    for candidate in (paths or [resource]):
        try:
            p = Path(str(candidate))
        except TypeError:
            continue
        if p.is_dir():
            return p
    return None


def _package_dir(package: str) -> Path | None:
    """The folder of `package` through importlib.resources, or None when it is not installed."""
    try:
        return _as_dir(importlib.resources.files(package))
    except (ModuleNotFoundError, TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=None)
def source_root() -> Path | None:
    """The repository's top when probe runs from a checkout (pyproject.toml beside probe/), else None."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "probe" / "resources.py").is_file() else None


@functools.lru_cache(maxsize=None)
def _data_dir(package: str) -> tuple[Path | None, str]:
    """(folder, "package" | "checkout") of a data package, or (None, "missing")."""
    found = _package_dir(package)
    if found is not None:
        return found, "package"
    root = source_root()
    if root is not None and (root / CHECKOUT_DIRS[package]).is_dir():
        return root / CHECKOUT_DIRS[package], "checkout"
    return None, "missing"


def origin() -> dict[str, str]:
    """Where each kind of data is taken from: {"models": "package" | "checkout" | "missing", ...}."""
    return {"models": _data_dir(MODELS_PACKAGE)[1], "corpora": _data_dir(CORPORA_PACKAGE)[1],
            "assets": "package" if _package_dir(ASSETS_PACKAGE) else "missing"}


def corpora_dir() -> Path | None:
    """The folder of the bundled corpora, or None when this install holds none."""
    return _data_dir(CORPORA_PACKAGE)[0]


def corpus_path(filename: str) -> Path:
    """The bundled corpus file `filename` (e.g. "tinyshakespeare.txt.bz2"); ProbeError when it is not here."""
    folder = corpora_dir()
    if folder is None or not (folder / filename).is_file() or Path(filename).name != filename:
        raise ProbeError(f"bundled corpus {filename} is not in this installation of probe")
    return folder / filename


def models_dir() -> Path | None:
    """The folder of the shipped models, or None when this install holds none."""
    return _data_dir(MODELS_PACKAGE)[0]


def shipped_models() -> list[str]:
    """Names of the shipped models (`wiki`, `shakespeare`), sorted; SAE folders (`sae-*`) are not models."""
    folder = models_dir()
    if folder is None:
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith((".", "sae-")) and (p / MODEL_FILE).is_file())


def shipped_model_path(name: str) -> Path | None:
    """The folder of the shipped model `name`, or None when there is no such shipped model."""
    if name not in shipped_models():
        return None
    return models_dir() / name


def dashboard_assets_dir() -> Path:
    """The dashboard's assets folder (probe_text.js, probe.css)."""
    root = _package_dir(ASSETS_PACKAGE)
    if root is None or not (root / "assets").is_dir():
        raise ProbeError("the dashboard's assets are not in this installation of probe (dashboards/assets)")
    return root / "assets"
