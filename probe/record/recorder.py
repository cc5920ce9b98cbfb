"""Record every state of a model over a text: h, c, gates, top-k and loss, streamed chunk by chunk to disk.

How it stays fast and exact, per chunk of the text:

1. the model's one walk over its layers (`probe.model.hooks.run_with_hooks`), each layer one fused
   `nn.LSTM`/`nn.GRU`/`nn.RNN` call, gives every layer's whole `h` sequence (the state is carried from
   chunk to chunk, so chunking changes nothing);
2. LSTM on CPU: the walk's layer runner runs oneDNN's kernel in training mode, whose workspace holds every
   step's gate activations (`probe.record.onednn_gates`), checked each chunk against the kernel's own `c_n`.
   Otherwise (GPU, GRU, a failed check) all gates of the chunk come from ONE batched matmul per layer,
   `[x_t, h_{t-1}] @ [W_ih; W_hh]^T + b` (GRU: one for the input part, one for the hidden part, since
   `n` needs `r * (W_hn h + b_hn)`);
3. `c` follows from the element-wise recurrence `c_t = f_t * c_{t-1} + i_t * g_t`, compiled
   (`probe.record.kernels`);
4. the head and a log-softmax give the top-k next symbols and the loss;
5. every block goes straight to its .npy file: memory holds one chunk, not the text.

Row r is the state after reading symbol r; its top-k and loss predict symbol r + 1.

With `streams > 1` the text is cut into that many contiguous segments run side by side
(faster), each warmed up on the `warmup` symbols before it. That is NOT exact: the deviation
from one exact pass is measured on every recorded row after the first stream and stored in
meta.json, with the boundary where the worst was found (`probe.record.deviation`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from probe import __version__
from probe.model import checkpoint as ckpt_mod
from probe.data import corpus
from probe.record.kernels import lstm_cell_states, topk_rows
from probe.record import deviation as stream_deviation
from probe.record.background_writes import BackgroundWrites
from probe.runtime.heap import give_back_freed_memory, heap_retained
from probe.runtime.threads import refresh_threads
from probe.model.checkpoint import Checkpoint
from probe.checks import ParamError, check_at_least, check_choice, check_int
from probe.errors import ProbeError
from probe.model.charrnn import CharRNN, ModelConfig
from probe.model.hooks import fused_layer, run_with_hooks
from probe.names import GATES, STATES
from probe.names import kinds as cell_kinds
from probe.record.onednn_gates import disable as disable_onednn_gates
from probe.record.onednn_gates import lstm_layer_with_gates
from probe.record.recording import (NpyWriter, Recording, RecordingWriter, array_name, char_of_row_for_bytes,
                                    DiskPlan, clean_partials, decode_bytes, npy_bytes)
from probe.data.vocab import Vocab, decode_utf8

LN2 = math.log(2.0)
CHUNK_ROWS = 4096  # rows a chunk (all streams together): memory grows with it

Emit = Callable[[str, "torch.Tensor | np.ndarray"], None]


# --------------------------------------------------------------------------- the text to record

@dataclass
class TextToRecord:
    """The symbols to record and everything meta.json says about them."""

    ids: np.ndarray  # (n,) int32 symbol ids
    text: str  # what text.txt holds (byte models: the decoded bytes)
    raw: bytes | None  # byte models: the recorded bytes
    next_id: int | None  # the symbol after the last one, when the source continues (for the last row's loss)
    info: dict = field(default_factory=dict)  # meta.json "text"


def _parse_range(char_range, n: int, max_chars: int | None) -> tuple[int, int]:
    start, stop = (0, n) if char_range is None else char_range
    start = 0 if start is None else int(start)
    stop = n if stop is None else int(stop)
    if start < 0 or stop < 0:
        raise ParamError("char_range", f"{start}:{stop}: positions must not be negative")
    if start > n:
        raise ParamError("char_range", f"starts at {start}, beyond the end of the text ({n:,} symbols)")
    stop = min(stop, n)
    if max_chars is not None:
        check_int("max_chars", max_chars, min=1)
        stop = min(stop, start + max_chars)
    if stop <= start:
        raise ParamError("char_range", f"{start}:{stop} selects no text")
    return start, stop


def _select(vocab: Vocab, full, base: int, start: int, stop: int, source: str, extra: dict | None = None
            ) -> TextToRecord:
    """Symbols [base+start, base+stop) of `full` (bytes for byte models, str for char models)."""
    a, b = base + start, base + stop
    if vocab.encoding == "byte":
        raw = bytes(full[a:b])
        ids = np.frombuffer(raw, dtype=np.uint8).astype(np.int32)
        text = decode_bytes(raw)
        recorded = raw
    else:
        raw = None
        text = full[a:b]
        ids = vocab.encode(text).astype(np.int32)
        recorded = text.encode("utf-8")
    next_id = None
    if b < len(full):
        next_id = int(full[b]) if vocab.encoding == "byte" else int(vocab.encode(full[b])[0])
    info = {"source": source, "sha256": hashlib.sha256(recorded).hexdigest(), "n_chars": len(text),
            "n_bytes": len(recorded), "char_range": [a, b], "range_unit": "byte" if vocab.encoding == "byte" else "char",
            "next_symbol_from_source": next_id is not None}
    info.update(extra or {})
    return TextToRecord(ids=ids, text=text, raw=raw, next_id=next_id, info=info)


def _as_symbols(vocab: Vocab, data: str | bytes, name: str):
    if vocab.encoding == "byte":
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return data if isinstance(data, str) else decode_utf8(bytes(data), name)


def resolve_text(ck: Checkpoint, text=None, part: str = "val", char_range=None, max_chars: int | None = None,
                 text_source: str | None = None) -> TextToRecord:
    """The text to record: the checkpoint's own split `part`, a file (Path), or a str/bytes.

    Ranges count symbols: characters for char models, bytes for byte models.
    """
    vocab = ck.vocab
    if text is None:
        check_choice("part", part, ("train", "val", "test"))
        data = ck.meta.get("data") or {}
        try:
            path, raw = corpus.read_training_corpus(data)
        except ProbeError as e:
            raise ParamError("text", f"{e}; give the text to record as {{text}}", advice=True) from None
        full = _as_symbols(vocab, raw, str(path))
        split = corpus.Split.from_json(data["split"])
        if split.n != len(full):
            raise ProbeError(f"{path} has {len(full):,} symbols but the checkpoint's split says {split.n:,}")
        a, b = split.range(part)
        start, stop = _parse_range(char_range, b - a, max_chars)
        return _select(vocab, full, a, start, stop, f"{part} split of {data['corpus']}", {"part": part})
    if isinstance(text, os.PathLike):
        p = Path(text)
        if not p.exists() or p.is_dir():
            raise ProbeError(f"no such text file: {p}")
        full = _as_symbols(vocab, corpus.read_bytes(p), str(p))
        source = text_source or str(p.resolve())
    elif isinstance(text, (str, bytes, bytearray)):
        full = _as_symbols(vocab, text, text_source or "the text")
        source = text_source or "inline text"
    else:
        raise ProbeError(f"text must be a str, bytes or a file path, not {type(text).__name__}")
    if len(full) == 0:
        raise ProbeError(f"the text to record ({source}) is empty")
    start, stop = _parse_range(char_range, len(full), max_chars)
    return _select(vocab, full, 0, start, stop, source)


def unknown_chars(vocab: Vocab, tt: TextToRecord, most: int = 10) -> dict:
    """How many characters a char vocabulary read as <unk>, and the most common of them."""
    if vocab.encoding == "byte" or vocab.unk is None:  # no <unk> id: encoding refuses unknown characters
        return {"count": 0, "most_common": []}
    mask = tt.ids == vocab.unk
    count = int(mask.sum())
    if not count:
        return {"count": 0, "most_common": []}
    cps = np.frombuffer(tt.text.encode("utf-32-le"), dtype=np.uint32)[mask]
    values, counts = np.unique(cps, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:most]
    return {"count": count, "most_common": [[chr(int(values[i])), int(counts[i])] for i in order]}


# --------------------------------------------------------------------------- the engine

_onednn_linear_ok = True


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x @ w^T + b in float32. On CPU through oneDNN's matmul (the library of the fused LSTM kernels:
    faster than torch.addmm's MKL path on the CPUs measured, same float32 accuracy); else addmm."""
    global _onednn_linear_ok
    if _onednn_linear_ok and x.device.type == "cpu" and x.dtype == torch.float32:
        try:
            return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
        except (AttributeError, RuntimeError):
            _onednn_linear_ok = False
    return torch.addmm(b, x, w.t())


