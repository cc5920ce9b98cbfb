"""Benchmark the atlas: every h and c unit of a recording against the whole candidate library.

    python benchmarks/bench_atlas.py recordings/wiki-val          # the target: <= 10 min, <= 4 GB peak RSS
    python benchmarks/bench_atlas.py --quick                      # a synthetic 60k-row 2x128 recording
    python benchmarks/bench_atlas.py --synthetic 304000 3 512     # a synthetic recording of the wiki's size

Prints the wall time of each stage, the peak resident memory of the process (ru_maxrss: the recording's
memory-mapped pages count in it while they are mapped) and the coverage; --out DIR also saves the atlas.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe.runtime.threads import apply_thread_policy  # noqa: E402

POLICY = apply_thread_policy()

import numpy as np  # noqa: E402

from probe.analysis.atlas import build_atlas  # noqa: E402
from probe.analysis.candidates import candidate_library  # noqa: E402
from probe.analysis.concepts import column  # noqa: E402
from probe.data.vocab import Vocab  # noqa: E402
from probe.names import array_name  # noqa: E402
from probe.record.recording import Recording, RecordingWriter  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def synthetic(out: Path, n: int, layers: int, hidden: int, seed: int = 0) -> Path:
    """A recording of wiki-like text: h float16, c float32 (as `probe record` writes them), smooth noise plus
    a few planted units (digits, column, inside [[ ]])."""
    from benchmarks.bench_find_neurons import make_text
    text = make_text(n, seed)
    text = "".join(ch if i % 97 else "7" for i, ch in enumerate(text))  # a few digits
    vocab = Vocab.from_text(text)
    planted = {"digit": np.array([c.isdigit() for c in text], np.float32), "column": column(text) / 40.0}
    w = RecordingWriter(out, overwrite=True)
    rng = np.random.default_rng(seed)
    chunk = 65536
    for l in range(layers):
        for k, dtype in (("h", np.float16), ("c", np.float32)):
            wr = w.array(array_name(l, k), (n, hidden), dtype)
            prev = np.zeros(hidden, np.float32)
            for s in range(0, n, chunk):
                e = min(n, s + chunk)
                a = rng.standard_normal((e - s, hidden), dtype=np.float32)
                a[0] = 0.5 * prev + a[0]
                for t in range(1, 4):  # a little smoothing over time, like real states
                    a[t:] += 0.5 * a[:-t]
                if k == "h":
                    a = np.tanh(a)
                a[:, l] = planted["digit"][s:e] + 0.3 * a[:, l]
                a[:, l + 1] = planted["column"][s:e] + 0.3 * a[:, l + 1]
                prev = a[-1]
                wr.write(a.astype(dtype))
    w.save_array("ids", vocab.encode(text))
    w.write_text(text)
    return w.finish({"n_rows": n, "vocab": vocab.to_json(),
                     "model_config": {"model": "lstm", "num_layers": layers, "rnn_size": hidden}})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recording", nargs="?", help="a recording folder (default: a synthetic one, see --synthetic)")
    ap.add_argument("--quick", action="store_true", help="synthetic 60,000 rows x 2 layers x 128 units")
    ap.add_argument("--synthetic", nargs=3, type=int, metavar=("ROWS", "LAYERS", "HIDDEN"), default=None)
    ap.add_argument("--kinds", default="h,c")
    ap.add_argument("--n-perm", type=int, default=100)
    ap.add_argument("--out", default=None, help="also save the atlas here")
    ap.add_argument("--json", default=None, help="write the measured numbers as JSON")
    args = ap.parse_args()
    if args.recording:
        path = Path(args.recording)
    else:
        n, layers, hidden = args.synthetic or ((60_000, 2, 128) if args.quick else (304_000, 3, 512))
        path = Path(tempfile.gettempdir()) / f"probe-bench-atlas-{n}-{layers}x{hidden}"
        if not (path / "meta.json").exists():
            t = time.perf_counter()
            synthetic(path, n, layers, hidden)
            print(f"built synthetic recording {path} in {time.perf_counter() - t:.1f} s")
    rec = Recording.open(path)
    print(f"{rec}; threads {POLICY.threads} ({POLICY.source})")
    t0 = time.perf_counter()
    lib = candidate_library(rec.text, byte_model=bool(rec.by_bytes))
    t_lib = time.perf_counter() - t0
    print(f"candidate library: {len(lib)} candidates in {t_lib:.1f} s")
    t1 = time.perf_counter()
    atlas = build_atlas(rec, kinds=args.kinds.split(","), candidates=lib, n_perm=args.n_perm, progress=True)
    t_build = time.perf_counter() - t1
    t_save = 0.0
    if args.out:
        t2 = time.perf_counter()
        atlas.save(args.out)
        t_save = time.perf_counter() - t2
    total = time.perf_counter() - t0
    t = atlas.table
    res = {"recording": str(path), "rows": rec.n_rows, "units": len(t), "candidates": atlas.meta["n_candidates"],
           "library_s": round(t_lib, 1), "build_s": round(t_build, 1), "save_s": round(t_save, 1),
           "total_s": round(total, 1), "peak_rss_gb": round(peak_rss_gb(), 2), "threads": POLICY.threads,
           "n_explained": int(t.explained.sum()), "n_strong": int(atlas.coverage.n_strong.sum()),
           "threshold_t": atlas.meta["threshold_t"]}
    print(json.dumps(res, indent=1))
    print(atlas.coverage.to_string(index=False))
    print(t.head(10)[["unit", "concept", "metric", "score", "chance", "p_value"]].to_string(index=False))
    ok = total <= 600 and res["peak_rss_gb"] <= 4
    print(f"target (<= 600 s, <= 4 GB): {'met' if ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
