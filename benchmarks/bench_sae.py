"""Benchmark one epoch of SAE training (`probe.sae.train_sae`) against a bare PyTorch loop, same shapes, same run.

    python benchmarks/bench_sae.py --recording recordings/wiki-val --site L2.h      # the real target
    python benchmarks/bench_sae.py --synthetic 20000 --rounds 2                     # a small check

The real target: the wiki validation recording's L2.h (304,487 x 512 float16; 90% of it, 274,038 rows, is
the training part), 4,096 features, k = 32, batch 1,024. `--synthetic N` writes a recording of N random
rows x --width instead (float16, like a recorded h) in a temporary folder.

probe: `train_sae(epochs=1, evaluate_loss=False)`: its shuffled reading of the memory map, the hand-written
sparse step (AuxK included), Adam, the decoder's renormalisation, the held-out metrics after the epoch and the
folder written at the end. Reported twice: the whole call, and its training loop alone ("loop").
bare: the rows read from the memory map into one float32 tensor, a seeded permutation, and for each batch the
usual dense autograd top-k SAE (pre-activations, topk, ReLU, scatter into a dense code, code @ W_dec, squared
error, backward), torch.optim.Adam with the same settings (fused where torch has it), the decoder rows
renormalised; no AuxK, no gradient projection, no held-out pass, nothing written (less work than probe).
The two alternate `--rounds` times in one process; each round's ratio is bare seconds / probe seconds
(above 1: probe is faster). Target: >= 0.8.
"""
from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe.runtime.heap import apply_heap_policy  # noqa: E402
from probe.runtime.threads import apply_thread_policy  # noqa: E402

apply_thread_policy()  # as the `probe` command runs: CPU thread policy before torch loads
apply_heap_policy("train")  # and `probe sae`'s heap (freed blocks kept): both loops run under it

import numpy as np  # noqa: E402
import torch  # noqa: E402

from probe.names import parse_array  # noqa: E402
from probe.record.recording import Recording, RecordingWriter  # noqa: E402
from probe.sae.train import ADAM, train_sae  # noqa: E402


def synthetic_recording(folder: Path, rows: int, width: int, seed: int = 0) -> Recording:
    """A recording of `rows` random rows of L2.h (float16, smooth over time like a recorded state)."""
    from probe.data.vocab import Vocab
    rng = np.random.default_rng(seed)
    text = "".join(rng.choice(list("abcdefgh "), rows))
    vocab = Vocab.from_text(text)
    w = RecordingWriter(folder / "rec")
    arr = w.array("L2.h", (rows, width), np.float16)
    basis = rng.standard_normal((64, width)).astype(np.float32) / 4
    for a in range(0, rows, 16384):
        n = min(16384, rows - a)
        codes = np.maximum(rng.standard_normal((n, 64)).astype(np.float32) - 1.0, 0)
        arr.write(np.tanh(codes @ basis + 0.1 * rng.standard_normal((n, width)).astype(np.float32)))
    w.save_array("ids", vocab.encode(text))
    w.write_text(text)
    return Recording.open(w.finish({"n_rows": rows, "vocab": vocab.to_json(),
                                    "model_config": {"model": "lstm", "num_layers": 3, "rnn_size": width,
                                                     "vocab_size": vocab.size}}))


def bare_epoch(array, n_train: int, d_sae: int, k: int, batch_size: int, lr: float, seed: int) -> float:
    """Seconds for one epoch of the bare dense autograd loop over rows [0, n_train) of `array`."""
    t0 = time.perf_counter()
    x_all = torch.from_numpy(np.array(array[:n_train], dtype=np.float32))
    d_in = x_all.shape[1]
    g = torch.Generator().manual_seed(seed)
    w_dec = torch.randn(d_sae, d_in, generator=g)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    W_dec = torch.nn.Parameter(w_dec)
    W_enc = torch.nn.Parameter(w_dec.t().contiguous())
    b_enc = torch.nn.Parameter(torch.zeros(d_sae))
    b_dec = torch.nn.Parameter(x_all[:16384].mean(0))
    var = float(x_all[:16384].var(0).sum())
    params = [W_enc, b_enc, W_dec, b_dec]
    try:
        opt = torch.optim.Adam(params, lr=lr, fused=True, **ADAM)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.Adam(params, lr=lr, **ADAM)
    perm = torch.randperm(n_train, generator=g)
    for a in range(0, n_train, batch_size):
        x = x_all[perm[a:a + batch_size]]
        pre = (x - b_dec) @ W_enc + b_enc
        v, i = pre.topk(k, dim=1)
        z = torch.zeros_like(pre).scatter(1, i, v.relu())
        x_hat = z @ W_dec + b_dec
        loss = (x_hat - x).square().sum(1).mean() / var
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recording", help="a recording folder (e.g. recordings/wiki-val)")
    ap.add_argument("--synthetic", type=int, metavar="ROWS", help="use ROWS random rows instead of a recording")
    ap.add_argument("--width", type=int, default=512, help="units a row with --synthetic (default 512)")
    ap.add_argument("--site", default="L2.h")
    ap.add_argument("--features", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rounds", type=int, default=3, help="probe/bare pairs, interleaved (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the thread policy's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sae-"))
    try:
        if args.recording:
            rec = Recording.open(args.recording)
        elif args.synthetic:
            rec = synthetic_recording(tmp, args.synthetic, args.width)
        else:
            raise SystemExit("give --recording FOLDER or --synthetic ROWS")
        site = parse_array(args.site)
        array = rec.array(site.array)
        n = rec.n_rows
        n_train = n - max(1, int(round(n * 0.1)))
        print(f"{rec.path.name} {site}: {n:,} rows x {array.shape[1]} ({array.dtype}), training part {n_train:,}; "
              f"{args.features} features, k {args.k}, batch {args.batch_size}; {torch.get_num_threads()} thread(s); "
              f"torch {torch.__version__}", flush=True)
        rows = []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            res = train_sae(rec, site, d_sae=args.features, k=args.k, epochs=1, batch_size=args.batch_size,
                            lr=args.lr, out=tmp / "sae", overwrite=True, evaluate_loss=False)
            whole = time.perf_counter() - t0
            loop = res.history[0]["train_seconds"]
            bare = bare_epoch(array, n_train, args.features, args.k, args.batch_size, args.lr, r)
            rows.append((whole, loop, bare))
            print(f"round {r + 1}: probe {whole:7.2f} s (loop {loop:7.2f} s, {n_train / loop:9,.0f} rows/s)  "
                  f"bare {bare:7.2f} s ({n_train / bare:9,.0f} rows/s)  ratio bare/probe {bare / whole:.2f} "
                  f"(loop {bare / loop:.2f})  held-out FVU {res.history[0]['held_out_fvu']:.4f}", flush=True)
        med = statistics.median
        print(f"median ratio bare/probe: whole call {med(b / w for w, _, b in rows):.2f}x, "
              f"loop {med(b / l for _, l, b in rows):.2f}x (target >= 0.8); "
              f"probe epoch {med(w for w, _, _ in rows):.1f} s, "
              f"bare {med(b for _, _, b in rows):.1f} s; "
              f"steps/epoch {math.ceil(n_train / args.batch_size)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
