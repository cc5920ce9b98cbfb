"""One-command reports: a self-contained offline HTML page, each figure as PNG and SVG, each table as CSV.

    build_report("recordings/wiki-val", ["url", "wiki-link", "column"], "analyses/wiki-report")

The report is built in a temporary folder beside `out` and renamed into place
at the end: an interrupted or failed report leaves nothing half-written.
Sections: model card and training curve (from the checkpoint named in the
recording), bits per character on the recorded text, and per concept the top
units (held-out score, chance level, p-value), their text heatmaps on a passage
of the held-out part where the concept occurs, a units x characters view, the
probe figure and sparse-probe curve; then gate saturation and an embedding.
"""
from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from probe.checks import ParamError, check_at_least, check_choice
from probe.errors import ProbeError
from probe.figures.export import figure_html, write_figures
from probe.figures import (embedding_figure, probe_figure, samples_table, saturation_figure, sparse_figure,
                           text_heatmap, training_curve, unit_heatmap)
from probe.names import parse_unit
from probe.record.recording import Recording

LN2 = math.log(2)


@dataclass
class Report:
    """What a report holds while it is built: sections of HTML, figures and tables by file name."""

    title: str
    sections: list[tuple[str, str, str]] = field(default_factory=list)  # (anchor, heading, html)
    figures: list[tuple[str, go.Figure]] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def slug(self, name: str) -> str:
        """A file-name-safe form of `name`, unique within this report."""
        base = _slug(name)
        taken = {a for a, _, _ in self.sections}
        slug, n = base, 2
        while f"concept-{slug}" in taken:
            slug, n = f"{base}-{n}", n + 1
        return slug

    def figure(self, name: str, fig: go.Figure) -> str:
        """Register a figure (saved as name.png / name.svg) and return its HTML div."""
        self.figures.append((name, fig))
        return (f'<figure id="fig-{name}">' + figure_html(fig, full_html=False, include_plotlyjs=False,
                                                          div_id=f"plot-{name}") + "</figure>")

    def table(self, name: str, df: pd.DataFrame, shown: pd.DataFrame | None = None) -> str:
        """Register a table (saved whole as tables/name.csv) and return the HTML of `shown` (default: all)."""
        self.tables.append((name, df))
        view = df if shown is None else shown
        return (view.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0, classes="tab", escape=True)
                + f'<p class="small">all rows: <a href="tables/{name}.csv">tables/{name}.csv</a></p>')


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40] or "concept"


# --------------------------------------------------------------------------- sections

def model_card(rec: Recording) -> tuple[dict, dict | None]:
    """(summary rows, checkpoint meta or None) from the recording and the checkpoint it names, if it loads."""
    from probe.model import checkpoint
    mc = rec.meta.get("model_config", {})
    card = {"model": f"{mc.get('model', '?')} {mc.get('num_layers', '?')}x{mc.get('rnn_size', '?')}",
            "vocabulary": f"{rec.vocab.encoding} ({rec.vocab.size} symbols)"}
    meta = None
    ck_path = (rec.meta.get("checkpoint") or {}).get("path")
    if ck_path:
        try:
            meta = checkpoint.read_meta(checkpoint.resolve(ck_path))
        except (ProbeError, OSError):
            meta = None
        card["checkpoint"] = ck_path + ("" if meta else " (not found: training details left out)")
    if meta:
        data = meta.get("data", {})
        card.update({
            "parameters": f"{meta.get('num_params', 0):,}",
            "training data": str(data.get("corpus") or data.get("path") or data.get("source") or "?"),
            "training steps": f"{meta.get('step', '?'):,}" if isinstance(meta.get("step"), int) else "?",
            "epochs": f"{meta.get('epoch', float('nan')):.2f}",
            "best validation": f"{meta.get('best_val_loss', float('nan')) / LN2:.4f} bits per {rec.vocab.encoding}",
            "saved": str(meta.get("saved_at", "?")),
        })
    t = rec.meta.get("text", {})
    card["recorded text"] = f"{t.get('source', '?')}, {t.get('n_chars', len(rec.text)):,} characters, " \
                            f"{rec.n_rows:,} rows"
    return card, meta


