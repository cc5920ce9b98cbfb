"""Feature activations of a dashboard window: time to compute every feature over W rows of a recording.

    python benchmarks/bench_feature_window.py REC --sae SAE           # a real recording and SAE
    python benchmarks/bench_feature_window.py --synthetic 50000       # random L2.h (512 units), random SAE 4096/k 32

Cold: a window nobody asked for before (the encoder runs on its blocks); warm: the same window again (from
the sparse block cache). The issue's target: <= 100 ms cold for a 2,000-character window.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from probe.runtime.threads import apply_thread_policy

apply_thread_policy()

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def synthetic(folder: Path, rows: int, hidden: int, d_sae: int, k: int):
    from probe.names import Site
    from probe.sae.io import save_sae
    from probe.sae.model import TopKSAE
    from tests.synthetic_recordings import make_recording
    text = "".join(np.random.default_rng(0).choice(list("abcdefgh [];\n"), rows))
    h = np.tanh(np.random.default_rng(1).standard_normal((rows, hidden))).astype(np.float16)
    sha = "0" * 64
    rec = make_recording(folder / "rec", text, {"L2.h": h}, num_layers=3, hidden=hidden, dtype=np.float16,
                         extra_meta={"checkpoint": {"sha256": sha}})
    sae = save_sae(folder / "sae", TopKSAE(hidden, d_sae, k), site=Site(2, "h"),
                   source={"weights_sha256": sha, "cell": "lstm", "rnn_size": hidden}, train_info={})
    return rec, sae


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recording", nargs="?")
    ap.add_argument("--sae")
    ap.add_argument("--synthetic", type=int, default=0, metavar="ROWS")
    ap.add_argument("--window", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    from probe.sae.features import open_features
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            rec, sae = synthetic(Path(tmp), args.synthetic, 512, 4096, 32)
        else:
            if not (args.recording and args.sae):
                ap.error("give REC --sae SAE, or --synthetic ROWS")
            rec, sae = args.recording, args.sae
        frec = open_features(rec, sae)
        name = frec.arrays_for()[0]
        rng = np.random.default_rng(0)
        cold, warm = [], []
        for _ in range(args.repeats):
            s = int(rng.integers(0, frec.n_rows - args.window))
            frec._blocks.clear()
            frec._held = 0
            t = time.perf_counter()
            frec.array(name)[s:s + args.window]
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            frec.array(name)[s:s + args.window]
            warm.append(time.perf_counter() - t)
        print(f"{frec}: window {args.window} rows, {torch.get_num_threads()} thread(s): cold median "
              f"{1000 * np.median(cold):.1f} ms (min {1000 * min(cold):.1f}), warm median {1000 * np.median(warm):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
