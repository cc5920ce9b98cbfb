"""Bring your own model: import a character RNN trained elsewhere into a probe checkpoint.

`import_file(path, vocab, out)` reads a weights file (safetensors, a weights-only .pt/.pth, Karpathy's
min-char-rnn .npz); `from_torch(module, vocab, out)` takes a live nn.Module. One module per job:
reading (files), roles (keys by shape and role, --map), vocabs, minchar, torch_module (live modules),
build (the probe model and its checkpoint folder), selfcheck (the loss against the original's).
"""
from probe.model.imports.importer import from_torch, import_file

__all__ = ["from_torch", "import_file"]
