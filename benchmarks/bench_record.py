"""Benchmark `probe record`: full recording vs plain inference, and peak memory on a long text.

    python benchmarks/bench_record.py            # full: 3x512 LSTM speed, 5M-character memory run
    python benchmarks/bench_record.py --quick    # a small check that runs in seconds

Speed: chars/s of a full recording (all layers: h, c, gates, top-k, loss, written to disk)
against plain inference of the same model over the same streams and chunks in the same
run (fused layers + head + softmax, nothing kept). Target ratio >= 0.5.

Memory: peak RSS of a fresh process recording a long text (sampled every 20 ms by a
thread with psutil), next to the recording's size on disk. The model is random (speed
and memory do not depend on the weights); the text is the bundled Wikipedia sample,
repeated as needed. Run it alone: two busy cores halve every number.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "probe" / "numba"))

from probe.runtime.heap import apply_heap_policy  # noqa: E402
from probe.runtime.threads import apply_thread_policy  # noqa: E402

apply_thread_policy()  # as `probe record` runs: CPU thread policy before torch loads (probe/runtime/threads.py)
apply_heap_policy("record")  # and its heap setting (probe/runtime/heap.py)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from probe.model import checkpoint  # noqa: E402
from probe.data.corpus import BUNDLED, read_bytes  # noqa: E402
from probe.record.recorder import CHUNK_ROWS  # noqa: E402
from probe.model.charrnn import CharRNN, ModelConfig  # noqa: E402
from probe.names import array_name  # noqa: E402
from probe.data.vocab import Vocab  # noqa: E402


def make_checkpoint(folder: Path, layers: int, size: int, model: str = "lstm") -> Path:
    torch.manual_seed(0)
    vocab = Vocab.byte()
    cfg = ModelConfig(vocab_size=vocab.size, model=model, rnn_size=size, num_layers=layers, embed_size=64,
                      dropout=0.0)
    dest = folder / f"{model}-{layers}x{size}"
    checkpoint.save(dest, CharRNN(cfg), {"model_config": cfg.to_json(), "vocab": vocab.to_json(), "step": 0})
    return dest


def text_of(n: int) -> bytes:
    data = read_bytes(BUNDLED["wiki"])
    return (data * (n // len(data) + 1))[:n]


@torch.no_grad()
def plain_inference(model: CharRNN, ids: np.ndarray, streams: int, chunk_size: int) -> float:
    """Seconds for forward + softmax over `ids` laid out as the recorder lays them out."""
    n = len(ids)
    L = -(-n // streams)
    grid = torch.zeros(streams * L, dtype=torch.long)
    grid[:n] = torch.as_tensor(ids)
    grid = grid.view(streams, L)
    T = max(1, chunk_size // streams)
    t = time.perf_counter()
    state = None
    for t0 in range(0, L, T):
        logits, state = model(grid[:, t0:t0 + T], state)
        torch.softmax(logits, dim=-1)
    return time.perf_counter() - t


def speed(ck_path: Path, n_chars: int, streams_list: list[int], chunk_size: int, tmp: Path) -> list[dict]:
    from probe.record.recorder import record
    ck = checkpoint.load(ck_path)
    data = text_of(n_chars)
    ids = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    rows = []
    record(ck, data[:2000], tmp / "warm", overwrite=True)  # compile/load the numba kernel first
    for streams in streams_list:
        plain = plain_inference(ck.model, ids, streams, chunk_size)
        t = time.perf_counter()
        rec = record(ck, data, tmp / f"rec-{streams}", streams=streams, chunk_size=chunk_size, overwrite=True)
        full = time.perf_counter() - t
        rows.append({"model": ck_path.name, "chars": n_chars, "streams": streams, "plain_cps": n_chars / plain,
                     "record_cps": n_chars / full, "record_loop_cps": n_chars / rec.meta["record_seconds"],
                     "ratio": plain / full, "deviation_s": rec.meta.get("deviation_seconds", 0.0),
                     "deviation_max": rec.meta["deviation"]["max_abs"],
                     "disk_mb": sum(f.stat().st_size for f in rec.path.iterdir()) / 1e6})
        shutil.rmtree(rec.path)
    return rows


def memory_child(ck_path: str, n_chars: int, out: str, chunk_size: int) -> None:
    """Runs in a fresh process: record n_chars and print peak RSS as JSON."""
    import psutil
    proc = psutil.Process()
    peak = [proc.memory_info().rss]
    done = threading.Event()

    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], proc.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    from probe.record.recorder import record
    data = text_of(n_chars)
    base = proc.memory_info().rss
    t = time.perf_counter()
    rec = record(ck_path, data, out, chunk_size=chunk_size, overwrite=True)
    seconds = time.perf_counter() - t
    done.set()
    peak[0] = max(peak[0], proc.memory_info().rss)
    disk = sum(f.stat().st_size for f in Path(out).iterdir())
    print(json.dumps({"chars": n_chars, "rows": rec.n_rows, "seconds": seconds, "peak_rss_mb": peak[0] / 2 ** 20,
                      "rss_before_mb": base / 2 ** 20, "disk_mb": disk / 1e6,
                      "max_abs_c": float(max(np.abs(rec.array(array_name(l, "c"))[-100_000:]).max()
                                             for l in range(rec.num_layers)))}))


def memory(ck_path: Path, n_chars: int, chunk_size: int, tmp: Path) -> dict:
    out = tmp / "memory-rec"
    cmd = [sys.executable, __file__, "--_memory-child", str(ck_path), str(n_chars), str(out), str(chunk_size)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"memory run failed:\n{res.stderr[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return dict(json.loads(res.stdout.strip().splitlines()[-1]), model=ck_path.name)


def table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(c[1] for c in cols) + " |"
    sep = "|" + "|".join("---" for _ in cols) + "|"
    body = ["| " + " | ".join(format(r[c[0]], c[2]) for c in cols) + " |" for r in rows]
    return "\n".join([head, sep] + body)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_memory-child":
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "0")) or torch.get_num_threads())
        memory_child(argv[1], int(argv[2]), argv[3], int(argv[4]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny model and texts: checks the script in seconds")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--chars", type=int, default=100_000, help="characters for the speed comparison")
    p.add_argument("--streams", default="1,16", help="comma-separated stream counts to compare")
    p.add_argument("--chunk-size", type=int, default=CHUNK_ROWS)
    p.add_argument("--memory-chars", type=int, default=5_000_000)
    p.add_argument("--memory-layers", type=int, default=2,
                   help="layers of the memory-run model (smaller than 3x512: its recording must fit the disk)")
    p.add_argument("--memory-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.quick:
        args.layers, args.size, args.chars, args.streams = 2, 64, 20_000, "1,4"
        args.memory_chars, args.memory_layers, args.memory_size = 200_000, 1, 16
        args.threads = args.threads or 1  # a check, not a measurement: stay off the other core
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["BENCH_THREADS"] = str(args.threads)
    streams = [int(s) for s in args.streams.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-record-") as d:
        tmp = Path(d)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores", flush=True)
        rows = speed(make_checkpoint(tmp, args.layers, args.size), args.chars, streams, args.chunk_size, tmp)
        print("\nspeed: full recording (h, c, gates, top-5, loss, to disk) vs plain inference (forward + softmax)")
        print(table(rows, [("model", "model", "s"), ("chars", "chars", ","), ("streams", "streams", "d"),
                           ("plain_cps", "plain chars/s", ",.0f"),
                           ("record_cps", "record chars/s", ",.0f"),
                           ("ratio", "ratio", ".2f"), ("record_loop_cps", "record loop chars/s", ",.0f"),
                           ("deviation_s", "deviation s", ".2f"), ("deviation_max", "max |dev|", ".3g"), ("disk_mb", "disk MB", ",.0f")]), flush=True)
        mem = memory(make_checkpoint(tmp, args.memory_layers, args.memory_size), args.memory_chars,
                     args.chunk_size, tmp)
        print("\nmemory: one process recording a long text (peak RSS sampled every 20 ms)")
        print(table([mem], [("model", "model", "s"), ("chars", "chars", ","), ("seconds", "seconds", ".1f"),
                            ("rss_before_mb", "RSS before MB", ",.0f"), ("peak_rss_mb", "peak RSS MB", ",.0f"),
                            ("disk_mb", "recording MB", ",.0f"), ("max_abs_c", "max |c| (last 100k)", ",.1f")]))
        if any(r["ratio"] < 0.5 for r in rows):
            print("\nnote: ratio below the 0.5 target for some rows (is anything else running?)")


if __name__ == "__main__":
    main()
