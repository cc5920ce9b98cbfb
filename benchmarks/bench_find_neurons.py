"""Benchmark find_neurons: 1M characters x 3 layers x 512 units x (h, c), float16, on disk.

    python benchmarks/bench_find_neurons.py            # full size (target: <= 30 s, <= 2 GB peak RSS)
    python benchmarks/bench_find_neurons.py --quick    # 100k characters x 2 layers x 128 units

Builds a synthetic recording (smooth random activations, one planted unit that
copies a regex concept) once in a cache folder, then times `find_neurons`.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe.analysis import concepts  # noqa: E402
from probe.analysis.neurons import find_neurons  # noqa: E402
from probe.record.recording import Recording, RecordingWriter  # noqa: E402
from probe.data.vocab import Vocab  # noqa: E402
from probe.names import array_name  # noqa: E402


def make_text(n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    words = ["the", "river", "city", "of", "and", "north", "church", "was", "built", "in"]
    out, size = [], 0
    while size < n:
        w = str(rng.choice(words))
        piece = f"[[{w}]] " if rng.random() < 0.1 else (w + ("\n" if rng.random() < 0.08 else " "))
        out.append(piece)
        size += len(piece)
    return "".join(out)[:n]


def build(out: Path, n: int, layers: int, hidden: int, seed: int = 0) -> Path:
    """A float16 recording with h and c for every layer, written chunk by chunk."""
    text = make_text(n, seed)
    vocab = Vocab.from_text(text)
    labels = concepts.get("wiki-link").labels(text)
    w = RecordingWriter(out, overwrite=True)
    rng = np.random.default_rng(seed)
    chunk = 65536
    names = [array_name(l, k) for l in range(layers) for k in "hc"]
    writers = {name: w.array(name, (n, hidden), np.float16) for name in names}
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        for name, wr in writers.items():
            a = rng.standard_normal((e - s, hidden), dtype=np.float32)
            if name.endswith(".h"):
                a = np.tanh(a)
            if name == array_name(layers - 1, "c"):
                a[:, 7] = labels[s:e] * 2 + 0.5 * a[:, 7]
            wr.write(a.astype(np.float16))
    w.save_array("ids", vocab.encode(text))
    w.write_text(text)
    return w.finish({"n_rows": n, "vocab": vocab.to_json(),
                     "model_config": {"model": "lstm", "num_layers": layers, "rnn_size": hidden}})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100k characters x 2 layers x 128 units")
    ap.add_argument("--chars", type=int, default=None)
    ap.add_argument("--cache", default=None, help="folder for the synthetic recording (kept between runs)")
    ap.add_argument("--n-perm", type=int, default=100)
    args = ap.parse_args()
    n, layers, hidden = (100_000, 2, 128) if args.quick else (1_000_000, 3, 512)
    n = args.chars or n
    cache = Path(args.cache) if args.cache else Path(tempfile.gettempdir()) / f"probe-bench-{n}-{layers}x{hidden}"
    if not (cache / "meta.json").exists():
        t = time.perf_counter()
        build(cache, n, layers, hidden)
        print(f"built {cache} in {time.perf_counter() - t:.1f} s", flush=True)
        argv = [sys.executable, __file__, *sys.argv[1:]]
        if args.cache is None:
            argv += ["--cache", str(cache)]  # a fresh process: the peak memory measured is find_neurons' alone
        rc = subprocess.call(argv)
        if args.cache is None and args.quick:
            shutil.rmtree(cache, ignore_errors=True)
        return rc
    rec = Recording.open(cache)
    c = concepts.get("wiki-link")
    load = os.getloadavg()[0]
    find_neurons(Recording.open(cache), c, layers=[0], kinds=["h"], n_perm=2)  # compile numba kernels
    t, cpu = time.perf_counter(), time.process_time()
    res = find_neurons(rec, c, n_perm=args.n_perm)
    dt, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    top = res.table.iloc[0]
    print(f"find_neurons: {n:,} chars x {layers} layers x {hidden} units x (h, c) = {res.n_units:,} units, "
          f"{args.n_perm} permutations: {dt:.1f} s wall, {cpu:.1f} s CPU (all threads), peak RSS {peak_mb:.0f} MB, "
          f"load average before {load:.1f}")
    print(f"top unit {top.unit} held-out AUC {top.score:.3f} (chance {res.chance:.3f}, p {top.p_value:.3g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
