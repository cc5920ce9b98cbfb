"""Ablate the units that `make analyses` finds on the shipped models and write analyses/ablation/.

    .venv/bin/python scripts/ablation_analyses.py                    # 20k characters of each validation split
    .venv/bin/python scripts/ablation_analyses.py --cases 6,7,8      # only these (results are merged)
    .venv/bin/python scripts/ablation_analyses.py --chars 10000 --out /tmp/ablation
    .venv/bin/python scripts/ablation_analyses.py --readme-only       # rewrite README.md from ablation.json

Each unit (or pair of units) is held at its mean over the text (`probe.analysis.ablate.ablate`, mode mean)
with the concept it tracks, against K random units of the same layer and kind. Writes ablation.json
(every result), ablation.csv (one row per held set) and README.md (the table and one sentence per unit),
after every case; a rerun with the same settings skips the cases already there.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe.runtime.threads import apply_thread_policy  # noqa: E402

apply_thread_policy()  # as the `probe` command runs: CPU thread policy before torch loads

# (model, units held together, concept given to ablate, concept whose held-out score says it tracks it, why)
CASES = [
    ("wiki", ["L2.c.502"], "wiki-link", "wiki-link", "the [[wiki link]] cell"),
    ("wiki", ["L0.c.260"], "url", "url", "the best URL unit"),
    ("wiki", ["L1.c.382"], "url", "url", "the second URL unit"),
    ("wiki", ["L0.c.260", "L1.c.382"], "url", "url", "both URL units together"),
    ("wiki", ["L0.c.136"], "xml-tag", "xml-tag", "the XML tag cell"),
    ("wiki", ["L2.c.93"], "quote", "quote", "the quote cell"),
    ("shakespeare", ["L0.c.306"], r"\n", "column", "the column unit (line ends: predicting the newline)"),
    ("shakespeare", ["L0.c.126"], r"\n", "column", "the line counter (line ends: predicting the newline)"),
    ("shakespeare", ["L0.c.306", "L0.c.126"], r"\n", "column", "both line units together"),
]
FIELDS = ["model", "units", "concept", "tracks", "score", "metric", "delta_in", "lo_in", "hi_in", "delta_out",
          "lo_out", "hi_out", "delta_all", "null_median_in", "null_max_in", "rank", "n_random", "p_value",
          "base_bits", "inside", "symbols", "value", "seconds"]


def held_out_score(model: str, concept: str, units: list[str]) -> tuple[float | None, str]:
    """The units' held-out score for `concept` in analyses/<model>/tables (the best of them), if there."""
    path = ROOT / "analyses" / model / "tables" / f"{concept}-units.csv"
    if not path.is_file():
        return None, ""
    with path.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["unit"] in units]
    if not rows:
        return None, ""
    best = max(rows, key=lambda r: float(r["score"]))
    return float(best["score"]), best["metric"]


def run_case(model: str, units: list[str], concept: str, tracks: str, chars: int, k: int, seed: int) -> dict:
    from probe.analysis.ablate import ablate

    res = ablate(ROOT / "trained_models" / model, units, mode="mean", concept=concept, n_random=k,
                 max_chars=chars, seed=seed)
    t = res.table.iloc[0]
    null = res.table.delta_in.iloc[1:]
    score, metric = held_out_score(model, tracks, units)
    row = {"model": model, "units": " + ".join(units), "concept": concept, "tracks": tracks, "score": score,
           "metric": metric, "rank": res.rank, "n_random": res.n_random, "p_value": res.p_value,
           "base_bits": res.base_bits, "inside": int(res.inside[1:].sum()), "symbols": res.symbols,
           "value": " ".join(f"{v:.4g}" for v in res.values.values()), "seconds": round(res.seconds, 1),
           "null_median_in": float(null.median()) if len(null) else None,
           "null_max_in": float(null.max()) if len(null) else None}
    for col in ("delta_in", "lo_in", "hi_in", "delta_out", "lo_out", "hi_out", "delta_all"):
        row[col] = float(t[col])
    row["top"] = json.loads(res.top.head(5).to_json(orient="records"))
    row["text"] = res.extra.get("text")
    return row


