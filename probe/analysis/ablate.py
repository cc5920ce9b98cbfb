"""Ablation: hold units at a value over a text and measure what the model loses, against a random-unit null.

Per predicted symbol i (1..n-1) the change of loss Δ_i = loss_held(i) - loss_clean(i) in bits (positive:
the model predicts symbol i worse without the unit). Δ is reported overall, inside a concept and outside it
(a symbol counts as inside when the concept labels it), each with a 95% interval from a block bootstrap over
the text (contiguous blocks: neighbouring characters are not independent). The null: the same ablation of
K random units of the same layers and kinds, each in its own stream of one batch beside a clean stream
(see `probe.model.hooks`; the clean stream runs the same arithmetic, so a hold that changes nothing gives
Δ = 0 exactly); the target's rank among them and the empirical p-value (C + 1) / (K + 1), C being
the random sets whose effect is at least the target's, on the concept's inside when there is a concept,
else overall.

Modes: `zero`, `mean` (each unit's mean over the text, of the state that is held: h, or the carried c),
or a number. Holding follows `probe.model.intervene` (a held c is carried; h is computed from it).

Features of a sparse autoencoder (`sae=`, units named `L2.h.f123`) are removed instead of held: after every
step the SAE's encoder reads the site's state and each removed feature's decoder contribution z_f W_dec[f]
is subtracted from it, so the next step and the layers above see the edited state. The null: K random
features of the same SAE, drawn among those active somewhere on the text (a dead feature's removal
changes nothing, bit for bit).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from probe.analysis.concepts import Concept, as_concept
from probe.checks import ParamError, check_int
from probe.errors import ProbeError
from probe.files import atomic_folder
from probe.model.checkpoint import Checkpoint
from probe.model.hooks import run_with_hooks
from probe.model.intervene import Hold, check_unit, hold_hooks
from probe.names import array_name, unit_name
from probe.record.recorder import TextToRecord, resolve_text
from probe.record.recording import char_of_row_for_bytes
from probe.record.source import recording_checkpoint

LN2 = math.log(2.0)
CHUNK = 1024  # symbols per walk (memory: streams x CHUNK x vocab logits)
INPUT_BUDGET = 256 << 20  # bytes of the held layer's input kept from the mean pass for the held pass
CONTEXT = 30  # characters of context shown on each side of a changed character


@dataclass
class AblationResult:
    """An ablation's numbers; `table` has one row per held set (the target first, then the random ones)."""

    units: list[str]
    mode: str
    values: dict[str, float]
    concept: str | None
    text: str
    symbols: int
    base_bits: float  # mean clean loss, bits per predicted symbol
    table: pd.DataFrame
    delta: np.ndarray  # (symbols,) Δloss in bits of predicting each symbol (NaN for the first)
    inside: np.ndarray | None  # (symbols,) bool, or None without a concept
    top: pd.DataFrame  # the symbols whose probability changed most, with context
    rank: int
    p_value: float
    n_random: int
    block: int
    seconds: float = 0.0
    text_bytes: bytes | None = None  # byte models: the symbols
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        t = self.table.iloc[0]
        out = {"units": self.units, "mode": self.mode, "values": self.values, "concept": self.concept,
               "symbols": self.symbols, "base_bits": self.base_bits, "n_random": self.n_random,
               "rank": self.rank, "p_value": self.p_value, "block": self.block, "seconds": self.seconds}
        for part in ("all", "in", "out"):
            for col in (f"delta_{part}", f"lo_{part}", f"hi_{part}"):
                if col in t and not pd.isna(t[col]):
                    out[col] = float(t[col])
        return out

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "sets": json.loads(self.table.to_json(orient="records")),
                "top": json.loads(self.top.to_json(orient="records")), **self.extra}

    def char_delta(self) -> np.ndarray:
        """Δloss per character of `text` (byte models: the sum over a character's bytes)."""
        if len(self.text) == self.symbols:
            return self.delta
        cor = char_of_row_for_bytes(self.text_bytes)
        out = np.zeros(len(self.text), dtype=np.float64)
        np.add.at(out, cor, np.nan_to_num(self.delta))
        return out.astype(np.float32)

    def per_symbol(self) -> pd.DataFrame:
        """One row per symbol: position, char, inside, delta_bits."""
        df = pd.DataFrame({"position": np.arange(self.symbols), "delta_bits": self.delta})
        if len(self.text) == self.symbols:
            df.insert(1, "char", list(self.text))
        if self.inside is not None:
            df["inside"] = self.inside.astype(np.uint8)
        return df


