"""The dashboard's feature window: time from a request for a 2,000-character window of an SAE's features to
the payload the browser colours (encoder on the window's recorded states, the window's most active features
chosen, float16 + base64), through DashboardService.window as the page's callback calls it.

    python benchmarks/bench_dashboard_features.py REC --sae SAE_FOLDER       # a real recording and SAE
    python benchmarks/bench_dashboard_features.py --synthetic 20000          # 3 x 512 h states, SAE 4096 / k 32

Warm-up: the dashboard encodes every window's features in the background from its start (while the cache
holds them); "after warm-up" is a random window then. Cold: a window nobody asked for before (the feature
cache emptied first); warm: the same window again; next: the window after it.
The issue's target (issue 20): <= 100 ms for a 2,000-character window.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probe.runtime.threads import apply_thread_policy  # noqa: E402

apply_thread_policy()

import numpy as np  # noqa: E402


def synthetic(folder: Path, rows: int, hidden: int = 512, d_sae: int = 4096, k: int = 32) -> tuple[Path, Path]:
    """A recording of `rows` characters with h states of 3 layers (smooth noise, like real states) and a random
    top-k SAE on L2.h that claims the recording's weights."""
    from probe.names import Site
    from probe.sae.io import save_sae
    from probe.sae.model import TopKSAE
    from tests.synthetic_recordings import make_recording
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("the quick brown fox jumps over a lazy dog [[]]\n"), rows))
    arrays = {f"L{l}.h": np.tanh(rng.standard_normal((rows, hidden), dtype=np.float32)).astype(np.float16)
              for l in range(3)}
    sha = "0" * 64
    rec = make_recording(folder / "rec", text, arrays, num_layers=3, hidden=hidden, dtype=np.float16,
                         extra_meta={"checkpoint": {"sha256": sha}})
    sae = save_sae(folder / "sae", TopKSAE(hidden, d_sae, k), site=Site(2, "h"),
                   source={"weights_sha256": sha, "cell": "lstm", "rnn_size": hidden}, train_info={}, metrics=None)
    return rec, Path(sae)


def settle(svc) -> None:
    """Wait until the dashboard's background encoding of the next window is done (it shares the cores)."""
    if svc._prefetching is not None:
        svc._prefetching.result()


def measure(rec, sae, *, window: int, repeats: int) -> dict:
    import torch
    from dashboards.service import DashboardService
    t0 = time.perf_counter()
    svc = DashboardService(rec, sae=sae, atlas=None, unit="L0.h.0", window_rows=window)
    frec = svc.frec
    site = frec.feature_site
    rng = np.random.default_rng(0)
    svc._warming.join()
    warmup_s = time.perf_counter() - t0
    cached = frec.cached_rows()
    after = []
    for _ in range(repeats):
        s = int(rng.integers(0, max(1, frec.n_rows - window)))
        t = time.perf_counter()
        svc.window(s, site.layer, site.kind, None, int(rng.integers(0, frec.d_sae)))
        after.append(time.perf_counter() - t)
    cold, warm, nxt, feats, size = [], [], [], [], 0
    for _ in range(repeats):
        s = int(rng.integers(0, max(1, frec.n_rows - 2 * window)))
        j = int(rng.integers(0, frec.d_sae))
        settle(svc)
        frec._blocks.clear()
        frec._held = 0
        t = time.perf_counter()
        frec.array(site.array)[s:s + window]
        feats.append(time.perf_counter() - t)
        frec._blocks.clear()
        frec._held = 0
        settle(svc)
        t = time.perf_counter()
        w = svc.window(s, site.layer, site.kind, None, j)
        cold.append(time.perf_counter() - t)
        settle(svc)  # the reader looks at the window a while before the next request
        t = time.perf_counter()
        svc.window(s, site.layer, site.kind, None, j)
        warm.append(time.perf_counter() - t)
        size = len(json.dumps(w))
        settle(svc)
        t = time.perf_counter()
        svc.window(s + window, site.layer, site.kind, None, j)
        nxt.append(time.perf_counter() - t)
    ms = lambda xs: round(1000 * float(np.median(xs)), 1)  # noqa: E731
    return {"recording": str(frec), "window": window, "threads": torch.get_num_threads(), "repeats": repeats,
            "warmup_s": round(warmup_s, 1), "warmup_rows": cached, "payload_after_warmup_ms": ms(after),
            "features_cold_ms": ms(feats), "payload_cold_ms": ms(cold),
            "payload_cold_max_ms": round(1000 * max(cold), 1),
            "payload_warm_ms": ms(warm), "payload_next_ms": ms(nxt), "payload_kb": round(size / 1024),
            "columns": len(w["cols"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recording", nargs="?")
    ap.add_argument("--sae")
    ap.add_argument("--synthetic", type=int, default=0, metavar="ROWS")
    ap.add_argument("--window", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            rec, sae = synthetic(Path(tmp), args.synthetic)
        elif args.recording and args.sae:
            rec, sae = args.recording, args.sae
        else:
            ap.error("give REC --sae SAE_FOLDER, or --synthetic ROWS")
        r = measure(rec, sae, window=args.window, repeats=args.repeats)
    print(f"{r['recording']}\n  background warm-up: {r['warmup_rows']:,} rows in {r['warmup_s']} s; "
          f"a window after it: {r['payload_after_warmup_ms']} ms\n"
          f"  {r['window']:,}-row window, {r['threads']} thread(s), median of {r['repeats']}: "
          f"features {r['features_cold_ms']} ms; dashboard payload cold {r['payload_cold_ms']} ms "
          f"(max {r['payload_cold_max_ms']}), warm {r['payload_warm_ms']} ms, next window (prefetched) "
          f"{r['payload_next_ms']} ms; {r['columns']} feature columns, "
          f"{r['payload_kb']} KB (target: <= 100 ms)")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
