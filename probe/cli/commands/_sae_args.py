"""Shared CLI option --sae SAE_FOLDER: look at the features of a sparse autoencoder instead of the units."""
from __future__ import annotations

import argparse


def add_sae_argument(p: argparse.ArgumentParser, what: str = "units") -> None:
    p.add_argument("--sae", metavar="SAE_FOLDER", default=None,
                   help=f"a sparse autoencoder (from `probe sae`) trained on this model: its features are the "
                        f"{what} (named like L2.h.f123)")


def open_source(recording: str, args: argparse.Namespace):
    """The Recording at `recording`, or with --sae its FeatureRecording (refused in one line when the SAE was
    trained on another site or model)."""
    sae = getattr(args, "sae", None)
    if sae:
        from probe.sae.features import open_features
        return open_features(recording, sae)
    from probe.record.recording import Recording
    return Recording.open(recording)