def bits_per_char(rec: Recording) -> dict:
    """Mean loss over the recorded text, per symbol and per character (NaN rows, e.g. the last, left out)."""
    if not rec.has("loss_bits"):
        return {}
    loss = np.asarray(rec.loss_bits, dtype=np.float64)
    ok = np.isfinite(loss)
    out = {"bits_per_symbol": float(loss[ok].mean()), "symbols": int(ok.sum())}
    if rec.by_bytes:
        n_chars = len(set(np.asarray(rec.char_of_row)[ok].tolist()))
        out["bits_per_char"] = float(loss[ok].sum() / max(n_chars, 1))
    else:
        out["bits_per_char"] = out["bits_per_symbol"]
    return out


def concept_passage(labels: np.ndarray, part: tuple[int, int], length: int) -> tuple[int, int]:
    """A window of `length` rows inside `part` (the held-out rows) that shows the concept.

    Binary concepts: the window opens a little before the densest run of the
    concept in the held-out part; other concepts: the start of the part.
    """
    s, e = part
    length = min(length, e - s)
    y = np.asarray(labels[s:e], dtype=np.float64)
    if set(np.unique(y)) <= {0.0, 1.0} and y.any():
        if len(y) > length:
            dens = np.convolve(y, np.ones(length), mode="valid")
            best = int(np.argmax(dens))
            first = best + int(np.argmax(y[best:best + length] > 0))
            start = max(0, min(first - length // 5, len(y) - length))
        else:
            start = 0
        return s + start, s + start + length
    return s, s + length


def line_start(rec: Recording, row: int, *, lower: int = 0, reach: int = 120) -> int:
    """Move `row` back to the start of its line if a newline lies within `reach` characters (not below `lower`)."""
    c = int(rec.char_of_row[row]) if rec.by_bytes else row
    nl = rec.text.rfind("\n", max(0, c - reach), c)
    if nl < 0:
        return row
    new = int(rec.row_of_char(nl + 1))
    return new if lower <= new <= row else row


def _unit_table(search) -> pd.DataFrame:
    cols = [c for c in ("unit", "metric", "score", "sign", "chance", "p_value", "select_score", "mean_in",
                        "mean_out") if c in search.table.columns]
    return search.table[cols]


def concept_section(r: Report, rec: Recording, concept, *, top: int, heat_units: int, passage: int, width: int,
                    seed: int, say: Callable[[str], None], ablation: dict | None = None) -> str:
    from probe.analysis.concepts import row_labels
    from probe.analysis.neurons import find_neurons
    from probe.analysis.probes import fit_probes
    slug = r.slug(concept.name)
    parts = [f"<p>{html.escape(concept.description)} ({concept.label_type}).</p>"]
    say(f"{concept.name}: ranking units")
    search = find_neurons(rec, concept, seed=seed)
    table = search.table
    parts.append(
        f"<p>Units ranked on rows {search.select_rows[0]:,}:{search.select_rows[1]:,}, scored on the held-out rows "
        f"{search.report_rows[0]:,}:{search.report_rows[1]:,} ({html.escape(search.metric)}, direction-free). "
        f"Chance level (best of all {search.n_units:,} units on block-permuted labels): "
        f"<b>{search.chance:.3f}</b>.</p>")
    parts.append(r.table(f"{slug}-units", table.reset_index(drop=True), _unit_table(search).head(top)))
    if ablation:
        parts.append(ablation_part(r, rec, search, slug, ablation, say))

    labels = row_labels(rec, concept)
    p0, p1 = concept_passage(labels, search.report_rows, passage)
    p0 = line_start(rec, p0, lower=search.report_rows[0])
    units = list(table["unit"].head(max(heat_units, 8)))
    for i, unit in enumerate(units[:heat_units]):
        row = table.iloc[i]
        stop = min(p1, p0 + 240) if i == 0 else p1  # the first with the top-5 guesses, on a shorter passage
        fig = text_heatmap(rec, unit, p0, stop, topk=(i == 0), width=width,
                           title=f"{unit}: {search.metric} {row['score']:.3f} (chance {search.chance:.3f}) "
                                 f"on {html.escape(concept.name)}, rows {p0:,}:{stop:,}")
        parts.append(r.figure(f"{slug}-heatmap-{i + 1}-{parse_unit(unit).slug}", fig))
    strip = labels.astype(np.float64)
    first = p0 + int(np.argmax(strip[p0:p1] > 0)) if concept.label_type == "binary" else p0
    s0 = max(p0, first - 50)
    s1 = min(p1, s0 + 150)
    parts.append(r.figure(f"{slug}-units", unit_heatmap(rec, units, s0, s1, labels=strip,
                                                        concept=concept.name,
                                                        title=f"top {len(units)} units for {concept.name}")))
    if hasattr(rec, "sae_name"):  # features: their search and heatmaps only (probes: the report without an SAE)
        return "\n".join(parts)
    say(f"{concept.name}: fitting probes")
    rep = fit_probes(rec, concept, seed=seed, untrained="auto")
    parts.append("<h3>Linear probes</h3>")
    parts.append(r.figure(f"{slug}-probes", probe_figure(rep.table, title=f"linear probes for {concept.name}")))
    parts.append(r.table(f"{slug}-probes", rep.table))
    if len(rep.sparse):
        metric = str(rep.table["metric"].iloc[0]) if "metric" in rep.table else None
        parts.append(r.figure(f"{slug}-sparse", sparse_figure(rep.sparse, metric=metric,
                                                              title=f"sparse probes for {concept.name}")))
        parts.append(r.table(f"{slug}-sparse", rep.sparse))
    return "\n".join(parts)


# --------------------------------------------------------------------------- tracks it, is used for it

def check_ablation(rec: Recording, n: int, chars: int, checkpoint) -> dict | None:
    """The settings of `ablation_part` (with the recording's model, loaded and checked), before any work;
    None when `n` is 0."""
    check_at_least(ablate=(n, 0), ablate_chars=(chars, 2))
    if not n:
        return None
    from probe.record.source import recording_checkpoint
    return {"n": n, "chars": chars, "checkpoint": recording_checkpoint(rec, checkpoint)}


def ablation_part(r: Report, rec: Recording, search, slug: str, ablation: dict, say: Callable[[str], None]) -> str:
    """The concept's top units with their held-out score ("tracks it") beside the change of loss when each is
    held at its mean ("is used for it"), inside and outside the concept, and its p among random units."""
    from probe.analysis.ablate import add_ablation
    name = search.concept.name
    if search.concept.label_type != "binary":
        return (f'<p class="note">Ablation: {html.escape(name)} is {search.concept.label_type}; the change of loss '
                f'inside and outside needs a binary concept.</p>')
    n, chars = ablation["n"], ablation["chars"]
    k = max(0, min(20, rec.hidden_size - n))  # 20 random units, fewer in a model too small for them
    say(f"{name}: ablating the top {n} units")
    res = add_ablation(search, rec, n, ablation["checkpoint"], max_chars=chars, n_random=k)
    t = res.table.head(n)
    shown = pd.DataFrame({
        "unit": t.unit, f"tracks it: held-out {search.metric}": t.score.round(3),
        "Δ bits/char inside [95% CI]": [_ci(a, lo, hi) for a, lo, hi in zip(t.abl_in, t.abl_in_lo, t.abl_in_hi)],
        "Δ outside [95% CI]": [_ci(a, lo, hi) for a, lo, hi in zip(t.abl_out, t.abl_out_lo, t.abl_out_hi)],
        "rank": [f"{int(x)} of {k + 1}" if x == x else "" for x in t.abl_rank],
        "p": [f"{x:.3f}" if x == x else "gate: cannot be held" for x in t.abl_p]})
    cols = ["unit", "score", "abl_in", "abl_in_lo", "abl_in_hi", "abl_out", "abl_out_lo", "abl_out_hi", "abl_all",
            "abl_rank", "abl_p"]
    return ("<h3>Tracks it, and is it used?</h3>"
            f"<p>Each of the top {n} units held at its mean over the first {chars:,} characters of the recording, at "
            f"every step: the change of loss (bits per character; positive: the model does worse without it) "
            f"inside and outside {html.escape(name)}, with 95% block-bootstrap intervals, and its rank and p among "
            f"{k} random units of the same layer and kind (smallest possible p {1 / (k + 1):.3f}). A unit can track "
            f"a concept and still not be used.</p>" + r.table(f"{slug}-ablation", t[cols].reset_index(drop=True), shown))


def _ci(a: float, lo: float, hi: float) -> str:
    return "" if a != a else f"{a:+.4f} [{lo:+.4f}, {hi:+.4f}]"


# --------------------------------------------------------------------------- assembling

CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1500px;margin:2em auto;padding:0 1em;
color:#222}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table.tab{border-collapse:collapse;font-size:.9em}table.tab td,table.tab th{padding:.2em .6em;text-align:right;
border-bottom:1px solid #eee}table.tab th{background:#f4f4f4}figure{margin:1em 0;overflow-x:auto}
.small{font-size:.8em;color:#666}nav a{margin-right:1em}dl.card{display:grid;grid-template-columns:max-content auto;
gap:.2em 1em}dl.card dt{font-weight:600}.note{color:#8a5a00}"""


def render_html(r: Report) -> str:
    from plotly.offline import get_plotlyjs
    nav = " ".join(f'<a href="#{a}">{html.escape(h)}</a>' for a, h, _ in r.sections)
    body = "\n".join(f'<section id="{a}"><h2>{html.escape(h)}</h2>\n{content}</section>'
                     for a, h, content in r.sections)
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in r.notes)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(r.title)}</title>"
            f"<style>{CSS}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(r.title)}</h1><p class='small'>made by probe on {time.strftime('%Y-%m-%d %H:%M')}; "
            f"works offline; figures as PNG and SVG in figures/, tables as CSV in tables/</p>"
            f"<nav>{nav}</nav>{notes}{body}</body></html>")