def verdict(r: dict) -> str:
    """One honest sentence from the numbers."""
    pair = " + " in r["units"]
    name = f"`{r['units']}`" + (", held together," if pair else "")
    tracks = (f" track{'' if pair else 's'} `{r['tracks']}` (best held-out {r['metric']} {r['score']:.3f})"
              if r.get("score") is not None else f" {'were' if pair else 'was'} picked for `{r['tracks']}`")
    din, lo, hi, dout = r["delta_in"], r["lo_in"], r["hi_in"], r["delta_out"]
    k, rank = r["n_random"], r["rank"]
    beaten = "none of" if rank == 1 else f"only {rank - 1} of"
    also = (f" Outside it the loss rises by {dout:+.4f} [{r['lo_out']:+.4f}, {r['hi_out']:+.4f}]: the model uses "
            f"{'them' if pair else 'it'} a little, for something else." if r["lo_out"] > 0 and not lo > 0 else "")
    if r["p_value"] <= 0.05 and lo > 0:
        if dout > 0 and din < 3 * dout:
            return (f"{name}{tracks}, and the model uses {'them' if pair else 'it'}, but not specially for the "
                    f"concept: {din:+.3f} bits/char inside, {dout:+.3f} outside ({beaten} {k} random units cost "
                    f"as much inside).")
        return (f"{name}{tracks}, and the model uses {'them' if pair else 'it'} for it: held at the mean the loss "
                f"inside rises by {din:+.3f} bits/char [{lo:+.3f}, {hi:+.3f}] against {dout:+.3f} outside; "
                f"{beaten} the {k} random units of the layer cost as much.")
    if r["p_value"] <= 0.05:
        return (f"{name}{tracks}; held at the mean {'they rank' if pair else 'it ranks'} {rank} of {k + 1} "
                f"against random units (p = {r['p_value']:.2f}), but the effect inside, {din:+.4f} bits/char "
                f"[{lo:+.4f}, {hi:+.4f}], is within noise on this text: no clear evidence that the model needs "
                f"{'them' if pair else 'it'} for the concept.{also}")
    if lo > 0:
        return (f"{name}{tracks}, and holding {'them' if pair else 'it'} costs {din:+.3f} bits/char inside "
                f"[{lo:+.3f}, {hi:+.3f}], but random units of the layer cost as much (rank {rank} of {k + 1}, "
                f"p = {r['p_value']:.2f}).")
    return (f"{name}{tracks} but {'do' if pair else 'does'} not matter for it: held at the mean the loss inside "
            f"changes by {din:+.4f} bits/char [{lo:+.4f}, {hi:+.4f}] (rank {rank} of {k + 1}, p = "
            f"{r['p_value']:.2f}); whatever {'they mark' if pair else 'it marks'}, the model gets from other units too, or does not need for its predictions.{also}")


def _ci(r: dict, part: str) -> str:
    return f"{r[f'delta_{part}']:+.4f} [{r[f'lo_{part}']:+.4f}, {r[f'hi_{part}']:+.4f}]"


