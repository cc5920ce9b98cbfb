"""The checkpoint behind a recording: the one its meta.json names, or one given, checked against it."""
from __future__ import annotations

from pathlib import Path

from probe.checks import ParamError
from probe.errors import ProbeError
from probe.model import checkpoint as ckpt
from probe.record.recording import Recording


def recording_checkpoint(rec: Recording, checkpoint: ckpt.Checkpoint | str | Path | None = None, *,
                         same_weights: bool = True, param: str = "checkpoint") -> ckpt.Checkpoint:
    """The model behind `rec`: `checkpoint`, else the one named in its meta.json.

    Refused (naming `param`) when it is gone, reads the text with another vocabulary, has another shape,
    or, with `same_weights`, holds other weights than the recorded ones (an n-gram baseline only needs
    the training split, so `compare` passes `same_weights=False`).
    """
    named = rec.meta.get("checkpoint") or {}
    if isinstance(checkpoint, ckpt.Checkpoint):
        ck, path = checkpoint, checkpoint.path
    else:
        path = checkpoint if checkpoint is not None else named.get("path")
        if path is None or not Path(path).exists():
            raise ParamError(param, f"the recording {rec.path} names no checkpoint that is still there "
                                    f"({named.get('path') or 'none'}): give the model's checkpoint")
        try:
            ck = ckpt.load(path)
        except ProbeError as e:
            raise ParamError(param, f"the checkpoint of recording {rec.path.name} does not load ({e})") from None
    if ck.vocab != rec.vocab:
        raise ParamError(param, f"checkpoint {path} has another vocabulary than recording {rec.path.name}")
    if same_weights:
        sha, recorded = (ck.meta.get("files") or {}).get("model.safetensors"), named.get("sha256")
        if sha and recorded and sha != recorded and not named.get("untrained"):
            raise ParamError(param, f"{path} is not the model recorded in {rec.path} (other weights)")
        cfg = ck.model.cfg
        if (cfg.num_layers, cfg.rnn_size) != (rec.num_layers, rec.hidden_size):
            raise ParamError(param, f"{path} is a {cfg.num_layers}x{cfg.rnn_size} model; the recording "
                                    f"{rec.path} is {rec.num_layers}x{rec.hidden_size}")
    return ck
