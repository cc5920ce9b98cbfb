"""A probe CharRNN from matched weights, and its checkpoint folder (the format `probe train` writes).

The conversion is exact: tensors are copied (cast to float32); a missing RNN or read-out bias is zeros;
a one-hot input becomes an identity embedding (V x V), whose lookup gives the one-hot vector itself, so
layer 0's input weight reads exactly the column the original's one-hot product picked.
"""
from __future__ import annotations

from pathlib import Path

import torch

from probe.checks import ParamError
from probe.data.vocab import Vocab
from probe.errors import ProbeError
from probe.files import atomic_folder
from probe.model import checkpoint as ckpt
from probe.model.charrnn import CharRNN, ModelConfig
from probe.model.imports.roles import Weights


def model_config(w: Weights) -> ModelConfig:
    return ModelConfig(vocab_size=w.vocab_size, model=w.cell, rnn_size=w.hidden, num_layers=len(w.layers),
                       embed_size=w.embed_size, dropout=0.0)


def state_dict(w: Weights) -> dict[str, torch.Tensor]:
    """CharRNN's state dict (float32, cpu) holding `w`'s tensors."""
    f32 = lambda t: t.detach().to("cpu", torch.float32).contiguous().clone()  # noqa: E731
    out = {"embed.weight": torch.eye(w.vocab_size) if w.embed is None else f32(w.embed)}
    G = int(w.layers[0].w_hh.shape[0])
    for i, layer in enumerate(w.layers):
        out[f"layers.{i}.weight_ih_l0"] = f32(layer.w_ih)
        out[f"layers.{i}.weight_hh_l0"] = f32(layer.w_hh)
        out[f"layers.{i}.bias_ih_l0"] = torch.zeros(G) if layer.b_ih is None else f32(layer.b_ih)
        out[f"layers.{i}.bias_hh_l0"] = torch.zeros(G) if layer.b_hh is None else f32(layer.b_hh)
    out["head.weight"] = f32(w.head_w)
    out["head.bias"] = torch.zeros(w.vocab_size) if w.head_b is None else f32(w.head_b)
    return out


def build_model(w: Weights) -> CharRNN:
    """The probe model (eval mode, float32, cpu) computing what `w` computes."""
    model = CharRNN(model_config(w))
    model.load_state_dict(state_dict(w))
    return model.eval()


def check_vocab_size(vocab: Vocab, w: Weights) -> None:
    if vocab.size != w.vocab_size:
        raise ParamError("vocab", f"has {vocab.size} symbols, but the model's read-out ({w.head_keys[0]}) has "
                                  f"{w.vocab_size} rows: it is not this model's vocabulary")


def checkpoint_meta(model: CharRNN, vocab: Vocab, imported: dict) -> dict:
    """checkpoint.json's content for an imported model (checkpoint.save adds format, file hashes, time)."""
    return {"model_config": model.cfg.to_json(), "vocab": vocab.to_json(), "step": 0,
            "num_params": model.num_params(), "torch": torch.__version__, "imported": imported}


def check_out(out: str | Path, overwrite: bool) -> Path:
    """`out` when it may be written: ProbeError for an existing file, ParamError for an existing folder
    without `overwrite`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ProbeError(f"{out} exists and is not a folder")
    if out.exists() and not overwrite:
        raise ParamError("overwrite", f"{out} already exists; pass {{overwrite=True}} to replace it", advice=True)
    return out


def write_checkpoint(out: str | Path, model: CharRNN, vocab: Vocab, imported: dict, overwrite: bool = False
                     ) -> ckpt.Checkpoint:
    """Write the checkpoint folder `out` whole or not at all, read it back (hashes, shapes) and check that
    it holds exactly `model`'s weights; the loaded Checkpoint."""
    out = check_out(out, overwrite)
    meta = checkpoint_meta(model, vocab, imported)
    with atomic_folder(out) as tmp:
        ckpt.save(tmp, model, meta)
        back = ckpt.load(tmp)
        want = model.state_dict()
        for name, t in back.model.state_dict().items():
            if not torch.equal(t, want[name]):
                raise ProbeError(f"the checkpoint written to {out} does not hold the imported {name}")
    return ckpt.load(out)