# --------------------------------------------------------------------------- the inputs

def _groups(model, units: list[str]) -> dict[tuple[int, str], list[int]]:
    """(layer, kind) -> target unit indices, checked."""
    if not units:
        raise ParamError("units", "must name at least one unit to hold, e.g. L2.c.502")
    groups: dict[tuple[int, str], list[int]] = {}
    for u in units:
        layer, kind, index = check_unit(model, u, "units")
        if index in groups.get((layer, kind), []):
            raise ParamError("units", f"{u}: given twice")
        groups.setdefault((layer, kind), []).append(index)
    return groups


def parse_mode(mode) -> tuple[str, float | None]:
    """'mean' | 'zero' | 'value=V' | a number -> (name, value or None for mean)."""
    if isinstance(mode, (int, float)) and not isinstance(mode, bool):
        v = float(mode)
    elif mode == "zero":
        return "zero", 0.0
    elif mode == "mean":
        return "mean", None
    elif isinstance(mode, str) and mode.startswith("value="):
        try:
            v = float(mode[6:])
        except ValueError:
            raise ParamError("mode", f"value=V needs a number, not {mode[6:]!r}") from None
    else:
        raise ParamError("mode", f"must be mean, zero or value=V (or a number), not {str(mode)[:30]!r}")
    if not math.isfinite(v):
        raise ParamError("mode", f"value must be a finite number, not {v}")
    return f"value={v:g}", v


def _random_sets(groups, H: int, k: int, seed: int, among: np.ndarray | None = None
                 ) -> list[dict[tuple[int, str], list[int]]]:
    """K random sets with the targets' layers and kinds, none holding a target unit (drawn `among` these
    indices when given, else among all H)."""
    rng = np.random.default_rng(seed)
    sets: list[dict] = [dict() for _ in range(k)]
    for key, idx in groups.items():
        m = len(idx)
        pool = np.setdiff1d(np.arange(H) if among is None else among, idx)
        if k > len(pool):
            raise ParamError("n_random", f"is {k}, but L{key[0]}.{key[1]} has only {len(pool)} other units to "
                                         f"draw random units from")
        if k * m <= len(pool):  # disjoint sets
            perm = rng.permutation(pool)[:k * m].reshape(k, m)
        else:
            perm = np.stack([rng.choice(pool, m, replace=False) for _ in range(k)])
        for j in range(k):
            sets[j][key] = [int(i) for i in perm[j]]
    return sets


def _symbol_labels(concept: Concept, tt: TextToRecord, byte_model: bool) -> np.ndarray:
    labels = np.asarray(concept.labels(tt.text))
    if concept.label_type != "binary":
        raise ProbeError(f"the concept {concept.name} is {concept.label_type}; ablation needs a binary concept "
                         f"(a built-in one like url, or a regex)")
    if byte_model:
        labels = labels[char_of_row_for_bytes(tt.raw)]
    inside = labels.astype(bool)
    n_in = int(inside[1:].sum())
    if n_in == 0:
        raise ProbeError(f"the concept {concept.name} matches nothing in the text ({len(tt.text):,} characters): "
                         f"nothing to measure inside it")
    if n_in == len(inside) - 1:
        raise ProbeError(f"the concept {concept.name} matches the whole text: nothing to compare it with")
    return inside


# --------------------------------------------------------------------------- the walks

def _loss_bits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits, (T,) targets -> (B, T) loss in bits."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -logp.gather(-1, targets.view(1, -1, 1).expand(logits.shape[0], -1, 1)).squeeze(-1) / LN2


