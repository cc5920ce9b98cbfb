"""Import a model trained elsewhere: from a weights file (`import_file`) or a live module (`from_torch`).

Both read the weights by role, check the vocabulary's size against the read-out, build the probe model,
run the self-check against the original, and only then write the checkpoint folder (atomically, the
format `probe train` writes) or hand back the checkpoint in memory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Mapping

from probe.checks import ParamError
from probe.model import checkpoint as ckpt
from probe.model.imports import build, minchar, roles, selfcheck
from probe.model.imports.reading import read_weights
from probe.model.imports.torch_module import ModuleParts, ModuleReference
from probe.model.imports.vocabs import read_vocab, vocab_from_json


def import_file(path: str | Path, vocab=None, out: str | Path | None = None, *, cell: str | None = None,
                maps: Mapping[str, str] | Iterable[str] | None = None, check_text=None,
                overwrite: bool = False) -> ckpt.Checkpoint:
    """Import the weights file `path` (.safetensors, .pt/.pth read weights-only, min-char-rnn .npz).

    vocab: the model's vocabulary (see `probe.model.imports.vocabs.read_vocab`; a min-char-rnn .npz may hold
    its `chars`). out: the checkpoint folder to write (None: the checkpoint stays in memory). cell: what the
    shapes must show (lstm, gru, rnn). maps: {NEW: OLD} or ["NEW=OLD"], renaming keys or prefixes before the
    roles are matched. check_text: a str, bytes or file path for the self-check (default: text sampled from
    the model). ProbeError (one line; nothing written) on anything that does not fit or fails the check.
    """
    if out is not None:
        build.check_out(out, overwrite)
    wf = read_weights(path)
    tensors = roles.apply_maps(wf.tensors, maps)
    if minchar.is_min_char_rnn(tensors):
        if cell not in (None, "rnn"):
            raise ParamError("cell", f"is {cell}, but {wf.path} holds min-char-rnn's arrays: a vanilla (tanh) RNN")
        w = minchar.min_char_weights(tensors)
        reference, fmt = minchar.MinCharReference(tensors), "min-char-rnn .npz"
    else:
        w = roles.match_keys(tensors, cell)
        reference, fmt = selfcheck.WeightsReference(w), f"{wf.fmt} state dict"
    if vocab is None:
        stored = next((wf.strings[k] for k in minchar.VOCAB_KEYS if k in wf.strings), None)
        if stored is None:
            raise ParamError("vocab", f"is needed: {wf.path} holds no character list; give the model's vocabulary "
                                      "(a JSON list of symbols, a string, an object, or bytes)")
        v = vocab_from_json(stored, f"the vocabulary stored in {wf.path}")
    else:
        v = read_vocab(vocab)
    return _finish(w, v, reference, {"source": str(wf.path.resolve()), "format": fmt}, out, check_text, overwrite)


def from_torch(module, vocab, out: str | Path | None = None, *, check_text=None,
               forward: Callable | None = None, overwrite: bool = False) -> ckpt.Checkpoint:
    """A probe checkpoint of the live `module` (embedding or one-hot -> nn.LSTM/GRU/RNN -> nn.Linear).

    vocab: its vocabulary (a list or string of symbols, a dict, "bytes", a Vocab or a JSON file path).
    out: write the checkpoint folder there (None: in memory; `probe.record(ck, ...)` takes either).
    The self-check compares with the module's own submodules run in order (each RNN module in its own
    batch_first layout), or with `forward(ids (1, T) long) -> logits (1, T, V)` when given: pass your
    model's forward to check the import against everything it does.
    """
    if out is not None:
        build.check_out(out, overwrite)
    parts = ModuleParts(module)
    w = parts.weights()
    return _finish(w, read_vocab(vocab), ModuleReference(parts, forward),
                   {"source": f"from_torch({type(module).__name__})", "format": "torch module"}, out, check_text,
                   overwrite)


def _finish(w: roles.Weights, vocab, reference, imported: dict, out, check_text, overwrite: bool) -> ckpt.Checkpoint:
    build.check_vocab_size(vocab, w)
    model = build.build_model(w)
    check = selfcheck.run_check(model, vocab, reference, check_text)
    imported = dict(imported, model=w.describe(), keys=w.keys(), check=check.to_dict())
    if out is None:
        meta = build.checkpoint_meta(model, vocab, imported)
        return ckpt.Checkpoint(path=Path("<imported>"), meta=meta, model=model, vocab=vocab)
    return build.write_checkpoint(out, model, vocab, imported, overwrite=overwrite)