def _prepare_out(out: Path, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise ProbeError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ParamError("overwrite", f"{out} already exists and is not empty; pass {{overwrite=True}} to replace it",
                         advice=True)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ProbeError(f"cannot create {parent}: {e.strerror}") from None
    tmp = parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        (tmp / "figures").mkdir()
        (tmp / "tables").mkdir()
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ProbeError(f"cannot write in {parent}: {e.strerror}") from None
    return tmp


def build_report(recording: str | Path | Recording, concepts: list[str], out: str | Path, *, top: int = 10,
                 heat_units: int = 3, passage: int = 600, width: int = 100, embedding: str = "pca",
                 embed_n: int = 3000, images: bool = True, overwrite: bool = False, seed: int = 0,
                 say: Callable[[str], None] | None = None, regex_timeout: float | None = None,
                 baseline: str | None = None, ablate: int = 0, ablate_chars: int = 20_000,
                 checkpoint: str | Path | None = None) -> Path:
    """Write the report folder `out` (index.html, figures/*.png|svg, tables/*.csv); returns its path.

    Concepts given as regexes (and built-in regex concepts) stop after `regex_timeout` seconds of matching.
    baseline: `ngram:N` or a checkpoint: adds a section comparing the recorded model with it (see
    `baseline_section`); None (the default) leaves it out.
    ablate: for each binary concept, also hold its top `ablate` units at their mean over the first
    `ablate_chars` characters (the model: `checkpoint`, else the recording's) and show the change of loss
    beside the held-out score (`ablation_part`); 0 (the default) leaves it out.
    """
    from probe.analysis import concepts as concepts_mod
    say = say or (lambda msg: print(f"probe report: {msg}", file=sys.stderr, flush=True))
    # a Recording, or a Recording-like view of one (probe.sae.features.FeatureRecording: the concept sections
    # rank and draw its features; the model card, loss, baseline and embedding are its recording's)
    rec = Recording.open(recording) if isinstance(recording, (str, Path)) else recording
    plain = getattr(rec, "rec", rec)
    out = Path(out)
    check_choice("embedding", embedding, ("pca", "umap", "none"))
    check_at_least(top=(top, 1), heat_units=(heat_units, 0), passage=(passage, 10), width=(width, 10))
    chosen = []
    for name in concepts:  # every concept checked before any work or any file
        c = concepts_mod.get(name, timeout=regex_timeout)
        concepts_mod.row_labels(rec, c)
        chosen.append(c)
    base = check_baseline(plain, baseline)  # before any file, like the concepts
    ablation = check_ablation(rec, ablate, ablate_chars, checkpoint)
    tmp = _prepare_out(out, overwrite)
    try:
        sae = getattr(rec, "sae_name", None)
        r = Report(title=f"probe report: {rec.path.name}" + (f", features of the SAE {sae}" if sae else ""))
        _fill(r, rec, chosen, top=top, heat_units=heat_units, passage=passage, width=width, embedding=embedding,
              embed_n=embed_n, seed=seed, say=say, ablation=ablation)
        if base is not None:
            baseline_section(r, plain, *base, chosen, width=width, seed=seed, say=say)
        (tmp / "index.html").write_text(render_html(r), encoding="utf-8")
        for name, df in r.tables:
            df.to_csv(tmp / "tables" / f"{name}.csv", index=False)
        if images and r.figures:
            say(f"writing {len(r.figures)} figures as PNG and SVG")
            write_figures([(fig, tmp / "figures" / f"{name}.{ext}") for name, fig in r.figures
                           for ext in ("png", "svg")])
        (tmp / "report.json").write_text(json.dumps(
            {"recording": str(rec.path), "concepts": [c.name for c in chosen], "notes": r.notes,
             **({"baseline": base[1]} if base is not None else {}),
             "figures": [n for n, _ in r.figures], "tables": [n for n, _ in r.tables]}, indent=1))
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _fill(r: Report, rec: Recording, chosen: list, *, top: int, heat_units: int, passage: int, width: int,
          embedding: str, embed_n: int, seed: int, say: Callable[[str], None], ablation: dict | None = None) -> None:
    card, meta = model_card(rec)
    bpc = bits_per_char(rec)
    if bpc:
        unit = "byte" if rec.by_bytes else "character"
        card[f"loss on the recorded text"] = f"{bpc['bits_per_symbol']:.4f} bits per {unit}" + (
            f" = {bpc['bits_per_char']:.4f} bits per character" if rec.by_bytes else "")
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in card.items())
    parts = [f'<dl class="card">{items}</dl>']
    r.tables.append(("model-card", pd.DataFrame({"field": list(card), "value": [str(v) for v in card.values()]})))
    if bpc:
        r.tables.append(("bits-per-char", pd.DataFrame([bpc])))
    if meta and meta.get("metrics"):
        parts.append(r.figure("training-curve", training_curve(meta)))
        r.tables.append(("training-metrics", pd.DataFrame(meta["metrics"])))
    if meta and meta.get("samples"):
        parts.append(r.figure("samples", samples_table(meta)))
    r.sections.append(("model", "Model", "\n".join(parts)))

    for c in chosen:
        anchor = f"concept-{r.slug(c.name)}"
        r.sections.append((anchor, f"Concept: {c.name}",
                           concept_section(r, rec, c, top=top, heat_units=heat_units, passage=passage,
                                           width=width, seed=seed, say=say, ablation=ablation)))

    plain = getattr(rec, "rec", rec)  # a FeatureRecording's own recording: saturation and embedding are its
    gate_kinds = [k for k in plain.kinds if k not in ("h", "c")]
    if gate_kinds:
        from probe.analysis.saturation import gate_saturation
        say("gate saturation")
        df = gate_saturation(plain)
        r.sections.append(("saturation", "Gate saturation", "<p>Per gate unit: the fraction of steps with the gate "
                           "below 0.1 (left-saturated) and above 0.9 (right-saturated), as in Karpathy, Johnson "
                           "&amp; Fei-Fei (2015).</p>" + r.figure("gate-saturation", saturation_figure(df))))
        r.tables.append(("gate-saturation", df))

    if embedding != "none":
        from probe.analysis.embedding import embed_states
        layer = rec.num_layers - 1
        concept = chosen[0] if chosen else None
        say(f"{embedding.upper()} of L{layer}.h")
        df = embed_states(plain, layer=layer, kind="h", method=embedding, concept=concept, n=embed_n, seed=seed)
        name = concept.name if concept else None
        fig = embedding_figure(df, concept=name, method=embedding,
                               title=f"{embedding.upper()} of L{layer}.h ({len(df):,} rows)"
                                     + (f", colored by {name}" if name else ""))
        r.sections.append(("embedding", "Embedding", r.figure("embedding", fig)))
        r.tables.append(("embedding", df))