def _lstm_with_gates(l: int, layer: torch.nn.Module, inp: torch.Tensor, state) -> tuple:
    """The recorder's layer runner (`probe.model.hooks`): an LSTM layer's fused pass whose extra is
    (gate activations (S, T, 4H), c_n (S, H)) from oneDNN's workspace, or None where that is unavailable."""
    got = None if state is None else lstm_layer_with_gates(layer, inp, state)
    if got is None:
        return fused_layer(l, layer, inp, state)
    out, s, gates = got
    return out, s, (gates, s[1][0])


class _Engine:
    """Computes every recorded array of one chunk, layer by layer, and hands each block to `emit`."""

    def __init__(self, model: CharRNN, gates: bool = True, topk: int = 5, predictions: bool = True,
                 wanted: set[str] | None = None):
        self.model = model
        self.kind = model.cfg.model
        self.H = model.cfg.rnn_size
        self.gates = gates and self.kind != "rnn"
        self.topk = min(int(topk), model.cfg.vocab_size)
        self.predictions = predictions
        # per layer: whether its c and gates are computed at all (`wanted`: the arrays kept; None: all).
        # Skipping a layer changes nothing in the others: the walk (and so every h) is the same.
        beyond_h = ("c",) + GATES[self.kind]
        self.layer_needed = [self.kind != "rnn" and (wanted is None or
                                                     any(array_name(l, k) in wanted for k in beyond_h))
                             for l in range(len(model.layers))]
        self.seq_names = ["embed"] + [array_name(l, "h") for l in range(len(model.layers))]
        self.weights = []
        with torch.no_grad():
            for layer in model.layers:
                if self.kind == "lstm":  # one matmul: [x, h_prev] @ [W_ih; W_hh]^T + (b_ih + b_hh)
                    w = torch.cat([layer.weight_ih_l0, layer.weight_hh_l0], dim=1).contiguous()
                    self.weights.append((w, (layer.bias_ih_l0 + layer.bias_hh_l0).contiguous()))
                elif self.kind == "gru":
                    self.weights.append((layer.weight_ih_l0.t().contiguous(), layer.bias_ih_l0.detach(),
                                         layer.weight_hh_l0.t().contiguous(), layer.bias_hh_l0.detach()))
                else:
                    self.weights.append(())

    def zero_state(self, batch: int) -> list:
        return self.model.zero_state(batch, device=next(self.model.parameters()).device)

    def advance(self, x: torch.Tensor, state: list | None) -> list:
        """Run the layers over x (batch, time) and return the new state only (warm-up, exact prefixes)."""
        return run_with_hooks(self.model, x, state, head=False).state

    def forward(self, x: torch.Tensor, state: list) -> tuple[list, list, list]:
        """The walk over x (S, T), every layer fused: ([embedding, h of L0, h of L1, ...], new state,
        per layer the LSTM gate activations (S, T, 4H) and c_n kept by oneDNN's kernel, or None)."""
        runner = _lstm_with_gates if self.kind == "lstm" else None
        walk = run_with_hooks(self.model, x, state, cache=self.seq_names, layer_runner=runner, head=False)
        return [walk.cache[n] for n in self.seq_names], walk.state, walk.extras

    def lstm_gates(self, l: int, inp: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
        """Gate activations (S, T, 4H) of LSTM layer l recomputed in float32: one matmul for the chunk."""
        S, T, H = inp.shape[0], inp.shape[1], self.H
        w, b = self.weights[l]
        acts = linear(torch.cat([inp, h_prev], dim=2).reshape(S * T, -1), w, b)
        acts[:, :2 * H].sigmoid_()
        acts[:, 2 * H:3 * H].tanh_()
        acts[:, 3 * H:].sigmoid_()
        return acts.view(S, T, 4 * H)

    @torch.no_grad()
    def post(self, seqs: list, state: list, c_carry: list, targets: torch.Tensor | None, emit: Emit,
             kept: list | None = None) -> None:
        """Everything else of one chunk from its layer sequences: gates, c, top-k, loss, all to `emit`.

        state: the state before the chunk (for h_{-1}); c_carry[l]: the last recorded c of layer l (S, H),
        carried by the recorded recurrence itself so that any chunking gives the same c; updated here.
        kept[l]: (gate activations, c_n) from oneDNN's workspace (see `forward`), checked here: the
        recurrence on them must end at the kernel's own c_n, else the gates are recomputed (and the
        workspace is not used again).
        """
        S, T = seqs[0].shape[:2]
        H = self.H
        for l in range(len(self.model.layers)):
            inp, out = seqs[l], seqs[l + 1]
            emit(array_name(l, "h"), out)
            if not self.layer_needed[l]:
                continue
            h0 = (state[l][0] if self.kind == "lstm" else state[l])[0]  # (S, H)
            def h_prev() -> torch.Tensor:  # h_{t-1} for every step of the chunk
                return torch.cat([h0.unsqueeze(1), out[:, :-1]], dim=1)
            if self.kind == "lstm":
                carry = c_carry[l]
                if kept is not None and kept[l] is not None:
                    acts, c_n = kept[l]
                    c = lstm_cell_states(acts.numpy(), carry)
                    c_n = c_n.numpy()
                    if not np.allclose(c[:, -1], c_n, rtol=1e-4, atol=1e-4):
                        disable_onednn_gates()  # an unexpected workspace layout: recompute from now on
                        acts = None
                else:
                    acts = None
                if acts is None:
                    acts = self.lstm_gates(l, inp, h_prev())
                    c = lstm_cell_states(acts.cpu().numpy(), carry)
                c_carry[l] = c[:, -1].copy()
                emit(array_name(l, "c"), c)
                if self.gates:
                    for j, g in enumerate(GATES["lstm"]):
                        emit(array_name(l, g), acts[..., j * H:(j + 1) * H])
            elif self.gates:  # GRU: r z n
                w_ih, b_ih, w_hh, b_hh = self.weights[l]
                gi = torch.addmm(b_ih, inp.reshape(S * T, -1), w_ih)
                gh = torch.addmm(b_hh, h_prev().reshape(S * T, H), w_hh)
                rz = torch.sigmoid(gi[:, :2 * H] + gh[:, :2 * H])
                n = torch.tanh(gi[:, 2 * H:] + rz[:, :H] * gh[:, 2 * H:])
                emit(array_name(l, "r"), rz[:, :H].view(S, T, H))
                emit(array_name(l, "z"), rz[:, H:].view(S, T, H))
                emit(array_name(l, "n"), n.view(S, T, H))
        if self.predictions:
            logp = torch.log_softmax(self.model.head(seqs[-1]).float(), dim=-1)  # (S, T, V); eval: no dropout
            if self.topk > 0:
                idx, vals = topk_rows(logp.detach().cpu().numpy().reshape(S * T, -1), self.topk)
                emit("topk_ids", idx.reshape(S, T, -1))
                emit("topk_probs", np.exp(vals).reshape(S, T, -1))
            t = targets if targets is not None else torch.full((S, T), -1, dtype=torch.long)
            t = t.to(logp.device)
            loss = -logp.gather(-1, t.clamp(min=0).unsqueeze(-1)).squeeze(-1) / LN2
            emit("loss_bits", torch.where(t >= 0, loss, torch.full_like(loss, float("nan"))))


def array_specs(cfg: ModelConfig, gates: bool, topk: int, float32: bool, *, layers: list[int] | None = None,
                kinds: list[str] | None = None) -> dict[str, tuple[tuple, np.dtype]]:
    """name -> (shape after the row axis, dtype) of every array a recording of this model holds
    (`layers`, `kinds`: only these, as `selection` resolves them; default all, gates with `gates`)."""
    H, small = cfg.rnn_size, np.dtype(np.float32 if float32 else np.float16)
    layers, kinds = selection(cfg, gates, layers, kinds)
    specs: dict[str, tuple[tuple, np.dtype]] = {}
    for l in layers:
        for k in kinds:  # c: float32, long-memory units grow past float16's 65,504
            specs[array_name(l, k)] = ((H,), np.dtype(np.float32) if k == "c" else small)
    k = min(int(topk), cfg.vocab_size)
    if k > 0:
        specs["topk_ids"] = ((k,), np.dtype(np.int16 if cfg.vocab_size < 2 ** 15 else np.int32))
        specs["topk_probs"] = ((k,), small)
    specs["loss_bits"] = ((), np.dtype(np.float32))
    return specs


def selection(cfg: ModelConfig, gates: bool, layers: list[int] | None = None, kinds: list[str] | None = None
              ) -> tuple[list[int], list[str]]:
    """The layers and kinds a recording holds, checked and in the model's order: all layers by default, and
    every kind of the cell (its gates only with `gates`). ParamError naming `layers` or `kinds` otherwise."""
    cell, n = cfg.model, cfg.num_layers
    if layers is None:
        layers = list(range(n))
    else:
        if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
            raise ParamError("layers", f"must be a list of layer numbers, not {layers!r}")
        layers = sorted({check_int("layers", l) for l in layers})
        for l in layers:
            if not 0 <= l < n:
                raise ParamError("layers", f"names layer {l}, but the model has layers 0..{n - 1}")
        if not layers:
            raise ParamError("layers", "is empty: name at least one layer")
    has = cell_kinds(cell, gates=True)
    if kinds is None:
        return layers, list(cell_kinds(cell, gates=gates))
    if isinstance(kinds, str) or not hasattr(kinds, "__iter__"):
        raise ParamError("kinds", f"must be a list of kinds (e.g. ['h', 'c']), not {kinds!r}")
    kinds = [str(k).strip() for k in kinds]
    for k in kinds:
        if k not in has:
            raise ParamError("kinds", f"{k!r} is not a kind of this {cell.upper()} (it has {', '.join(has)})")
    gate_kinds = [k for k in kinds if k in GATES[cell]]
    if gate_kinds and not gates:
        raise ParamError("kinds", f"names gates ({', '.join(gate_kinds)}), but gates=False records none")
    if not kinds:
        raise ParamError("kinds", "is empty: name at least one kind")
    return layers, [k for k in has if k in kinds]


def _to_numpy(block, dtype: np.dtype) -> np.ndarray:
    if isinstance(block, torch.Tensor):
        tdtype = {np.float16: torch.float16, np.float32: torch.float32, np.int16: torch.int16,
                  np.int32: torch.int32, np.int64: torch.int64}[dtype.type]
        return block.detach().to("cpu", tdtype).numpy()
    return np.asarray(block, dtype=dtype)


class _RowWriter:
    """Writes blocks of rows at any row position of an NpyWriter's file (streams fill it out of order)."""

    def __init__(self, w: NpyWriter):
        self.w = w
        self.base = w.f.tell()
        self.row_bytes = int(np.prod(w.shape[1:], dtype=np.int64)) * w.dtype.itemsize

    def put(self, row: int, block: np.ndarray) -> None:
        pos = self.base + row * self.row_bytes
        if self.w.f.tell() != pos:
            self.w.f.seek(pos)
        self.w.write(block)


def _post_chunk(engine: _Engine, seqs: list, kept: list, state: list, c_carry: list, targets: torch.Tensor,
                put: Callable[[str, int, np.ndarray], None], dtypes: dict[str, np.dtype], n: int, L: int,
                t0: int, Tc: int, on_rows: Callable[[int], None] | None) -> None:
    streams = seqs[0].shape[0]

    def emit(name: str, block) -> None:
        if name not in dtypes:
            return
        arr = _to_numpy(block, dtypes[name])
        for s in range(streams):
            r0 = s * L + t0
            m = min(Tc, n - r0)
            if m > 0:
                put(name, r0, arr[s, :m])

    engine.post(seqs, state, c_carry, targets, emit, kept)
    if on_rows:
        on_rows(sum(max(0, min(Tc, n - (s * L + t0))) for s in range(streams)))


def stream_length(n: int, streams: int) -> int:
    """Rows of each stream when n rows are cut into `streams` contiguous segments (the last may be shorter)."""
    return -(-n // max(1, min(int(streams), n)))


def run_streams(engine: _Engine, ids: np.ndarray, put: Callable[[str, int, np.ndarray], None],
                dtypes: dict[str, np.dtype], *, streams: int = 1, warmup: int = 300, chunk_size: int = CHUNK_ROWS,
                next_id: int | None = None, state: list | None = None,
                on_rows: Callable[[int], None] | None = None) -> list:
    """Record `ids` in `streams` contiguous segments (each warmed up on the `warmup` symbols before it),
    chunk by chunk; `put(name, row, block)` receives every block of rows. Returns the final state (padding included).

    `state` is the initial state of the first segment (default zeros).
    """
    n = len(ids)
    L = stream_length(n, streams)
    streams = -(-n // L)
    device = next(engine.model.parameters()).device
    ids = np.asarray(ids)
    after = -1 if next_id is None else int(next_id)

    def symbols(rows: torch.Tensor) -> torch.Tensor:
        """Symbol ids at text rows `rows` (any shape): ids[r] inside the text, the symbol after the text
        (-1: unknown) at row n, -1 (padding) beyond. Gathered per chunk: no copy of the whole text."""
        r = rows.numpy()
        got = np.take(ids, np.minimum(r, n - 1)).astype(np.int64)
        got[r >= n] = -1
        got[r == n] = after
        return torch.from_numpy(got)

    row0 = (torch.arange(streams) * L).unsqueeze(1)

    first = state if state is not None else engine.zero_state(1)
    w = min(int(warmup), L)
    if streams > 1:
        if w > 0:
            warm_x = symbols(row0[1:] + torch.arange(-w, 0).unsqueeze(0)).to(device)
            warmed = engine.advance(warm_x, engine.zero_state(streams - 1))
        else:
            warmed = engine.zero_state(streams - 1)
        state = [tuple(torch.cat([a, b], dim=1) for a, b in zip(f, r)) if isinstance(f, tuple)
                 else torch.cat([f, r], dim=1) for f, r in zip(first, warmed)]
    else:
        state = first

    c_carry = [st[1][0].detach().cpu().numpy().copy() if isinstance(st, tuple) else None for st in state]
    T = max(1, int(chunk_size) // streams)
    for t0 in range(0, L, T):
        Tc = min(T, L - t0)
        rows = row0 + torch.arange(t0, t0 + Tc).unsqueeze(0)
        x, tg = symbols(rows).clamp(min=0).to(device), symbols(rows + 1).to(device)
        seqs, new_state, kept = engine.forward(x, state)
        _post_chunk(engine, seqs, kept, state, c_carry, tg, put, dtypes, n, L, t0, Tc, on_rows)
        state = new_state
    return state


# --------------------------------------------------------------------------- deviation of parallel streams

def check_chunk_memory(cfg: ModelConfig, specs: dict[str, tuple[tuple, np.dtype]], chunk_size: int, n: int) -> None:
    """ProbeError before recording if one chunk (at most the text's `n` rows) cannot fit in memory (estimate:
    every stored array's row, plus float32 states and log-probabilities while computing, twice over)."""
    from probe.runtime.memory import check_fits
    rows = min(chunk_size, n)
    stored = sum(int(np.prod(shape)) * np.dtype(dt).itemsize for shape, dt in specs.values())
    working = 4 * (3 * cfg.vocab_size + 8 * cfg.num_layers * cfg.rnn_size)
    check_fits(2 * rows * (stored + working), f"chunks of {rows:,} rows", "lower it", param="chunk_size",
               value=chunk_size)


def deviation_names(cfg: ModelConfig) -> list[str]:
    """The arrays a deviation is measured on: every layer's h, and c for LSTMs."""
    return [array_name(l, k) for l in range(cfg.num_layers) for k in STATES[cfg.model]]


# --------------------------------------------------------------------------- public API

def untrained_like(checkpoint: Checkpoint | str | Path, seed: int = 0) -> Checkpoint:
    """A freshly initialised model of the same config and vocabulary (seeded): the "untrained" baseline."""
    ck = checkpoint if isinstance(checkpoint, Checkpoint) else ckpt_mod.load(checkpoint)
    cfg = ModelConfig(**ck.meta["model_config"]) if "model_config" in ck.meta else ck.model.cfg
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CharRNN(cfg)
    model.to(next(ck.model.parameters()).device).eval()
    meta = dict(ck.meta, untrained={"seed": seed})
    return Checkpoint(path=ck.path, meta=meta, model=model, vocab=ck.vocab)


def record_arrays(model: CharRNN, vocab: Vocab, text: str | bytes, *, gates: bool = True,
                  topk: int = 5, chunk_size: int = CHUNK_ROWS) -> dict[str, np.ndarray]:
    """Record a short text in memory (float32 states): the same array names as a recording.

    Also `ids` (int64) and, for byte vocabularies, `char_of_row`. One exact stream.
    """
    data = _as_symbols(vocab, text, "the text")
    ids = vocab.encode(data) if vocab.encoding == "char" else np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    specs = array_specs(model.cfg, gates, topk, float32=True)
    specs = {k: (shape, np.dtype(np.int64) if k == "topk_ids" else dt) for k, (shape, dt) in specs.items()}
    out = {k: np.empty((len(ids),) + shape, dtype=dt) for k, (shape, dt) in specs.items()}
    if len(ids):
        was = model.training
        model.eval()
        try:
            run_streams(_Engine(model, gates, topk), ids, lambda nm, r, b: out[nm].__setitem__(slice(r, r + len(b)), b),
                        {k: dt for k, (_, dt) in specs.items()}, chunk_size=chunk_size)
        finally:
            model.train(was)
    out["ids"] = ids
    if vocab.encoding == "byte":
        out["char_of_row"] = char_of_row_for_bytes(data)
    return out


def _recorded_with(out: Path) -> dict | None:
    """What an existing complete recording at `out` was made from (the keys `record` compares for reuse)."""
    try:
        meta = json.loads((out / "meta.json").read_text())
        mc = meta["model_config"]
        every = cell_kinds(mc["model"], gates=bool(meta["gates"]))  # recordings before layers/kinds held them all
        return {"weights": meta["checkpoint"]["sha256"], "untrained": bool(meta["checkpoint"].get("untrained")),
                "text": meta["text"]["sha256"], "n_rows": meta["n_rows"], "gates": meta["gates"],
                "layers": meta.get("layers", list(range(mc["num_layers"]))), "kinds": meta.get("kinds", list(every)),
                "topk": meta["topk"], "dtype": meta["dtype"], "streams": meta["streams"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


_TRIM_EVERY_CHUNKS = 32  # free heap pages go back to the kernel this often (each time, the next chunk re-faults them)


@dataclass(frozen=True)
class StreamPlan:
    """How the rows are laid out: `streams` contiguous segments of `length` rows (the last may be shorter),
    each after `warmup` symbols read from a zero state (the first starts at row 0, exact)."""

    rows: int
    streams: int  # as meta.json states it: the streams asked for, at most one a row
    length: int
    warmup: int

    @classmethod
    def of(cls, rows: int, streams: int, warmup: int) -> "StreamPlan":
        s = max(1, min(int(streams), rows))
        return cls(rows=rows, streams=s, length=stream_length(rows, s), warmup=int(warmup))


def record(source: Checkpoint | str | Path, text=None, out: str | Path = "recording", *, part: str = "val",
           char_range: tuple[int | None, int | None] | None = None, max_chars: int | None = None,
           gates: bool = True, topk: int = 5, dtype: str = "compact", chunk_size: int = CHUNK_ROWS, streams: int = 1,
           warmup: int = 300, overwrite: bool = False, untrained: bool = False, progress: bool = False,
           text_source: str | None = None, reuse: bool = False, layers: list[int] | None = None,
           kinds: list[str] | None = None, on_start: Callable[["DiskPlan"], None] | None = None) -> Recording:
    """Record every state of a model over a text into the folder `out`; returns the opened Recording.

    source: a run/checkpoint folder or a loaded Checkpoint. text: None (the checkpoint's own split `part`),
    a str/bytes, or a file path (pathlib.Path). `char_range` (start, stop) and `max_chars` count symbols
    (characters; bytes for byte models). dtype "compact": h and gates float16, c float32; "float32": all float32.
    `layers` (e.g. [0, 2]) and `kinds` (e.g. ["h", "c"]): record only these (default: every layer, every
    kind; gates with `gates`); each array is bit for bit the one a full recording holds.
    `streams` > 1 is faster but not exact: the deviation from one exact pass, over every row after the
    first stream, goes into meta.json (`probe.record.deviation`).
    `reuse`: if `out` already holds a complete recording of these weights over this text with these
    options, open and return it as it is; otherwise record (replacing `out`).
    Before writing, the hidden folders of recordings killed part-way in `out`'s parent are deleted (those of
    processes that no longer run), the disk is checked for the bytes the recording takes (ProbeError if it
    lacks them), and `on_start` gets that `DiskPlan`.
    """
    t_start = time.perf_counter()
    check_choice("dtype", dtype, ("compact", "float32"))
    check_at_least(topk=(topk, 0), streams=(streams, 1), warmup=(warmup, 0), chunk_size=(chunk_size, 1))
    out = Path(out)
    if out.exists() and not overwrite and not reuse:
        raise ParamError("overwrite", f"{out} already exists; pass {{overwrite=True}} to replace it", advice=True)
    ck, weights_sha, tt = _read_inputs(source, text, part, char_range, max_chars, untrained, text_source)
    model, cfg = ck.model, ck.model.cfg
    layers, kinds = selection(cfg, gates, layers, kinds)
    if reuse:
        if weights_sha is not None and _recorded_with(out) == _options(ck, tt, weights_sha, untrained, layers, kinds,
                                                                       topk, dtype, streams):
            kept = Recording.open(out)
            kept.reused = True
            return kept
        overwrite = True
    specs = array_specs(cfg, gates, topk, float32=(dtype == "float32"), layers=layers, kinds=kinds)
    plan = StreamPlan.of(len(tt.ids), streams, warmup)
    check_chunk_memory(cfg, specs, int(chunk_size), plan.rows)
    cleaned = clean_partials(out.parent)
    disk = disk_plan(out, specs, tt, ck.vocab, cleaned)
    disk.check()
    if on_start is not None:
        on_start(disk)
    writer = RecordingWriter(out, overwrite=overwrite)
    was_training = model.training
    model.eval()
    try:
        arrays = {name: writer.array(name, (plan.rows,) + shape, dt) for name, (shape, dt) in specs.items()}
        t_loop = time.perf_counter()
        final = _run_chunks(_Engine(model, gates, topk, wanted=set(specs)), tt, arrays, plan, chunk_size, progress)
        t_deviation = time.perf_counter()
        deviation = _measure_deviation(model, tt.ids, plan, final, arrays, chunk_size)
        timing = {"loop": t_deviation - t_loop, "deviation": time.perf_counter() - t_deviation}
        _write_text_and_ids(writer, tt, ck.vocab)
        timing["total"] = time.perf_counter() - t_start
        writer.finish(_meta(ck, tt, weights_sha, untrained, layers, kinds, topk, dtype, plan, chunk_size, deviation,
                            timing))
    except OSError as e:
        writer.abort()
        what = e.strerror or str(e)
        hint = " (disk full?)" if getattr(e, "errno", None) == 28 else ""
        raise ProbeError(f"cannot write the recording {out}: {what}{hint}; nothing was kept") from None
    except BaseException:
        writer.abort()
        raise
    finally:
        model.train(was_training)
    return Recording.open(out)


def _read_inputs(source, text, part, char_range, max_chars, untrained: bool, text_source
                 ) -> tuple[Checkpoint, str | None, TextToRecord]:
    """The checkpoint (an untrained twin with `untrained`), its weights' sha256, and the text to record."""
    ck = source if isinstance(source, Checkpoint) else ckpt_mod.load(source)
    weights_sha = (ck.meta.get("files") or {}).get("model.safetensors")
    if untrained:
        ck = untrained_like(ck, seed=0)
    return ck, weights_sha, resolve_text(ck, text, part, char_range, max_chars, text_source)


def _options(ck: Checkpoint, tt: TextToRecord, weights_sha: str | None, untrained: bool, layers: list[int],
             kinds: list[str], topk: int, dtype: str, streams: int) -> dict:
    """What a recording is made from, as `_recorded_with` reads it back (for `reuse`)."""
    return {"weights": weights_sha, "untrained": bool(untrained), "text": tt.info["sha256"],
            "n_rows": len(tt.ids), "gates": any(k in GATES[ck.model.cfg.model] for k in kinds),
            "layers": list(layers), "kinds": list(kinds),
            "topk": min(int(topk), ck.model.cfg.vocab_size), "dtype": dtype,
            "streams": max(1, min(int(streams), len(tt.ids)))}


def _run_chunks(engine: _Engine, tt: TextToRecord, arrays: dict[str, NpyWriter], plan: StreamPlan,
                chunk_size: int, progress: bool) -> list:
    """Record every chunk of every stream into `arrays` (disk writes on a thread beside the compute);
    returns the final state of every stream."""
    rows = {name: _RowWriter(w) for name, w in arrays.items()}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=plan.rows, unit="sym", unit_scale=True, file=sys.stderr, desc="record")
    writes = BackgroundWrites(lambda nm, r, b: rows[nm].put(r, b))
    chunks_done = [0]

    def on_rows(k: int) -> None:
        if bar:
            bar.update(k)
        chunks_done[0] += 1
        refresh_threads()  # CPU threads follow the cores other processes leave free (probe/runtime/threads.py)
        if chunks_done[0] % _TRIM_EVERY_CHUNKS == 0:
            if heap_retained() != "none":  # kept by the entry point's apply_heap_policy("record")
                give_back_freed_memory()
    try:
        final = run_streams(engine, tt.ids, writes, {name: w.dtype for name, w in arrays.items()},
                            streams=plan.streams, warmup=plan.warmup, chunk_size=chunk_size, next_id=tt.next_id,
                            on_rows=on_rows)
    except BaseException:
        writes.close(drain=False)
        raise
    finally:
        if bar is not None:
            bar.close()
    writes.close()
    return final


def _measure_deviation(model: CharRNN, ids: np.ndarray, plan: StreamPlan, final: list,
                       arrays: dict[str, NpyWriter], chunk_size: int) -> dict:
    """meta.json's "deviation": zero for one stream, else measured on every recorded row after the first stream."""
    if plan.streams == 1:
        return {"exact": True, "mean_abs": 0.0, "max_abs": 0.0,
                "method": "one stream over the whole text, state carried from the first symbol"}
    recorded = {}
    for name in deviation_names(model.cfg):
        if name in arrays:  # a recording of some layers or kinds: the states it holds
            arrays[name].f.flush()
            recorded[name] = np.load(arrays[name].path, mmap_mode="r")
    if not recorded:
        return {"exact": False, "measured": False,
                "method": "not measured: the recording holds no h or c to compare with one exact pass"}
    plain = _Engine(model, gates=False, topk=0, predictions=False, wanted=set(recorded))
    return stream_deviation.measure(plain, ids, plan.length, final, recorded,
                                    warmup=min(plan.warmup, plan.length), chunk_size=chunk_size)


def disk_plan(out: Path, specs: dict[str, tuple[tuple, np.dtype]], tt: TextToRecord, vocab: Vocab,
              cleaned: list[str] | None = None) -> DiskPlan:
    """The bytes of every file the recording of `tt` with these arrays writes (as `_write_text_and_ids` and
    `RecordingWriter` write them; meta.json aside), and the free space where `out` goes."""
    n = len(tt.ids)
    files = {f"{name}.npy": npy_bytes((n,) + shape, dt) for name, (shape, dt) in specs.items()}
    files["ids.npy"] = npy_bytes((n,), np.int32)
    if vocab.encoding == "byte":
        files["char_of_row.npy"] = npy_bytes((n,), np.int64)
    files["text.txt"] = len(tt.text.encode("utf-8"))
    return DiskPlan.at(out, n, files, cleaned)


def _write_text_and_ids(writer: RecordingWriter, tt: TextToRecord, vocab: Vocab) -> None:
    writer.save_array("ids", tt.ids.astype(np.int32, copy=False))
    if vocab.encoding == "byte":
        writer.save_array("char_of_row", char_of_row_for_bytes(tt.raw))
    writer.write_text(tt.text)


def _meta(ck: Checkpoint, tt: TextToRecord, weights_sha: str | None, untrained: bool, layers: list[int],
          kinds: list[str], topk: int, dtype: str, plan: StreamPlan, chunk_size: int, deviation: dict,
          timing: dict[str, float]) -> dict:
    """meta.json of a finished recording (the writer adds the format and the arrays)."""
    cfg, seconds = ck.model.cfg, timing["total"]
    return {
        "n_rows": plan.rows,
        "vocab": ck.vocab.to_json(),
        "model_config": cfg.to_json(),
        "checkpoint": {"path": str(Path(ck.path).resolve()), "sha256": weights_sha,
                       "step": ck.meta.get("step"), "untrained": bool(untrained),
                       **({"untrained_seed": 0} if untrained else {})},
        "text": tt.info,
        "unknown_chars": unknown_chars(ck.vocab, tt),
        "gates": any(k in GATES[cfg.model] for k in kinds),
        "layers": list(layers),  # the layers and kinds recorded (all of them unless `record` was given a subset)
        "kinds": list(kinds),
        "topk": min(int(topk), cfg.vocab_size),
        "dtype": dtype,
        "streams": plan.streams,
        "warmup": plan.warmup if plan.streams > 1 else 0,
        "chunk_size": int(chunk_size),
        "deviation": deviation,
        "probe_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "seconds": round(seconds, 3),
        "record_seconds": round(timing["loop"], 3),
        "deviation_seconds": round(timing["deviation"], 3),
        "chars_per_s": round(tt.info["n_chars"] / seconds, 1) if seconds > 0 else None,
        "rows_per_s": round(plan.rows / seconds, 1) if seconds > 0 else None,
    }
