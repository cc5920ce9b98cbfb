"""probe models: the shipped models (usable by name anywhere probe is installed) and their cards' numbers."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from probe import resources
from probe.errors import ProbeError

NAME = "models"
HELP = "list the models shipped with probe (usable by name: probe record wiki) and their cards' numbers"
DESCRIPTION = """List the models that ship inside probe. Each works by name wherever probe is installed:
`probe record wiki`, `probe sample shakespeare` (a folder of the same name in the current directory wins).
Numbers come from each model's card.json (bits per character on its validation and test splits, and the
compression and n-gram baselines on the same test split) and checkpoint.json.

examples:
  probe models
  probe models --json
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the list as JSON")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ProbeError(f"cannot read {path}: {e}") from None


def describe(name: str) -> dict:
    """One shipped model: architecture, size and its card's numbers, as a JSON-ready dict."""
    folder = resources.shipped_model_path(name)
    if folder is None:
        raise ProbeError(f"no shipped model named {name} (shipped: {', '.join(resources.shipped_models()) or 'none'})")
    meta = _read_json(folder / resources.MODEL_FILE)
    card = _read_json(folder / resources.CARD_FILE) if (folder / resources.CARD_FILE).is_file() else {}
    cfg = meta.get("model_config", {})
    weights = sum(folder.joinpath(f).stat().st_size for f in meta.get("files", {}) if folder.joinpath(f).is_file())
    baselines = [b for b in card.get("baselines", []) if "this model" not in str(b.get("method", ""))]
    best = min(baselines, key=lambda b: b.get("bits_per_char", float("inf")), default=None)
    return {
        "name": name,
        "path": str(folder),
        "cell": cfg.get("model"),
        "num_layers": cfg.get("num_layers"),
        "rnn_size": cfg.get("rnn_size"),
        "params": meta.get("num_params"),
        "vocab": (meta.get("vocab") or {}).get("kind"),
        "vocab_size": cfg.get("vocab_size"),
        "corpus": (meta.get("data") or {}).get("corpus"),
        "weights_bytes": weights,
        "weights_dtype": (meta.get("exported_from") or {}).get("dtype"),
        "val_bits_per_char": (card.get("val") or {}).get("bits_per_char"),
        "test_bits_per_char": (card.get("test") or {}).get("bits_per_char"),
        "best_baseline": best,
    }


def _num(x, fmt: str) -> str:
    return format(x, fmt) if isinstance(x, (int, float)) else "-"


def run(args: argparse.Namespace) -> int:
    rows = [describe(name) for name in resources.shipped_models()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no shipped models in this installation of probe", file=sys.stderr)
        return 0
    head = ["name", "model", "params", "vocab", "weights", "val bpc", "test bpc", "best baseline (test)"]
    table = [head]
    for r in rows:
        arch = f"{(r['cell'] or '?').upper()} {r['num_layers']}x{r['rnn_size']}"
        base = r["best_baseline"]
        table.append([r["name"], arch, _num(r["params"], ","), f"{r['vocab']} ({r['vocab_size']})",
                      f"{r['weights_bytes'] / 1e6:.1f} MB {r['weights_dtype'] or ''}".rstrip(),
                      _num(r["val_bits_per_char"], ".3f"), _num(r["test_bits_per_char"], ".3f"),
                      f"{_num(base['bits_per_char'], '.3f')} {base['method']}" if base else "-"])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print("\nUse one by name: probe record wiki --text '...', probe sample shakespeare, probe dashboard REC.")
    return 0
