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
from dashboards.windows import WINDOW_ROWS, as_int, check_unit, payload, window_payload
from probe.errors import ProbeError
from probe.record.recording import Recording, Unit, array_name

MAX_LIVE_CHARS = 20_000
MAX_TABLE_ROWS = 200


def _lru_put(cache: OrderedDict, key, value, size: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)


class DashboardService:
    """The recording, an optional model for live text, and small caches."""

    def __init__(self, recording: str | Path | Recording, checkpoint: str | Path | None = None, *,
                 window_rows: int = WINDOW_ROWS, regex_timeout: float = safe_regex.TIMEOUT_S):
        self.rec = recording if isinstance(recording, Recording) else Recording.open(recording)
        self.window_rows = int(window_rows)
        self.regex_timeout = regex_timeout
        self._checkpoint_arg = checkpoint
        self._ck = None
        self._lock = threading.Lock()
        self._live: OrderedDict = OrderedDict()
        self._cards: OrderedDict = OrderedDict()
        self._views: dict = {}

    # ------------------------------------------------------------------ description
    def describe(self) -> str:
        r = self.rec
        return (f"{r.path.name}: {r.n_rows:,} rows, {r.model_kind.upper()} {r.num_layers}x{r.hidden_size}, "
                f"kinds {', '.join(r.kinds)}")

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
    def window(self, start, layer, kind, mark=None) -> dict:
        if mark is not None:
            if not (isinstance(mark, (list, tuple)) and len(mark) == 2):
                raise ProbeError("malformed highlight range")
            mark = [as_int(mark[0], "highlight start"), as_int(mark[1], "highlight end")]
        return window_payload(self.rec, start, layer, kind, size=self.window_rows, mark=mark)

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
        if not isinstance(name, str):
            raise ProbeError("malformed unit name")
        return self.rec.check_unit(name)

    def unit(self, layer, kind, index) -> Unit:
        return check_unit(self.rec, layer, kind, index)

    # ------------------------------------------------------------------ find neurons
    def concept_names(self) -> list[str]:
        try:
            from probe.analysis import concepts
        except ImportError:
            return []
        b = getattr(concepts, "BUILTIN", {})
        return sorted(b) if isinstance(b, dict) else sorted(getattr(c, "name", str(c)) for c in b)

    def make_concept(self, builtin, pattern, flags=""):
        """A built-in concept by name, or a regex concept whose matching ran with a time limit."""
        if isinstance(pattern, str) and pattern.strip():
            flags = flags if isinstance(flags, str) else ""
            labels, n, cut = safe_regex.regex_labels(pattern, self.rec.text, flags, timeout=self.regex_timeout)
            if n == 0:
                raise ProbeError(f"the regular expression {pattern!r} matches nothing in this text")
            note = f" (stopped at the first {n:,} matches)" if cut else ""
            from probe.analysis.concepts import from_function
            values = labels.astype(np.uint8)
            concept = from_function(f"/{pattern}/{flags}", lambda text: values, "binary",
                                    f"inside matches of /{pattern}/{flags}: {n:,} matches{note}")
            return concept, n, cut
        if not isinstance(builtin, str) or not builtin:
            raise ProbeError("type a regular expression or pick a built-in concept")
        from probe.analysis import concepts
        if builtin not in self.concept_names():
            raise ProbeError(f"no built-in concept {builtin[:40]!r}")
        return concepts.builtin(builtin), None, False

    def find(self, builtin, pattern, flags="", kinds=None) -> tuple[list[dict], str]:
        """Rows of the find-neurons table (held-out scores) and a one-line summary."""
        kinds = [k for k in (kinds or []) if isinstance(k, str) and k in self.rec.kinds] or None
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
        if not isinstance(data, dict):
            raise ProbeError("malformed selection")
        res = brush(self.rec, data.get("start"), data.get("stop"))
        units = [{"id": r["unit"], "unit": r["unit"], "score": round(float(r["score"]), 3),
                  "sign": "on" if r["sign"] > 0 else "off", "inside": round(float(r["inside"]), 4),
                  "outside": round(float(r["outside"]), 4), "separation": round(float(r["separation"]), 3)}
                 for r in res.units.to_dict("records")]
        matches = [{"id": str(i), "row": m["start"], "length": m["stop"] - m["start"],
                    "context": _show(m["before"]) + "[" + _show(m["match"]) + "]" + _show(m["after"])}
                   for i, m in enumerate(res.matches)]
        text = self.rec.text[int(self.rec.char_of_row[res.start]):int(self.rec.char_of_row[res.stop - 1]) + 1]
        summary = (f"selection rows {res.start}:{res.stop} {text[:60]!r}: {len(units)} units; "
                   f"the pattern of {', '.join(res.pattern_units)} recurs at {res.n_matches} other places")
        return units, matches, summary

    # ------------------------------------------------------------------ neuron card
    def card(self, layer, kind, index):
        u = self.unit(layer, kind, index)
        if u.name not in self._cards:
            from probe.analysis.neuron_card import neuron_card
            ck = self.checkpoint_path()
            _lru_put(self._cards, u.name, neuron_card(self.rec, u.name, n_top=20,
                                                      checkpoint=str(ck) if ck else None), 16)
        return self._cards[u.name]

    # ------------------------------------------------------------------ live text
    def live(self, text, layer, kind) -> dict:
        """Run the model on typed text (cached per text) and return a payload for one layer and kind."""
        if not isinstance(text, str) or not text:
            raise ProbeError("type or paste some text first")
        if len(text) > MAX_LIVE_CHARS:
            raise ProbeError(f"live text is limited to {MAX_LIVE_CHARS:,} characters (got {len(text):,})")
        ck = self.checkpoint()
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if key not in self._live:
            from probe.record.recorder import record_arrays
            with self._lock:
                arrays = record_arrays(ck.model, ck.vocab, text, gates=True, topk=5)
            _lru_put(self._live, key, arrays, 4)
        arrays = self._live[key]
        if not isinstance(kind, str) or array_name(as_int(layer, "layer"), kind) not in arrays:
            raise ProbeError(f"live text has no {str(layer)[:5]}/{str(kind)[:5]}: pick a layer and kind of the model")
        L = as_int(layer, "layer")
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
        from dashboards.clamp import generate_clamped
        ck = self.checkpoint()
        if kind not in ("h", "c"):
            raise ProbeError(f"cannot clamp a {str(kind)[:5]!r} unit: pick an h or c unit")
        u = Unit(as_int(layer, "layer"), kind, as_int(index, "unit index"))
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ProbeError(f"the clamp value must be a number, not {str(value)[:20]!r}") from None
        n, s = as_int(length, "length"), as_int(seed, "seed")
        prime = prime if isinstance(prime, str) else ""
        with self._lock:
            free = generate_clamped(ck.model, ck.vocab, prime, n, unit=None, seed=s)
            held = generate_clamped(ck.model, ck.vocab, prime, n, unit=u, value=v, seed=s)
        return free, held

    # ------------------------------------------------------------------ model views
    MODEL_VIEWS = {"training": "training curve", "samples": "sample evolution", "saturation": "gate saturation",
                   "probes": "probe results per layer", "embedding": "PCA of the chosen layer and kind"}

    def model_view(self, name, concept=None, layer=None, kind=None):
        """A plotly figure for one model view, computed on first use (the embedding: of the chosen layer/kind)."""
        if not isinstance(name, str) or name not in self.MODEL_VIEWS:
            raise ProbeError(f"no model view {str(name)[:30]!r}")
        concept = concept if isinstance(concept, str) else None
        if name == "embedding":
            u = self.unit(layer, kind, 0)
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
        except ImportError as e:
            raise ProbeError(f"this view is not available in this installation ({e.name})") from None
        except ValueError as e:
            raise ProbeError(str(e).splitlines()[0][:200]) from None

    def _view_concept(self, concept):
        names = self.concept_names()
        if not names:
            raise ProbeError("no built-in concepts available")
        from probe.analysis import concepts
        default = "column" if "column" in names else names[0]
        return concepts.builtin(concept if concept in names else default)


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
