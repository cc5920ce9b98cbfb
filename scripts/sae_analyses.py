"""Units against features for the shipped SAEs: `probe sae-compare` into analyses/sae-<model>/, then a PNG
heatmap of three features that neither a built-in concept nor a single unit matches (of the ten most variable
unexplained features, the three whose closest unit correlates least with them), around their top context.

    python scripts/sae_analyses.py            (after `make record` of both models; part of `make analyses`)
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe.runtime.threads import apply_thread_policy  # noqa: E402

apply_thread_policy()

from probe.cli.main import main  # noqa: E402

SAES = {"wiki": "sae-L2h", "shakespeare": "sae-L1h"}
N_FIGURES, SPAN = 3, 300


def run(*argv: str) -> None:
    code = main([str(a) for a in argv])
    if code:
        raise SystemExit(f"sae_analyses: probe {argv[0]} failed ({code})")


def analyse(model: str) -> None:
    rec, sae = ROOT / f"recordings/{model}-val", ROOT / f"trained_models/{model}/{SAES[model]}"
    out = ROOT / f"analyses/sae-{model}"
    shutil.rmtree(out, ignore_errors=True)
    run("sae-compare", rec, "--sae", sae, "--out", out)  # every built-in concept that occurs in the text
    doc = json.loads((out / "sae-compare.json").read_text(encoding="utf-8"))
    for f in sorted(doc["unexplained"], key=lambda f: f["closest_unit_r"])[:N_FIGURES]:
        row = int(f["top_rows"][0])
        start = max(0, row - SPAN // 2)
        run("heatmap", rec, "--sae", sae, "--unit", f["feature"], "--range", f"{start}:{start + SPAN}",
            "--out", out / f"{f['feature'].replace('.', '_')}.png")


if __name__ == "__main__":
    for m in sys.argv[1:] or list(SAES):
        analyse(m)