def readme(doc: dict) -> str:
    rows = doc["results"]
    head = ("# Ablation of the units that track concepts\n\n"
            "Generated by `scripts/ablation_analyses.py`. Each unit found by `make analyses` (see "
            "[../README.md](../README.md)) is held at its mean over the first "
            f"{doc['chars']:,} characters of its model's validation split at every step "
            "(`probe ablate MODEL --unit U --concept C --max-chars N`), and the change of loss is measured "
            "inside the concept and outside it, in bits per character (positive: the model predicts worse "
            "without the unit), with 95% block-bootstrap intervals (blocks of 256 characters). The null: "
            f"the same ablation of {doc['n_random']} random units of the same layer and kind; rank 1 is the "
            f"largest effect inside the concept, p = (C + 1) / (K + 1), so the smallest possible p is "
            f"{1 / (doc['n_random'] + 1):.3f}. For Shakespeare the concept is `\\n`: the effect on predicting "
            "the line breaks, which a line counter should inform. The mean over the text of a unit that marks a "
            "rare concept is close to its value outside the concept, so inside it the unit is held at its "
            "'outside' value: the test asks whether the model notices the concept without this unit.\n\n")
    table = ["| model | unit | concept | tracks it (held-out) | Δ inside [95% CI] | Δ outside [95% CI] | "
             "null median / max inside | rank | p |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        score = f"{r['metric']} {r['score']:.3f}" if r.get("score") is not None else ""
        concept = r["concept"]
        table.append(f"| {r['model']} | `{r['units']}` | `{concept}` ({r['inside']:,} chars) | {score} | "
                     f"{_ci(r, 'in')} | {_ci(r, 'out')} | {r['null_median_in']:+.4f} / {r['null_max_in']:+.4f} | "
                     f"{r['rank']} of {r['n_random'] + 1} | {r['p_value']:.3f} |")
    notes = ["", "## What each unit does for the model", ""]
    notes += [f"- {verdict(r)}" for r in rows]
    timing = sum(r["seconds"] for r in rows)
    notes += ["", f"Run time: {timing:,.0f} s for the {len(rows)} ablations ({doc['threads']} torch thread(s), "
                  f"on a shared 2-core CPU); per unit in `ablation.json` (`seconds`), with the characters "
                  "whose probability changed most (`top`). `ablation.csv` has one row per held set."]
    return head + "\n".join(table) + "\n" + "\n".join(notes) + "\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_all(out: Path, doc: dict) -> None:
    """ablation.csv, ablation.json and README.md from `doc` (each written atomically)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(doc["results"])
    write_atomic(out / "ablation.csv", buf.getvalue())
    write_atomic(out / "ablation.json", json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    write_atomic(out / "README.md", readme(doc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chars", type=int, default=20_000, help="characters of each validation split (default 20000)")
    ap.add_argument("--random", type=int, default=20, help="random units for the null (default 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", default=None, help="comma-separated case numbers to run (default: all; 0-based)")
    ap.add_argument("--out", default=str(ROOT / "analyses" / "ablation"))
    ap.add_argument("--readme-only", action="store_true", help="rewrite README.md from the folder's ablation.json")
    args = ap.parse_args()
    out = Path(args.out)
    if args.readme_only:
        write_all(out, json.loads((out / "ablation.json").read_text(encoding="utf-8")))
        return
    import torch

    out.mkdir(parents=True, exist_ok=True)
    chosen = range(len(CASES)) if args.cases is None else [int(c) for c in args.cases.split(",")]
    settings = {"chars": args.chars, "n_random": args.random, "seed": args.seed, "mode": "mean",
                "threads": torch.get_num_threads()}
    old = out / "ablation.json"
    doc = json.loads(old.read_text(encoding="utf-8")) if old.is_file() else {}
    if any(doc.get(k) != v for k, v in settings.items()):  # other settings: start afresh
        doc = {**settings, "results": []}
    done = {(r["model"], r["units"], r["concept"]) for r in doc["results"]}
    for i in chosen:
        model, units, concept, tracks, why = CASES[i]
        if (model, " + ".join(units), concept) in done:
            continue
        print(f"{model} {' + '.join(units)} ({why}) on {concept!r}...", flush=True)
        r = run_case(model, units, concept, tracks, args.chars, args.random, args.seed)
        print(f"  inside {_ci(r, 'in')}, outside {_ci(r, 'out')}, rank {r['rank']}, p {r['p_value']:.3f}, "
              f"{r['seconds']:.0f} s", flush=True)
        doc = json.loads(old.read_text(encoding="utf-8")) if old.is_file() else doc  # another run may have added
        if any(doc.get(k) != v for k, v in settings.items()):
            doc = {**settings, "results": []}
        doc["results"].append(r)
        order = {(m, " + ".join(u), c): j for j, (m, u, c, _, _) in enumerate(CASES)}
        doc["results"].sort(key=lambda x: order.get((x["model"], x["units"], x["concept"]), len(CASES)))
        write_all(out, doc)  # after every case: a long run keeps what it has
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
