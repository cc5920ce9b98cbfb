"""probe import: turn a character RNN trained elsewhere into a probe checkpoint (checked against the original)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "import"
HELP = "import a character LSTM/GRU/RNN trained elsewhere (safetensors, weights-only .pt, min-char-rnn .npz)"
DESCRIPTION = """Turn a model trained with your own code into a probe checkpoint (model.safetensors +
checkpoint.json, the format `probe train` writes), so that record, find-neurons, the dashboard and
every other command work on it.

Read: a state dict in .safetensors, or in a .pt/.pth file read with torch.load(weights_only=True)
only (also nested under state_dict, model_state_dict or model); Karpathy's min-char-rnn as .npz
(Wxh, Whh, Why, bh, by). The model: an nn.Embedding or a one-hot input, nn.LSTM / nn.GRU /
nn.RNN (tanh) layers (one stacked module or one a layer; batch_first does not matter), a linear
read-out. Keys are matched by shape and role; --map NEW=OLD renames a key or a prefix where that is
not enough (probe's names: embed.weight, head.weight, head.bias). Not read: Lua Torch .t7 files.

The vocabulary (--vocab): a JSON file holding a list of symbols (symbol i has id i), a string, an
object ({"a": 0, ...} or {"0": "a", ...}), or the word bytes. Its ids are kept.

The import checks itself: the probe model's loss on a text (--check-text, else text sampled from the
model) must equal the original's (a model rebuilt from the file's raw tensors in plain torch, or
min-char-rnn's own numpy equations) within 1e-4 bits per character; otherwise nothing is written.

examples:
  probe import my-lstm/model.safetensors --vocab my-lstm/vocab.json --out my-model
  probe import ckpt.pt --vocab vocab.json --out my-model --map head.weight=proj.weight --map head.bias=proj.bias
  probe import min-char-rnn.npz --vocab chars.json --out min-char --check-text input.txt
From Python: probe.model.from_torch(module, vocab, out) for a live nn.Module.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights", help="weights file: .safetensors, .pt/.pth (weights only) or min-char-rnn .npz")
    p.add_argument("--vocab", help="vocabulary: a JSON file (list, string or object) or the word bytes "
                                   "(optional for an .npz that holds its chars)")
    p.add_argument("--out", "-o", required=True, help="checkpoint folder to create")
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"),
                   help="the cell the weights must hold (default: read from their shapes; rnn means tanh)")
    p.add_argument("--map", dest="maps", action="append", default=[], metavar="NEW=OLD",
                   help="rename the key (or every key starting with) OLD to NEW before matching, e.g. "
                        "head.weight=proj.weight or layers.=rnn. (repeatable)")
    p.add_argument("--check-text", metavar="FILE",
                   help="text for the self-check (its first 5,000 characters; default: text sampled from the model)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder at --out")


def vocab_argument(value: str | None):
    """--vocab as the library takes it: None, "bytes", inline JSON, or a file path."""
    if value is None:
        return None
    text = value.strip()
    if text.lower() in ("bytes", "byte"):
        return "bytes"
    if text[:1] in ("[", "{", '"'):  # inline JSON
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return Path(value)


def run(args: argparse.Namespace) -> int:
    from probe.model.imports import import_file
    from probe.model.imports.roles import summarize_keys

    ck = import_file(args.weights, vocab_argument(args.vocab), args.out, cell=args.cell, maps=args.maps,
                     check_text=Path(args.check_text) if args.check_text else None, overwrite=args.overwrite)
    imp = ck.meta["imported"]
    check = imp["check"]
    v = ck.vocab
    vocab = ("256 bytes" if v.encoding == "byte" else
             f"{v.size} characters" + ("" if v.unk is not None else ", no <unk>"))
    print(f"read {args.weights} ({imp['format']}): {imp['model']}; vocabulary {vocab}")
    print("keys: " + summarize_keys(imp["keys"]))
    print(f"check on {check['n']:,} predictions ({check['text']}): probe {check['probe_bits']:.6f} bits/char, "
          f"original {check['original_bits']:.6f} ({check['reference']}); mean |diff| {check['mean_abs']:.1e}, "
          f"max {check['max_abs']:.1e} (limit {check['tolerance']:.0e})")
    print(f"wrote {ck.path} (probe checkpoint: model.safetensors + checkpoint.json)")
    return 0