def _lstm_cells(layer, inp: torch.Tensor, h: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
    """The cell states (T, H) of one fused LSTM layer run over `inp` (T, in) with outputs `h` (T, H), from
    (h0, c0) (H,): every step's gates in two matmuls, then c_t = f_t c_{t-1} + i_t g_t (one op a step)."""
    H = h.shape[1]
    h_prev = torch.cat([h0.view(1, -1), h[:-1]])
    g = torch.addmm(layer.bias_ih_l0 + layer.bias_hh_l0, inp, layer.weight_ih_l0.t())
    g.addmm_(h_prev, layer.weight_hh_l0.t())
    i, f, gg = g[:, :H].sigmoid(), g[:, H:2 * H].sigmoid(), g[:, 2 * H:3 * H].tanh()
    ig = i * gg
    cs = torch.empty_like(h)
    c = c0.view(-1)
    for t in range(len(h)):
        c = torch.addcmul(ig[t], f[t], c, out=cs[t])
    return cs


@torch.no_grad()
def _means(model, ids: torch.Tensor, groups, keep_input: int | None) -> tuple[dict[str, torch.Tensor], list | None]:
    """The mean over the text of every unit of each held array (h, or the carried c), from the fused layers
    up to the highest held one; and, when `keep_input` is a layer, its input per chunk (to start the held
    pass there) if that fits in INPUT_BUDGET bytes."""
    top = max(l for l, _ in groups)
    layers = {l for l, _ in groups} | ({keep_input} if keep_input else set())
    want = {array_name(l - 1, "h") for l in layers if l > 0} | {array_name(l, "h") for l in layers}
    if any(l == 0 for l, k in groups if k == "c"):
        want.add("embed")
    keep = bool(keep_input) and len(ids) * model.cfg.rnn_size * 4 <= INPUT_BUDGET
    inputs: list | None = [] if keep else None
    sums = {array_name(l, k): torch.zeros(model.cfg.rnn_size, dtype=torch.float64) for (l, k) in groups}
    state = None
    for a in range(0, len(ids), CHUNK):
        w = run_with_hooks(model, ids[a:a + CHUNK].view(1, -1), state, cache=want, stop=top + 1)
        for (l, kind), total in zip(groups, sums.values()):
            h = w.cache[array_name(l, "h")][0]
            if kind == "h":
                total += h.double().sum(0)
                continue
            inp = w.cache[array_name(l - 1, "h") if l > 0 else "embed"][0]
            h0, c0 = (state[l][0][0, 0], state[l][1][0, 0]) if state is not None else (h.new_zeros(h.shape[1]),) * 2
            total += _lstm_cells(model.layers[l], inp, h, h0, c0).double().sum(0)
        if inputs is not None:
            inputs.append(w.cache[array_name(keep_input - 1, "h")])
        state = w.state
    return {k: (v / len(ids)).float() for k, v in sums.items()}, inputs


@torch.no_grad()
def _held_pass(model, ids: torch.Tensor, holds: list[Hold], streams: int, start: int = 0,
               inputs: list | None = None, hooks: dict | None = None) -> np.ndarray:
    """Loss per prediction (streams, n-1) with `holds` in their streams (a stream without holds: clean, by
    the same arithmetic as the others). With `inputs` (layer `start`'s input per chunk of CHUNK symbols,
    from `_means`) the layers below `start` do not run again. `hooks`: step hooks to use instead of holds."""
    hooks = hold_hooks(model, holds, streams=streams) if hooks is None else hooks
    losses, state = [], None
    n = len(ids)
    for j, a in enumerate(range(0, n - 1, CHUNK)):
        b = min(a + CHUNK, n - 1)
        if inputs is not None:
            x = inputs[j][:, :b - a]
            w = run_with_hooks(model, x, state, step_hooks=hooks, streams=streams, start=start)
        else:
            w = run_with_hooks(model, ids[a:b].view(1, -1), state, step_hooks=hooks, streams=streams)
        state = w.state
        losses.append(_loss_bits(w.logits, ids[a + 1:b + 1]))
    return torch.cat(losses, dim=1).numpy()


def _run_sets(model, ids: torch.Tensor, sets: list[dict], value: float | None, means: dict | None = None
              ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Clean loss (n-1,), loss with each of `sets` held in its own stream (len(sets), n-1), and the values
    held (unit -> value; `value` None: each unit's mean over the text, from `means` or computed here)."""
    keys = {key for held_set in sets for key in held_set}
    low = min(l for l, _ in keys)
    inputs = None
    if value is None and means is None:
        means, inputs = _means(model, ids, keys, low if low > 0 else None)
    holds, values = [], {}
    for s, held_set in enumerate(sets):  # stream 0 runs clean, set s in stream s + 1
        for (l, k), idx in held_set.items():
            for i in idx:
                v = float(means[array_name(l, k)][i]) if value is None else value
                holds.append(Hold(unit_name(l, k, i), v, stream=s + 1))
                values[unit_name(l, k, i)] = v
    losses = _held_pass(model, ids, holds, len(sets) + 1, low if inputs is not None else 0, inputs)
    return losses[0], losses[1:], values


# --------------------------------------------------------------------------- statistics

def block_bootstrap(delta: np.ndarray, masks: list[np.ndarray], block: int, n_boot: int = 1000,
                    seed: int = 0) -> list[tuple[float, float]]:
    """95% intervals of the mean of `delta` over each mask, resampling contiguous blocks of `block` symbols."""
    n = len(delta)
    nb = max(1, math.ceil(n / block))
    starts = np.arange(nb) * block
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(nb, np.full(nb, 1.0 / nb), size=n_boot).astype(np.float64)  # (n_boot, nb)
    out = []
    for m in masks:
        s = np.add.reduceat(np.where(m, delta, 0.0), starts)
        c = np.add.reduceat(m.astype(np.float64), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (counts @ s) / (counts @ c)
        means = means[np.isfinite(means)]
        out.append((float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))) if len(means)
                   else (float("nan"), float("nan")))
    return out


def _top_changes(tt: TextToRecord, delta: np.ndarray, clean: np.ndarray, held: np.ndarray, n_top: int,
                 byte_model: bool, vocab) -> pd.DataFrame:
    order = np.argsort(-np.abs(np.nan_to_num(delta)), kind="stable")[:n_top]
    cor = char_of_row_for_bytes(tt.raw) if byte_model else None
    rows = []
    for i in order:
        c = int(cor[i]) if cor is not None else int(i)
        rows.append({"position": int(i), "char": vocab.symbol(int(tt.ids[i])) if byte_model else tt.text[c],
                     "before": tt.text[max(0, c - CONTEXT):c], "after": tt.text[c + 1:c + 1 + CONTEXT // 2],
                     "p_clean": float(2.0 ** -clean[i - 1]), "p_held": float(2.0 ** -held[i - 1]),
                     "delta_bits": float(delta[i])})
    return pd.DataFrame(rows, columns=["position", "char", "before", "after", "p_clean", "p_held", "delta_bits"])


# --------------------------------------------------------------------------- the analysis

def ablate(checkpoint: Checkpoint | str | Path, units: list[str] | str, text=None, *, mode="mean",
           concept: Concept | str | None = None, n_random: int = 20, part: str = "val", char_range=None,
           max_chars: int | None = None, block: int = 256, n_boot: int = 1000, n_top: int = 20, seed: int = 0,
           text_source: str | None = None, sae=None) -> AblationResult:
    """Hold `units` at `mode` over `text` (default: the checkpoint's `part` split) and measure Δloss.

    units: names like `L2.c.502` (held together, in one stream); n_random: K random sets for the null
    (0: none). Text arguments as `probe.record.recorder.resolve_text`. Returns an AblationResult.
    sae: an SAE folder (or a loaded SAE, `probe.sae.io.load_sae`) trained on this model: `units` are then its
    features (`L2.h.f123`), removed together at every step (mode `remove`; `mode` is not used), and the null
    is K random sets of its features active on the text.
    """
    import time

    from probe.model import checkpoint as ckpt_mod
    t0 = time.perf_counter()
    ck = checkpoint if isinstance(checkpoint, Checkpoint) else ckpt_mod.load(checkpoint)
    model = ck.model
    units = [units] if isinstance(units, str) else [str(u) for u in units]
    loaded = _load_sae(sae, ck) if sae is not None else None
    groups = _groups(model, units) if loaded is None else _feature_groups(loaded, units)
    mode_name, value = parse_mode(mode) if loaded is None else ("remove", None)
    n_random = check_int("n_random", n_random, min=0)
    block, n_boot = check_int("block", block, min=2), check_int("n_boot", n_boot, min=100)
    n_top, seed = check_int("n_top", n_top, min=0), check_int("seed", seed)
    concept = as_concept(concept)
    # units: the random sets now; features: drawn among those active on the text, once it has run (checked here)
    sets = _random_sets(groups, model.cfg.rnn_size if loaded is None else loaded.sae.d_sae, n_random, seed)
    tt = resolve_text(ck, text, part=part, char_range=char_range, max_chars=max_chars, text_source=text_source)
    byte_model = ck.vocab.encoding == "byte"
    n = len(tt.ids)
    if n < 2:
        raise ProbeError(f"the text has {n} symbol(s): ablation needs at least 2 (one prediction)")
    inside = _symbol_labels(concept, tt, byte_model) if concept is not None else None
    ids = torch.as_tensor(tt.ids.astype(np.int64))

    extra = {"text": tt.info}
    if loaded is None:
        all_sets = [groups] + sets
        clean, held, values = _run_sets(model, ids, all_sets, value)
    else:
        active, mean_z = _feature_census(model, ids, loaded)
        live = np.flatnonzero(active > 0)
        target = next(iter(groups.values()))
        enough = len(np.setdiff1d(live, target)) >= n_random
        sets = _random_sets(groups, len(active), n_random, seed, among=live if enough else None)
        all_sets = [groups] + sets
        clean, held = _run_feature_sets(model, ids, all_sets, loaded)
        site = loaded.site.features
        values = {site.unit(i).name: float(mean_z[i]) for i in target}
        extra["sae"] = {"name": str(loaded.name), "site": loaded.site.label, "null": "active" if enough else "all",
                        "active_features": int(len(live)),
                        "active_steps": {site.unit(i).name: int(active[i]) for i in target}}
    values = {u: values[u] for u in (unit_name(l, k, i) for (l, k), idx in groups.items() for i in idx)}

    deltas = np.full((len(all_sets), n), np.nan, dtype=np.float32)
    deltas[:, 1:] = held - clean[None, :]
    pred = np.zeros(n, dtype=bool)
    pred[1:] = True
    masks = {"all": pred} if inside is None else {"all": pred, "in": pred & inside, "out": pred & ~inside}
    rows = []
    for s, held_set in enumerate(all_sets):
        d = deltas[s]
        row = {"set": "target" if s == 0 else f"random {s}",
               "units": " ".join(unit_name(l, k, i) for (l, k), idx in held_set.items() for i in idx)}
        for part_name, m in masks.items():
            row[f"delta_{part_name}"] = float(d[m].mean())
        if s == 0:
            cis = block_bootstrap(np.nan_to_num(d), list(masks.values()), block, n_boot, seed)
            for part_name, (lo, hi) in zip(masks, cis):
                row[f"lo_{part_name}"], row[f"hi_{part_name}"] = lo, hi
        rows.append(row)
    table = pd.DataFrame(rows)
    key = "delta_in" if inside is not None else "delta_all"
    effects = table[key].to_numpy()
    c = int((effects[1:] >= effects[0]).sum())
    return AblationResult(
        units=units, mode=mode_name, values=values, concept=None if concept is None else concept.name,
        text=tt.text, symbols=n, base_bits=float(clean.mean()), table=table, delta=deltas[0], inside=inside,
        top=_top_changes(tt, deltas[0], clean, held[0], n_top, byte_model, ck.vocab), rank=c + 1,
        p_value=(c + 1) / (n_random + 1), n_random=n_random, block=block,
        seconds=time.perf_counter() - t0, text_bytes=tt.raw, extra=extra)


# --------------------------------------------------------------------------- removing SAE features

def _load_sae(sae, ck: Checkpoint):
    """The SAE (a folder or a loaded one), checked to be of a state site of `ck`'s weights."""
    from probe.sae.features import check_checkpoint
    from probe.sae.io import load_sae
    loaded = load_sae(sae) if isinstance(sae, (str, Path)) else sae
    check_checkpoint(loaded, ck)
    return loaded


def _feature_groups(loaded, units: list[str]) -> dict[tuple[int, str], list[int]]:
    """{(layer, feature kind): feature indices} of `units`, all features of `loaded`, checked."""
    from probe.names import parse_unit
    if not units:
        raise ParamError("units", "must name at least one feature to remove, e.g. L2.h.f123")
    site, d = loaded.site.features, int(loaded.sae.W_dec.shape[0])
    idx: list[int] = []
    for name in units:
        try:
            u = parse_unit(name)
        except ProbeError:
            raise ParamError("units", f"{str(name)[:40]!r} is not a feature name: expected e.g. "
                                      f"{site.unit(0).name}") from None
        if not u.is_feature:
            raise ParamError("units", f"{u} is not a feature name: with an SAE, name its features, e.g. "
                                      f"{site.unit(0).name}")
        if u.site != site or not 0 <= u.index < d:
            raise ParamError("units", f"{u}: the SAE {loaded.name} has features {site.unit(0)}..{site.unit(d - 1)}")
        if u.index in idx:
            raise ParamError("units", f"{u}: given twice")
        idx.append(u.index)
    return {(site.layer, site.kind): idx}


@torch.no_grad()
def _feature_census(model, ids: torch.Tensor, loaded) -> tuple[np.ndarray, np.ndarray]:
    """Per feature over the text (clean run): the number of steps it is active, and its mean activation."""
    name = loaded.site.array
    d = int(loaded.sae.W_dec.shape[0])
    active, total = torch.zeros(d, dtype=torch.int64), torch.zeros(d, dtype=torch.float64)
    state = None
    for a in range(0, len(ids), CHUNK):
        w = run_with_hooks(model, ids[a:a + CHUNK].view(1, -1), state, cache=[name], stop=loaded.site.layer + 1)
        z = loaded.sae.encode(w.cache[name][0].float())
        active += (z > 0).sum(0)
        total += z.double().sum(0)
        state = w.state
    return active.numpy(), (total / len(ids)).numpy()


def _run_feature_sets(model, ids: torch.Tensor, sets: list[dict], loaded) -> tuple[np.ndarray, np.ndarray]:
    """Clean loss (n-1,) and the loss with each of `sets` (features) removed in its own stream (len(sets), n-1):
    after every step of the SAE's site, rows 1.. lose z_f W_dec[f] for each of their set's features f."""
    sae = loaded.sae
    d = int(sae.W_dec.shape[0])
    mask = torch.zeros(len(sets), d)
    for s, feature_set in enumerate(sets):
        for idx in feature_set.values():
            mask[s, idx] = 1.0
    w_dec = sae.W_dec.detach().float()

    def hook(state: torch.Tensor, t: int) -> torch.Tensor:
        with torch.no_grad():
            z = sae.encode(state[1:])
            state[1:] -= (z * mask) @ w_dec
        return state

    losses = _held_pass(model, ids, [], len(sets) + 1, hooks={loaded.site.array: hook})
    return losses[0], losses[1:]


# --------------------------------------------------------------------------- one unit at a time, beside a search

ABLATION_COLUMNS = ["abl_in", "abl_in_lo", "abl_in_hi", "abl_out", "abl_out_lo", "abl_out_hi", "abl_rank", "abl_p"]


def ablate_each(checkpoint: Checkpoint | str | Path, units: list[str], text=None, *, mode="mean",
                concept: Concept | str, n_random: int = 20, part: str = "val", char_range=None,
                max_chars: int | None = None, block: int = 256, n_boot: int = 1000, seed: int = 0,
                text_source: str | None = None) -> pd.DataFrame:
    """Each of `units` held on its own over `text`, inside and outside `concept` (binary), against a null.

    The units of one layer and kind share one pass and one null: K random single units of that layer and
    kind (none of them a target), each in its own stream beside the targets' streams. One row per unit:
    unit, abl_in/abl_out (Δ bits per character inside/outside the concept) with 95% block-bootstrap bounds
    (abl_*_lo, abl_*_hi), abl_all, abl_rank (1: larger inside than every random unit) and abl_p.
    """
    from probe.model import checkpoint as ckpt_mod
    ck = checkpoint if isinstance(checkpoint, Checkpoint) else ckpt_mod.load(checkpoint)
    model = ck.model
    units = [str(u) for u in units]
    groups = _groups(model, units)
    _, value = parse_mode(mode)
    n_random = check_int("n_random", n_random, min=0)
    block, n_boot, seed = check_int("block", block, min=2), check_int("n_boot", n_boot, min=100), check_int("seed", seed)
    if concept is None:
        raise ParamError("concept", "ablate_each needs a binary concept to split the effect inside and outside")
    concept = as_concept(concept)
    H = model.cfg.rnn_size
    for (l, k), idx in groups.items():
        if n_random > H - len(idx):
            raise ParamError("n_random", f"is {n_random}, but L{l}.{k} has only {H - len(idx)} other units to "
                                         f"draw random units from")
    tt = resolve_text(ck, text, part=part, char_range=char_range, max_chars=max_chars, text_source=text_source)
    n = len(tt.ids)
    if n < 2:
        raise ProbeError(f"the text has {n} symbol(s): ablation needs at least 2 (one prediction)")
    inside = _symbol_labels(concept, tt, ck.vocab.encoding == "byte")
    ids = torch.as_tensor(tt.ids.astype(np.int64))
    pred = np.zeros(n, dtype=bool)
    pred[1:] = True
    masks = [pred & inside, pred & ~inside, pred]
    means = _means(model, ids, set(groups), None)[0] if value is None else None
    rng = np.random.default_rng(seed)
    rows = {}
    for (l, k), idx in groups.items():
        pool = np.setdiff1d(np.arange(H), idx)
        random = [int(i) for i in rng.choice(pool, n_random, replace=False)]
        sets = [{(l, k): [i]} for i in idx + random]
        clean, held, _ = _run_sets(model, ids, sets, value, means)
        d = np.zeros((len(sets), n), dtype=np.float64)
        d[:, 1:] = held - clean[None, :]
        effect_in = d[:, masks[0]].mean(1)
        null = effect_in[len(idx):]
        for j, i in enumerate(idx):
            (lo_in, hi_in), (lo_out, hi_out), _ = block_bootstrap(d[j], masks, block, n_boot, seed)
            c = int((null >= effect_in[j]).sum())
            rows[unit_name(l, k, i)] = {
                "abl_in": float(effect_in[j]), "abl_in_lo": lo_in, "abl_in_hi": hi_in,
                "abl_out": float(d[j, masks[1]].mean()), "abl_out_lo": lo_out, "abl_out_hi": hi_out,
                "abl_all": float(d[j, pred].mean()), "abl_rank": c + 1, "abl_p": (c + 1) / (n_random + 1)}
    return pd.DataFrame([{"unit": u, **rows[u]} for u in units])


def add_ablation(search, rec, n: int, checkpoint: Checkpoint | str | Path | None = None, *,
                 max_chars: int = 20_000, mode="mean", n_random: int = 20, block: int = 256, seed: int = 0):
    """`search` (a NeuronSearch on recording `rec`) with the ablation of its top `n` units as columns of its
    table (`ablate_each`'s abl_* columns; NaN for the other units and for gates, which cannot be held).

    The model: `checkpoint`, else the one named in the recording (`recording_checkpoint`); the text: the
    first `max_chars` characters of the recording.
    """
    from dataclasses import replace

    from probe.names import parse_unit
    n = check_int("n", n, min=1)
    max_chars = check_int("max_chars", max_chars, min=2)
    if search.concept.label_type != "binary":
        raise ParamError("search", f"its concept {search.concept.name} is {search.concept.label_type}; the "
                                   f"ablation columns need a binary concept (inside and outside)")
    ck = checkpoint if isinstance(checkpoint, Checkpoint) else recording_checkpoint(rec, checkpoint)
    held = [u for u in search.table.unit.head(n) if parse_unit(u).kind in ("h", "c")]
    table = search.table.copy()
    for col in ABLATION_COLUMNS + ["abl_all"]:
        table[col] = np.nan
    if held:
        res = ablate_each(ck, held, rec.text[:max_chars], mode=mode, concept=search.concept, n_random=n_random,
                          block=block, seed=seed).set_index("unit")
        rows = table.unit.isin(held)
        for col in res.columns:
            table.loc[rows, col] = table.loc[rows, "unit"].map(res[col]).to_numpy()
    return replace(search, table=table)


# --------------------------------------------------------------------------- saving

def save(result: AblationResult, folder: str | Path, files: dict[str, str] | None = None) -> Path:
    """Write delta.npy, per-symbol.csv, sets.csv, top.csv, ablation.json (and `files`: name -> text, e.g. a
    heatmap's HTML) into a new or empty `folder`, atomically: all of it or nothing."""
    dest = Path(folder)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ParamError("folder", f"{dest} exists and is not an empty folder")
    with atomic_folder(dest) as tmp:
        np.save(tmp / "delta.npy", result.delta)
        result.per_symbol().to_csv(tmp / "per-symbol.csv", index=False)
        result.table.to_csv(tmp / "sets.csv", index=False)
        result.top.to_csv(tmp / "top.csv", index=False)
        (tmp / "ablation.json").write_text(json.dumps(result.to_dict(), indent=1, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
        for name, content in (files or {}).items():
            (tmp / name).write_text(content, encoding="utf-8")
    return dest