# --------------------------------------------------------------------------- the model against a baseline

BASELINE_HEATMAP_CHARS = 1500  # characters in the Δloss heatmap (the window where the model wins most)


def check_baseline(rec: Recording, baseline: str | None):
    """(checkpoint of the recording, baseline spec) for `baseline_section`, checked before any work; None if off."""
    if baseline is None:
        return None
    from probe.analysis.compare import parse_side
    from probe.record.source import recording_checkpoint
    if not isinstance(baseline, str) or not baseline.strip():
        raise ProbeError(f"baseline must be ngram:N or a checkpoint, not {baseline!r}")
    side = parse_side(baseline.strip(), "baseline")
    ck = recording_checkpoint(rec, same_weights=False)
    if not rec.has("loss_bits"):
        raise ProbeError(f"recording {rec.path} has no loss_bits: record it again to compare its model")
    if side.is_ngram and len(rec.array("ids")) < side.order:
        raise ParamError("baseline", f"{side.spec}: the recorded text holds {rec.n_rows} symbols, fewer than "
                                     f"the order {side.order}")
    return ck, side.spec


def baseline_section(r: Report, rec: Recording, ck, baseline: str, chosen: list, *, width: int, seed: int,
                     say: Callable[[str], None]) -> None:
    """The recorded model (its loss from the recording) against `baseline` on the recorded text: Δ bits/char
    overall and inside/outside concepts with block-bootstrap intervals, the characters where each wins, a Δloss
    heatmap, the closers' probability by distance to their openers, and the model's error breakdown
    (Karpathy, Johnson & Fei-Fei 2015), whose n-gram oracle fits orders 1-9 on the training split (cached)."""
    from probe.analysis.compare import DEFAULT_CONCEPTS, compare_recording, recording_char_bits, recording_text
    from probe.analysis.error_classes import breakdown, group_table
    from probe.figures.delta_plots import delta_heatmap, error_breakdown_figure, long_range_figure
    concepts = list(DEFAULT_CONCEPTS) + [c for c in chosen if c.label_type != "continuous" and c.name not in
                                         DEFAULT_CONCEPTS]
    say(f"comparing with {baseline}")
    cmp = compare_recording(rec, baseline, checkpoint=ck, concepts=concepts, seed=seed)
    s = cmp.summary
    row = s.iloc[0]
    fitted = f" (fitted on the training split of {ck.path})" if baseline.startswith("ngram:") else ""
    parts = [f"<p>A = the recorded model (its loss read from the recording), B = <b>{html.escape(baseline)}</b>"
             f"{html.escape(fitted)}; {html.escape(cmp.note)}. Δ = bits(B) − bits(A) per character, &gt; 0 where "
             "the model wins; 95% block-bootstrap intervals (blocks of 1,000 characters).</p>",
             f"<p>Overall: model <b>{row.bpc_a:.3f}</b>, {html.escape(baseline)} <b>{row.bpc_b:.3f}</b> bits per "
             f"character, Δ <b>{row.delta_bpc:+.3f}</b> [{row.ci_low:+.3f}, {row.ci_high:+.3f}] over "
             f"{int(row.n_chars):,} characters.</p>"]
    parts.append(r.table("baseline-summary", s))
    top = cmp.by_char.head(10)
    parts.append("<h3>Characters where each side wins most (total Δ bits)</h3>")
    shown = pd.concat([top, cmp.by_char.tail(10).iloc[::-1]]).drop_duplicates(subset="char")
    shown = shown.assign(char=shown["char"].map(repr))
    parts.append(r.table("baseline-by-char", cmp.by_char, shown))
    r.tables.append(("baseline-contexts", cmp.contexts))
    h0, h1 = cmp.best_window(BASELINE_HEATMAP_CHARS)
    parts.append(r.figure("baseline-delta-heatmap",
                          delta_heatmap(cmp.text.chars, cmp.delta, h0, h1, a="model", b=baseline, width=width)))
    if len(cmp.long_range):
        parts.append("<h3>Long-range structure: the closer's probability by distance to its opener</h3>")
        parts.append(r.figure("baseline-long-range", long_range_figure(cmp.long_range, a="model", b=baseline)))
        parts.append(r.table("baseline-long-range", cmp.long_range, cmp.long_range[cmp.long_range.kind == "all"]))
    say("error breakdown (n-gram oracles of orders 1-9)")
    try:
        eb = breakdown(ck, recording_text(rec), model_bits=recording_char_bits(rec))
    except ProbeError as e:
        r.notes.append(f"no error breakdown: {e}")
    else:
        parts.append(f"<h3>Error breakdown</h3><p>{eb.n_errors:,} errors (probability &lt; 0.5) in "
                     f"{eb.n_chars:,} characters ({eb.error_rate:.1%}), each in the first class whose oracle "
                     "removes it (Karpathy, Johnson &amp; Fei-Fei 2015; <code>probe errors --help</code> "
                     "defines the classes).</p>")
        parts.append(r.figure("errors", error_breakdown_figure(eb.table)))
        parts.append(r.table("errors", eb.table))
        r.tables.append(("errors-by-group", group_table(eb)))
    r.sections.append(("baseline", f"Against {baseline}", "\n".join(parts)))
