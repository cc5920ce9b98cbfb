"""Write analyses/compare/README.md: where the shipped models beat their n-grams, and their error breakdown,
beside the numbers of Karpathy, Johnson & Fei-Fei (2015).

    python scripts/compare_readme.py analyses        # after scripts/compare_analyses.sh

Reads analyses/<model>/compare-ngram<N>/compare.json (`probe compare`) and analyses/<model>/errors/errors.json
(`probe errors`) for every model folder that has them; the best n-gram of a model is the order with the
lower bits per character on its validation split.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

# "Visualizing and Understanding Recurrent Networks" (arXiv 1506.02078): War and Peace, test split.
PAPER_BPC = {"LSTM": 1.077 / math.log(2), "20-gram": 1.195 / math.log(2)}  # 1.077 and 1.195 nats/char
PAPER_ERRORS = {"error rate": 0.42, "n-gram": 0.18, "dynamic memory": 0.06, "rare words": 0.09,
                "word model": 0.37}  # 140K errors of 330K characters; shares of the errors
GROUPS = ["n-gram", "dynamic memory", "rare words", "word model", "punctuation", "boost", "remaining"]


def _load(folder: Path) -> dict:
    out = {"compare": {}, "errors": None}
    for p in sorted(folder.glob("compare-ngram*/compare.json")):
        out["compare"][int(p.parent.name.removeprefix("compare-ngram"))] = json.loads(p.read_text())
    e = folder / "errors" / "errors.json"
    if e.exists():
        out["errors"] = json.loads(e.read_text())
    return out


def _best(compare: dict) -> tuple[int, dict]:
    return min(compare.items(), key=lambda kv: kv[1]["summary"][0]["bpc_b"])


def _ci(row: dict) -> str:
    return f"{row['delta_bpc']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"


def overall_lines(models: dict) -> list[str]:
    lines = ["| model | text | characters | model bits/char | " + " | ".join(
        f"{n}-gram" for n in sorted({n for m in models.values() for n in m["compare"]})) + " | Δ vs best n-gram |",
        "|---|---|---:|---:|" + "---:|" * len({n for m in models.values() for n in m["compare"]}) + "---:|"]
    orders = sorted({n for m in models.values() for n in m["compare"]})
    for name, m in models.items():
        if not m["compare"]:
            continue
        n, best = _best(m["compare"])
        row = best["summary"][0]
        cells = [f"{m['compare'][k]['summary'][0]['bpc_b']:.3f}" if k in m["compare"] else "" for k in orders]
        lines.append(f"| {name} | {best['text']} | {row['n_chars']:,} | {row['bpc_a']:.3f} | " + " | ".join(cells)
                     + f" | {_ci(row)} ({n}-gram) |")
    a, b = PAPER_BPC["LSTM"], PAPER_BPC["20-gram"]
    cells = [f"{b:.3f}" if k == 20 else "" for k in orders]
    lines.append(f"| paper: best LSTM | War and Peace, test split | 330K | {a:.3f} | " + " | ".join(cells)
                 + f" | {b - a:+.3f} (20-gram: {b:.3f}) |")
    return lines


def concept_lines(name: str, n: int, cmp: dict) -> list[str]:
    rows = [r for r in cmp["summary"] if r["region"] != "all"]
    lines = [f"**{name}** against its {n}-gram (Δ bits/char, 95% block-bootstrap interval; > 0: the model wins):", "",
             "| region | inside: characters | inside: Δ | outside: Δ |", "|---|---:|---:|---:|"]
    by = {}
    for r in rows:
        by.setdefault(r["region"], {})[r["where"]] = r
    rows_out = [f"| {region} | {d['inside']['n_chars']:,} | {_ci(d['inside'])} | {_ci(d['outside'])} |"
                for region, d in by.items() if "inside" in d and "outside" in d]
    if not rows_out:
        return [f"**{name}**: no built-in concept occurs in its text (both inside and outside)."]
    return lines + rows_out


def wins_lines(name: str, n: int, cmp: dict, k: int = 6) -> list[str]:
    df = pd.DataFrame(cmp["by_char"])
    fmt = lambda d: ", ".join(f"`{c!r}` {t:+,.0f} bits ({m:+.2f}/char, n={c_n:,})" for c, t, m, c_n in
                              zip(d["char"], d["delta_bits_total"], d["delta_bits_mean"], d["n"]))
    return [f"- {name}, model wins most on: {fmt(df.head(k))}",
            f"- {name}, {n}-gram wins most on: {fmt(df.tail(k).iloc[::-1])}"]


def long_range_lines(name: str, n: int, cmp: dict) -> list[str]:
    df = pd.DataFrame(cmp["long_range"])
    if df.empty:
        return [f"{name}: no matched openers and closers."]
    lines = [f"**{name}**: mean probability of the closer, model / {n}-gram, by distance to its opener "
             "(characters; n pairs):", "", "| kind | " + " | ".join(df[df.kind == "all"].distance) + " |",
             "|---|" + "---:|" * int((df.kind == "all").sum())]
    bins = list(df[df.kind == "all"].distance)
    for kind in list(dict.fromkeys(df.kind)):
        sub = df[df.kind == kind].set_index("distance")
        if sub.n.sum() < 30:
            continue
        cells = [f"{sub.p_a[b]:.2f} / {sub.p_b[b]:.2f} ({int(sub.n[b]):,})" if b in sub.index else "" for b in bins]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def errors_lines(models: dict) -> list[str]:
    names = [n for n, m in models.items() if m["errors"]]
    lines = ["| | " + " | ".join(names) + " | paper (best LSTM, War and Peace) |",
             "|---|" + "---:|" * (len(names) + 1)]
    rate = [f"{models[n]['errors']['error_rate']:.1%} ({models[n]['errors']['n_errors']:,})" for n in names]
    lines.append("| errors (p < 0.5) / characters | " + " | ".join(rate) + f" | {PAPER_ERRORS['error rate']:.0%} "
                 "(140K) |")
    for g in GROUPS:
        cells = []
        for n in names:
            share = sum(c["share"] for c in models[n]["errors"]["classes"] if c["group"] == g)
            cells.append(f"{share:.1%}")
        paper = f"{PAPER_ERRORS[g]:.0%}" if g in PAPER_ERRORS else \
            ("30% with boost (the rest)" if g == "punctuation" else "")
        lines.append(f"| {g} | " + " | ".join(cells) + f" | {paper} |")
    return lines


RANGES = (("up to 10", 1, 10), ("11-100", 11, 100), ("over 100", 101, 10 ** 9))


def _range_p(df: pd.DataFrame, lo: int, hi: int) -> tuple[float, float, int]:
    """Pair-weighted mean closer probability (model, n-gram) over the distance bins inside [lo, hi]."""
    first = df.distance.str.extract(r"^(\d+)")[0].astype(int)
    sub = df[(df.kind == "all") & (first >= lo) & (first <= hi)]
    n = int(sub.n.sum())
    if n == 0:
        return float("nan"), float("nan"), 0
    return float((sub.p_a * sub.n).sum() / n), float((sub.p_b * sub.n).sum() / n), n


def summary_lines(models: dict) -> list[str]:
    lines = []
    for name, m in models.items():
        if not m["compare"]:
            continue
        n, best = _best(m["compare"])
        row = best["summary"][0]
        line = (f"- **{name}**: the model beats its best n-gram ({n}-gram, {row['bpc_b']:.3f} bits/char) by "
                f"{_ci(row)} bits/char, {row['delta_bpc'] / row['bpc_b']:.1%} of the n-gram's bits")
        ins = [r for r in best["summary"] if r["where"] == "inside"]
        if ins:
            hi, lo = max(ins, key=lambda r: r["delta_bpc"]), min(ins, key=lambda r: r["delta_bpc"])
            line += (f"; most inside `{hi['region']}` ({hi['delta_bpc']:+.3f}), least inside `{lo['region']}` "
                     f"({_ci(lo)})")
        df = pd.DataFrame(best["long_range"])
        if len(df):
            parts = []
            for label, a, b in RANGES:
                pa, pb, k = _range_p(df, a, b)
                if k:
                    parts.append(f"{label}: {pa:.2f} vs {pb:.2f} ({k:,} pairs)")
            line += "; closers at a distance of " + ", ".join(parts) + " (mean probability, model vs n-gram)"
        if m["errors"]:
            e = m["errors"]
            groups = {}
            for c in e["classes"]:
                groups[c["group"]] = groups.get(c["group"], 0.0) + c["share"]
            top = max(groups, key=groups.get)
            line += f"; {e['error_rate']:.1%} of its characters are errors, most of them {top} ({groups[top]:.1%})"
        lines.append(line + ".")
    a, b = PAPER_BPC["LSTM"], PAPER_BPC["20-gram"]
    lines.append(f"- **paper** (best LSTM, War and Peace): it beats the 20-gram by {b - a:+.3f} bits/char, "
                 f"{(b - a) / b:.1%} of the n-gram's bits, an advantage the paper traces to long-range structure "
                 f"(e.g. closing braces far from their openers, in the Linux source); "
                 f"{PAPER_ERRORS['error rate']:.0%} of its characters are errors, most of them word model "
                 f"({PAPER_ERRORS['word model']:.0%}).")
    return lines


def build(root: Path) -> str:
    models = {p.name: _load(p) for p in sorted(root.iterdir()) if p.is_dir() and p.name != "compare"}
    models = {k: v for k, v in models.items() if v["compare"] or v["errors"]}
    if not models:
        raise SystemExit(f"no compare-ngram*/ or errors/ folders under {root}: run scripts/compare_analyses.sh")
    out = ["# Where the shipped models beat their n-grams", "",
           "Made by `scripts/compare_analyses.sh` (`probe compare MODEL ngram:N` and `probe errors MODEL` on each "
           "model's validation split; modified Kneser-Ney n-grams fitted on the same model's training split) and "
           "`scripts/compare_readme.py`. Δ = bits(n-gram) − bits(model) per UTF-8 character: positive where the "
           "model wins. The paper's numbers are Karpathy, Johnson & Fei-Fei (2015), \"Visualizing and "
           "Understanding Recurrent Networks\": a larger LSTM trained on War and Peace (3.2 MB), converted from "
           "nats to bits where needed. Our models, corpora and n-gram smoothing differ from theirs: the numbers "
           "compare in kind, not digit for digit.", "", "## In short", ""]
    out += summary_lines(models)
    out += ["", "## Overall", ""]
    out += overall_lines(models)
    out += ["", "## Inside and outside concepts", ""]
    for name, m in models.items():
        if m["compare"]:
            n, best = _best(m["compare"])
            out += concept_lines(name, n, best) + [""]
    out += ["## Where each side wins", ""]
    for name, m in models.items():
        if m["compare"]:
            n, best = _best(m["compare"])
            out += wins_lines(name, n, best)
    out += ["", "## Long-range structure", ""]
    for name, m in models.items():
        if m["compare"]:
            n, best = _best(m["compare"])
            out += long_range_lines(name, n, best) + [""]
    if any(m["errors"] for m in models.values()):
        out += ["## Error breakdown", "",
                "Each error (the character gets probability below 0.5) counts in the first class whose oracle "
                "removes it, in the paper's order (`probe errors --help` defines every class). The paper's text "
                "gives the shares of the n-gram, dynamic memory, rare words and word model oracles; punctuation and "
                "boost share the rest.", ""]
        out += errors_lines(models)
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "analyses")
    text = build(root)
    dest = root / "compare" / "README.md"
    dest.parent.mkdir(exist_ok=True)
    tmp = dest.with_name(".README.md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(dest)
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
