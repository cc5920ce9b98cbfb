"""What the dashboard's callbacks do, as plain Python over one Recording (no Dash here).

Every method validates its inputs (they come from the browser) and raises
ProbeError with a one-line message for anything wrong; app.py turns that into
a message in the page. Nothing here takes a file path from the browser.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from probe.analysis import safe_regex
from dashboards.atlas_view import (BEST, combined, concepts_of, describe_entry, filtered, resolve_unit, table_rows,
                                   top_rows)
from dashboards.inputs import as_baseline, as_choice, as_choices, as_dict, as_float, as_int, as_text, shown
from dashboards.windows import (FEATURE_COLUMNS, WINDOW_ROWS, feature_window_payload, payload, window_bounds,
                                window_payload)
from probe.errors import ProbeError
from probe.runtime.threads import interactive_threads
from probe.names import is_feature, parse_unit
from probe.record.recording import Recording, Unit, array_name

MAX_LIVE_CHARS = 20_000
MAX_TABLE_ROWS = 200
MAX_FIELD_CHARS = 10_000  # any short text field (the regex's own limit is checked by safe_regex)
MAX_SEED = 2 ** 63 - 1


def _lru_put(cache: OrderedDict, key, value, size: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)


class DashboardService:
    """The recording, an optional model for live text, and small caches."""

    def __init__(self, recording: str | Path | Recording, checkpoint: str | Path | None = None, *,
                 window_rows: int = WINDOW_ROWS, regex_timeout: float = safe_regex.TIMEOUT_S,
                 atlas="auto", unit: str | None = None, sae: str | Path | None = None):
        """`atlas`: "auto" (the recording's own atlas, and its SAE's, when they exist), an Atlas, or None;
        `unit`: the unit to open on (a name, `best` or `best:CONCEPT`; default: the atlas's best unit, else
        L<top>.c.0); `sae`: an SAE folder (probe sae) whose features can be picked like units (`L2.h.f123`)."""
        self.rec = recording if isinstance(recording, Recording) else Recording.open(recording)
        self.frec = None
        self._prefetcher, self._prefetching = None, None
        if sae is not None:
            from probe.sae.features import open_features
            self.frec = open_features(self.rec, sae)  # a one-line ProbeError when the SAE is not of this recording
        if isinstance(atlas, str) and atlas == "auto":
            atlas = combined([_recording_atlas(r) for r in (self.rec, self.frec) if r is not None])
        self.atlas = atlas
        self.window_rows = int(window_rows)
        self.feature_columns = FEATURE_COLUMNS  # features per window sent to the browser
        self.regex_timeout = regex_timeout
        self._checkpoint_arg = checkpoint
        self._ck = None
        self._lock = threading.Lock()
        self._live: OrderedDict = OrderedDict()
        self._cards: OrderedDict = OrderedDict()
        self._views: dict = {}
        self._deltas: OrderedDict = OrderedDict()  # Δloss per baseline spec, whole text
        self._delta_lock = threading.Lock()
        self._ablations: OrderedDict = OrderedDict()  # one unit's ablation per window and concept
        if unit is None and self.atlas is not None:
            unit = BEST
        if unit is None:
            self.initial = Unit(self.rec.num_layers - 1, "c" if "c" in self.rec.kinds else self.rec.kinds[0], 0)
        else:
            self.initial = self.check(resolve_unit(unit, self.atlas))
        self.initial_pos = self.position_for(self.initial)
        self._warming: threading.Thread | None = None
        if self.frec is not None:  # every window's features, encoded in the background from the first page's on
            start = self.initial_pos["start"] if self.initial.is_feature else 0
            self._warming = threading.Thread(target=self.frec.warm, args=(start,), name="probe-features-warm",
                                             daemon=True)
            self._warming.start()

    # ------------------------------------------------------------------ description
    def describe(self) -> str:
        from probe.record.deviation import summary_line
        r = self.rec
        return (f"{r.path.name}: {r.n_rows:,} rows, {r.cell.upper()} {r.num_layers}x{r.hidden_size}, "
                f"kinds {', '.join(r.kinds)}; {summary_line(r.meta)}")

    def opening_line(self) -> str:
        """Which unit the page opens on, and why (for the command line)."""
        entry = self.atlas_entry(self.initial)
        if entry:
            return f"opens on {describe_entry(entry)}"
        if self.atlas is None:
            return f"opens on {self.initial.name} (no atlas: probe atlas {self.rec.path} makes one)"
        return f"opens on {self.initial.name}"

    def checkpoint_path(self) -> Path | None:
        """--checkpoint, else the checkpoint named in the recording's meta.json if it is still there."""
        if self._checkpoint_arg is not None:
            return Path(self._checkpoint_arg)
        p = (self.rec.meta.get("checkpoint") or {}).get("path")
        return Path(p) if p and Path(p).exists() else None

    def checkpoint(self):
        with self._lock:
            if self._ck is None:
                from probe.model import checkpoint
                p = self.checkpoint_path()
                if p is None:
                    raise ProbeError("no model: start the dashboard with --checkpoint RUN to use live text")
                self._ck = checkpoint.load(p)
            return self._ck

    # ------------------------------------------------------------------ windows
    def window(self, start, layer, kind, mark=None, index=None) -> dict:
        """The window payload of one layer and kind (features: the window's most active ones and `index`)."""
        if mark is not None:
            if not (isinstance(mark, (list, tuple)) and len(mark) == 2):
                raise ProbeError("malformed highlight range")
            mark = [as_int(mark[0], "highlight start"), as_int(mark[1], "highlight end")]
        if isinstance(kind, str) and is_feature(kind):
            u = self.unit(layer, kind, 0 if index is None else index)
            win = feature_window_payload(self.frec, start, u, size=self.window_rows, mark=mark,
                                         n_cols=self.feature_columns)
            self._prefetch(win["stop"])
            return win
        return window_payload(self.rec, start, layer, kind, size=self.window_rows, mark=mark)

    def _prefetch(self, start: int) -> None:
        """Encode the features of the window after `start` in the background (one at a time), so that
        "next" finds them computed."""
        if start >= self.rec.n_rows or (self._prefetching is not None and not self._prefetching.done()):
            return
        if self._warming is not None and self._warming.is_alive():  # the background warm-up covers it
            return
        from concurrent.futures import ThreadPoolExecutor
        if self._prefetcher is None:
            self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="probe-features")
        stop, name = min(self.rec.n_rows, start + self.window_rows), self.frec.feature_site.array
        self._prefetching = self._prefetcher.submit(lambda: self.frec.array(name)[start:stop])

    def step_window(self, start, direction: int) -> int:
        s = as_int(start, "window start")
        new = s + direction * self.window_rows
        return int(min(max(0, new), max(0, self.rec.n_rows - 1)))

    def centre_on(self, row) -> int:
        r = as_int(row, "row")
        if not 0 <= r < self.rec.n_rows:
            raise ProbeError(f"row {r} is outside the text (0 to {self.rec.n_rows - 1})")
        return max(0, r - self.window_rows // 4)

    # ------------------------------------------------------------------ units
    def unit_from_name(self, name) -> Unit:
        return self.check(as_text(name, "unit name", 40))

    def unit_kinds(self) -> list[str]:
        """The kinds a unit can be picked from (with an SAE: its feature kind last)."""
        return list(self.rec.kinds) + ([] if self.frec is None else list(self.frec.kinds))

    def source(self, unit: Unit):
        """Where a unit's activations come from: the recording, or its features for a feature."""
        if not unit.is_feature:
            return self.rec
        if self.frec is None:
            raise ProbeError(f"no feature {unit}: start the dashboard with --sae SAE_FOLDER to see features")
        return self.frec

    def check(self, unit: str | Unit) -> Unit:
        """The unit (a name or a Unit) validated against the recording (a feature: against the SAE)."""
        u = parse_unit(unit) if isinstance(unit, str) else unit
        return self.source(u).check_unit(u)

    def unit(self, layer, kind, index) -> Unit:
        kind = as_choice(kind, "kind", self.unit_kinds())
        return self.check(Unit(as_int(layer, "layer"), kind, as_int(index, "unit index")))

    def state_unit(self, layer, kind, index, what: str) -> Unit:
        """A unit of the recording itself (not a feature), for what needs the model's own units."""
        u = self.unit(layer, kind, index)
        if u.is_feature:
            raise ProbeError(f"{what} takes the model's own units; {u} is a feature of the SAE: pick a kind "
                             f"of {', '.join(self.rec.kinds)}")
        return u

    # ------------------------------------------------------------------ the atlas
    def atlas_concepts(self) -> list[tuple[str, int]]:
        """(concept, units it best explains), most frequent first ([] without an atlas)."""
        return [] if self.atlas is None else concepts_of(self.atlas.table)

    def atlas_sites(self) -> tuple[list[int], list[str]]:
        """The layers and kinds the atlas covers."""
        if self.atlas is None:
            return [], []
        t = self.atlas.table
        have = set(str(x) for x in t["kind"])
        order = [k for k in self.unit_kinds() if k in have] + sorted(have - set(self.unit_kinds()))
        return sorted({int(x) for x in t["layer"]}), order

    def atlas_table(self, concept=None, layer=None, kind=None, explained=None) -> tuple[list[dict], str]:
        """Rows of the atlas tab's table for the filters (each None: all) and a one-line summary."""
        if self.atlas is None:
            raise ProbeError("this recording has no atlas: make one with probe atlas REC, then restart the dashboard")
        layers, kinds = self.atlas_sites()
        if not layers:
            return [], "the atlas is empty"
        concept = as_text(concept, "concept", 500, required=False) or None
        if concept is not None and concept not in dict(self.atlas_concepts()):
            raise ProbeError(f"no unit of the atlas is best explained by {shown(concept, 60)}")
        layer = None if layer is None or layer == "" else as_int(layer, "layer", min(layers), max(layers))
        kind = None if kind is None or kind == "" else as_choice(kind, "kind", kinds)
        only = bool(as_choices(explained, "explained only", ["on"]))
        table = self.atlas.table
        df = filtered(table, concept=concept, layer=layer, kind=kind, explained_only=only)
        rows = table_rows(df)
        n_expl = int(table["explained"].astype(bool).sum())
        summary = (f"{len(df):,} of {len(table):,} units" + (f" (the first {len(rows):,} shown)"
                                                           if len(rows) < len(df) else "")
                   + f"; {n_expl:,} of {len(table):,} explained above chance; ranked by held-out score above chance")
        return rows, summary

    def atlas_entry(self, unit: str | Unit) -> dict | None:
        """The atlas's entry of a unit (None: not in the atlas, or no atlas)."""
        return None if self.atlas is None else self.atlas.entry(unit if isinstance(unit, str) else unit.name)

    def position_for(self, unit: Unit) -> dict:
        """The window position that shows a unit's top context (its peak row marked), when the atlas has it;
        else the start of the text."""
        entry = self.atlas_entry(unit)
        rows = [r for r in top_rows(entry) if 0 <= r < self.rec.n_rows] if entry else []
        if not rows:
            return {"start": 0, "mark": None}
        return {"start": self.centre_on(rows[0]), "mark": [rows[0], rows[0] + 1]}

    def open_unit(self, spec) -> tuple[Unit, dict, str]:
        """(unit, window position at its top context, its atlas line) for a unit picked in the atlas or named in
        the address: a unit name, `best` or `best:CONCEPT`."""
        u = self.check(resolve_unit(as_text(spec, "unit name", 600), self.atlas))
        entry = self.atlas_entry(u)
        return u, self.position_for(u), describe_entry(entry) if entry else ""

    def unit_from_address(self, search) -> tuple[Unit, dict, str] | None:
        """The unit named by the page address's `?unit=...` (None when the address names none)."""
        from urllib.parse import parse_qs
        query = as_text(search, "address", 2000, required=False).lstrip("?")
        values = parse_qs(query, keep_blank_values=True).get("unit")
        if not values:
            return None
        return self.open_unit(values[-1])

    # ------------------------------------------------------------------ find neurons
    def concept_names(self) -> list[str]:
        from probe.analysis import concepts
        return sorted(concepts.BUILTIN)

    def make_concept(self, builtin, pattern, flags=""):
        """A built-in concept by name, or a regex concept whose matching ran with a time limit."""
        pattern = as_text(pattern, "regular expression", MAX_FIELD_CHARS, required=False)
        flags = as_text(flags, "regex flags", 10, required=False)
        builtin = as_text(builtin, "concept", 100, required=False)
        if pattern.strip():
            labels, n, cut = safe_regex.regex_labels(pattern, self.rec.text, flags, timeout=self.regex_timeout)
            if n == 0:
                raise ProbeError(f"the regular expression {shown(pattern, 80)} matches nothing in this text")
            note = f" (stopped at the first {n:,} matches)" if cut else ""
            from probe.analysis.concepts import from_function
            values = labels.astype(np.uint8)
            concept = from_function(f"/{pattern}/{flags}", lambda text: values, "binary",
                                    f"inside matches of /{pattern}/{flags}: {n:,} matches{note}")
            return concept, n, cut
        if not builtin:
            raise ProbeError("type a regular expression or pick a built-in concept")
        from probe.analysis import concepts
        if builtin not in self.concept_names():
            raise ProbeError(f"no built-in concept {builtin[:40]!r}")
        return concepts.builtin(builtin), None, False

    def find(self, builtin, pattern, flags="", kinds=None) -> tuple[list[dict], str]:
        """Rows of the find-neurons table (held-out scores) and a one-line summary."""
        kinds = as_choices(kinds, "kinds", self.rec.kinds) or None
        concept, n, cut = self.make_concept(builtin, pattern, flags)
        from probe.analysis.neurons import find_neurons
        table = find_neurons(self.rec, concept, kinds=kinds).table.head(MAX_TABLE_ROWS)
        rows = []
        for rec in table.to_dict("records"):
            row = {k: _cell(v) for k, v in rec.items()}
            row["id"] = str(rec["unit"])
            rows.append(row)
        summary = f"{concept.name}: {len(rows)} units ranked by held-out score"
        if n is not None:
            summary += f"; {n:,} matches" + (" (bounded)" if cut else "")
        return rows, summary

    # ------------------------------------------------------------------ brush
    def brush(self, data) -> tuple[list[dict], list[dict], str]:
        from probe.analysis.hypothesis import brush
        data = as_dict(data, "selection")
        start, stop = as_int(data.get("start"), "selection start", 0), as_int(data.get("stop"), "selection end", 0)
        res = brush(self.rec, start, stop)
        units = [{"id": r["unit"], "unit": r["unit"], "score": round(float(r["score"]), 3),
                  "sign": "on" if r["sign"] > 0 else "off", "inside": round(float(r["inside"]), 4),
                  "outside": round(float(r["outside"]), 4), "separation": round(float(r["separation"]), 3)}
                 for r in res.units.to_dict("records")]
        matches = [{"id": str(i), "row": m["start"], "length": m["stop"] - m["start"],
                    "context": _show(m["before"]) + "[" + _show(m["match"]) + "]" + _show(m["after"])}
                   for i, m in enumerate(res.matches)]
        summary = (f"selection rows {res.start}:{res.stop} {res.text[:60]!r}: {len(units)} units; "
                   f"the pattern of {', '.join(res.pattern_units)} recurs at {res.n_matches} other places")
        return units, matches, summary

    # ------------------------------------------------------------------ neuron card
    def card(self, layer, kind, index):
        u = self.unit(layer, kind, index)
        if u.name not in self._cards:
            from probe.analysis.neuron_card import neuron_card
            ck = self.checkpoint_path()
            _lru_put(self._cards, u.name, neuron_card(self.source(u), u.name, n_top=20,
                                                      checkpoint=str(ck) if ck else None), 16)
        return self._cards[u.name]

    # ------------------------------------------------------------------ live text
    def live(self, text, layer, kind) -> dict:
        """Run the model on typed text (cached per text) and return a payload for one layer and kind."""
        text = as_text(text, "live text", MAX_LIVE_CHARS, prompt="type or paste some text first")
        u = self.state_unit(layer, kind, 0, "live text")
        ck = self.checkpoint()
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if key not in self._live:
            from probe.record.recorder import record_arrays
            with self._lock, interactive_threads():  # the cores free now: both alone, one beside a busy neighbour
                arrays = record_arrays(ck.model, ck.vocab, text, gates=True, topk=5)
            _lru_put(self._live, key, arrays, 4)
        arrays = self._live[key]
        L, kind = u.layer, u.kind
        if array_name(L, kind) not in arrays:
            raise ProbeError(f"live text has no {u.site.label}: pick a layer and kind of the model")
        acts = np.asarray(arrays[array_name(L, kind)], np.float32)
        n = len(acts)
        if "char_of_row" in arrays:
            cor = arrays["char_of_row"]
            chars = [text[c] if (r == 0 or cor[r - 1] != c) else "" for r, c in enumerate(cor)]
        else:
            chars = list(text)
        topk = None
        if "topk_ids" in arrays:
            topk = [[(ck.vocab.symbol(int(i)), float(p)) for i, p in zip(ri, rp)]
                    for ri, rp in zip(arrays["topk_ids"], arrays["topk_probs"])]
        loss = arrays.get("loss_bits")
        return payload(wid=f"live:{key[:16]}:{L}:{kind}", start=0, n_rows=n, chars=chars, acts=acts, layer=L,
                       kind=kind, topk=topk, loss=loss)

    def clamp(self, prime, layer, kind, index, value, length, seed) -> tuple[str, str]:
        """Text generated without and with the unit clamped (same seed)."""
        from dashboards.clamp import MAX_LENGTH, MAX_PRIME, generate_clamped
        u = self.state_unit(layer, kind, index, "clamping")
        if u.kind not in ("h", "c"):
            raise ProbeError(f"cannot clamp {u.name}: pick an h or c unit (a gate is computed, not carried)")
        v = as_float(value, "clamp value", -1e4, 1e4)
        n = as_int(length, "length", 1, MAX_LENGTH)
        s = as_int(seed, "seed", 0, MAX_SEED)
        prime = as_text(prime, "prime text", MAX_LIVE_CHARS, required=False)[-MAX_PRIME:]
        ck = self.checkpoint()
        with self._lock, interactive_threads():
            free = generate_clamped(ck.model, ck.vocab, prime, n, unit=None, seed=s)
            held = generate_clamped(ck.model, ck.vocab, prime, n, unit=u, value=v, seed=s)
        return free, held

    # ------------------------------------------------------------------ model views
    MODEL_VIEWS = {"training": "training curve", "samples": "sample evolution", "saturation": "gate saturation",
                   "probes": "probe results per layer", "embedding": "PCA of the chosen layer and kind"}

    def model_view(self, name, concept=None, layer=None, kind=None):
        """A plotly figure for one model view, computed on first use (the embedding: of the chosen layer/kind)."""
        if not isinstance(name, str) or name not in self.MODEL_VIEWS:
            raise ProbeError(f"no model view {shown(name, 30)}")
        names = self.concept_names()
        concept = concept if isinstance(concept, str) and concept in names else None  # one cache key per view
        if name == "embedding":
            u = self.state_unit(layer, kind, 0, "the PCA view")
            layer, kind = u.layer, u.kind
        key = (name, concept if name in ("probes", "embedding") else None,
               (layer, kind) if name == "embedding" else None)
        if key not in self._views:
            self._views[key] = self._build_view(name, concept, layer, kind)
        return self._views[key]

    def _build_view(self, name, concept, layer=None, kind=None):
        from probe import figures
        if name in ("training", "samples"):
            from probe.model import checkpoint
            p = self.checkpoint_path()
            if p is None:
                raise ProbeError("no checkpoint: start the dashboard with --checkpoint RUN for training views")
            meta = checkpoint.read_meta(checkpoint.resolve(p))
            try:
                return figures.training_curve(meta) if name == "training" else figures.samples_table(meta)
            except ValueError as e:
                raise ProbeError(str(e)) from None
        try:
            if name == "saturation":
                from probe.analysis.saturation import gate_saturation
                return figures.saturation_figure(_table(gate_saturation(self.rec)))
            c = self._view_concept(concept)
            if name == "probes":
                from probe.analysis.probes import fit_probes
                return figures.probe_figure(_table(fit_probes(self.rec, c)))
            from probe.analysis.embedding import embed_states
            df = embed_states(self.rec, layer=layer, kind=kind, method="pca", concept=c, n=3000)
            return figures.embedding_figure(df, concept=c.name, method="pca",
                                            title=f"PCA of L{layer}.{kind}, colored by {c.name}")
        except ValueError as e:
            raise ProbeError(str(e).splitlines()[0][:200]) from None

    def _view_concept(self, concept):
        names = self.concept_names()
        if not names:
            raise ProbeError("no built-in concepts available")
        from probe.analysis import concepts
        default = "column" if "column" in names else names[0]
        return concepts.builtin(concept if concept in names else default)

    # ------------------------------------------------------------------ Δloss against a baseline
    def baseline_delta(self, baseline) -> tuple[str, np.ndarray]:
        """(spec, Δ per character = bits(baseline) - bits(model)) over the whole recorded text, cached per
        baseline. The model's bits come from the recording's loss_bits; the n-gram is fitted on the training
        split of the checkpoint (and cached on disk by probe.model.ngram.fit_cached)."""
        order = as_baseline(baseline)
        spec = f"ngram:{order}"
        with self._delta_lock:
            if spec in self._deltas:
                self._deltas.move_to_end(spec)
                return spec, self._deltas[spec]
            if self.checkpoint_path() is None:
                raise ProbeError("no checkpoint: start the dashboard with --checkpoint RUN to compare with an "
                                 "n-gram (it is fitted on the checkpoint's training split)")
            from probe.analysis.compare import ngram_char_bits, recording_char_bits, recording_text
            from probe.record.source import recording_checkpoint
            ck = recording_checkpoint(self.rec, self.checkpoint(), same_weights=False)
            if self.rec.n_rows < order:
                raise ProbeError(f"the recorded text holds {self.rec.n_rows:,} symbols, fewer than the n-gram "
                                 f"order {order}")
            delta = ngram_char_bits(order, recording_text(self.rec), ck) - recording_char_bits(self.rec)
            _lru_put(self._deltas, spec, delta, 4)
            return spec, delta

    def delta_window(self, baseline, start):
        """(figure, summary line): the window of rows starting at `start`, its characters colored by Δloss."""
        from probe.figures.delta_plots import delta_heatmap
        as_baseline(baseline)  # both inputs checked before any n-gram is fitted
        s, e = window_bounds(start, self.rec.n_rows, self.window_rows)
        spec, delta = self.baseline_delta(baseline)
        cor = self.rec.char_of_row
        c0, c1 = int(cor[s]), int(cor[e - 1]) + 1
        fig = delta_heatmap(self.rec.text, delta, c0, c1, a="model", b=spec)
        here, ok = delta[c0:c1], np.isfinite(delta)
        mean_here = float(np.nanmean(here)) if np.isfinite(here).any() else float("nan")
        summary = (f"Δ = bits({spec}) − bits(model): {mean_here:+.3f} bits/char in characters "
                   f"{c0:,}–{c1 - 1:,}, {float(delta[ok].mean()):+.3f} over the whole text; green where the model "
                   f"wins, blue where {spec} wins")
        return fig, summary

    # ------------------------------------------------------------------ ablation of one unit over the window
    ABLATION_RANDOM = 10  # random units in the dashboard's null (the CLI's default is 20)

    def ablation(self, layer, kind, index, start, builtin=None, pattern=None, flags=""):
        """(Δloss figure of the window, summary line, numbers): the unit held at its mean over the current
        window's text, the model run over that text from a fresh state, against random units of its layer and
        kind; inside and outside the chosen concept (built-in or regex) when it occurs in the window."""
        from probe.analysis.ablate import ablate
        from probe.figures.delta_heatmap import delta_heatmap
        from probe.model.intervene import WHY_NO_GATES
        u = self.state_unit(layer, kind, index, "ablation in the dashboard (probe ablate --sae removes features)")
        if u.kind not in ("h", "c"):
            raise ProbeError(f"cannot ablate {u.name}: {WHY_NO_GATES}")
        s, e = window_bounds(start, self.rec.n_rows, self.window_rows)
        cor = self.rec.char_of_row
        c0, c1 = int(cor[s]), int(cor[e - 1]) + 1
        concept, note = None, ""
        if (isinstance(builtin, str) and builtin) or (isinstance(pattern, str) and pattern.strip()):
            concept, note = self._window_concept(builtin, pattern, flags, c0, c1)
        ck = self.checkpoint()
        k = min(self.ABLATION_RANDOM, self.rec.hidden_size - 1)
        key = (u.name, c0, c1, None if concept is None else concept.description)
        with self._lock:
            if key not in self._ablations:
                res = ablate(ck, u.name, self.rec.text[c0:c1], mode="mean", concept=concept, n_random=k, n_boot=200,
                             block=min(256, max(2, (c1 - c0) // 8)))
                _lru_put(self._ablations, key, res, 8)
            res = self._ablations[key]
        t = res.table.iloc[0]
        parts = [f"{u.name} held at its mean {res.values[u.name]:+.4g} over characters {c0:,}\u2013{c1 - 1:,}: "
                 f"\u0394loss {t.delta_all:+.4f} bits/char [{t.lo_all:+.4f}, {t.hi_all:+.4f}]"]
        if res.concept is not None:
            parts.append(f"inside {res.concept} {t.delta_in:+.4f} [{t.lo_in:+.4f}, {t.hi_in:+.4f}], outside "
                         f"{t.delta_out:+.4f} [{t.lo_out:+.4f}, {t.hi_out:+.4f}]")
        if k:
            parts.append(f"rank {res.rank} of {k + 1} against {k} random units of {u.site.label}, p = {res.p_value:.3f}")
        fig = delta_heatmap(res.text, res.char_delta(), 0, len(res.text),
                            title=f"\u0394loss per character with {u.name} held at its mean (positive: worse without it)")
        numbers = {"unit": u.name, "start": c0, "stop": c1, **res.summary()}
        return fig, "; ".join(parts) + note, numbers

    def _window_concept(self, builtin, pattern, flags, c0: int, c1: int):
        """(a binary concept labelling characters c0..c1 of the text, or None, and a note saying why not)."""
        from probe.analysis.concepts import from_function
        c, _, _ = self.make_concept(builtin, pattern, flags)
        if c.label_type != "binary":
            return None, f" ({c.name} is {c.label_type}: no inside and outside)"
        labels = np.asarray(c.labels(self.rec.text))[c0:c1].astype(np.uint8)
        if not 0 < int(labels[1:].sum()) < c1 - c0 - 1:
            return None, f" ({c.name} does not occur in this window, or covers all of it: no inside and outside)"
        return from_function(c.name, lambda text: labels, "binary", f"{c.description}, characters {c0}:{c1}"), ""


def _recording_atlas(rec):
    """The recording's own atlas (probe.analysis.atlas.atlas_for), or None when it has none."""
    try:
        from probe.analysis.atlas import atlas_for
    except ModuleNotFoundError as e:  # an older probe without atlases
        if e.name != "probe.analysis.atlas":
            raise
        return None
    return atlas_for(rec)


def _cell(v):
    """A JSON-safe table cell: rounded floats, None for NaN, plain ints."""
    if isinstance(v, (float, np.floating)):
        return round(float(v), 4) if np.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _table(result):
    return getattr(result, "table", result)


def _show(s: str) -> str:
    return s.replace("\n", "\u21b5").replace("\t", "\u2192")
