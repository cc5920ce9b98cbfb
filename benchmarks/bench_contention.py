"""Benchmark probe on a busy machine: chars/s alone and beside one busy neighbour, in the same run.

    python benchmarks/bench_contention.py            # 2x512 training, 3x512 recording, 2,000 chars of live text
    python benchmarks/bench_contention.py --quick    # small models: checks the script in about a minute

Workloads: training (`train()`, 2x512 LSTM, batch 64 x 100), recording (`record()`, 3x512 LSTM) and
the dashboard's live text (`record_arrays` under `interactive_threads()`, as dashboards/service.py runs it).
Neighbours: none, a second `probe train` run (2x512), and a plain 2-thread torch matmul loop (torch's
defaults), each started in its own session as from a second terminal. Every measurement runs in a
fresh process that gets the CPU thread policy (probe/runtime/threads.py) and heap setting as a user
of the CLI does; "torch defaults" rows run the same work alone without the thread policy. Rounds
interleave everything; numbers are medians, ratios the median of per-round ratios (goal: >= 0.4
beside a neighbour; a fair share of two cores is 0.5). Run it alone: other load skews every number.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREAD_VARS = ("PROBE_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "PROBE_HEAP")
WORKLOADS = ("train", "record", "live")
NEIGHBOURS = ("none", "probe train", "matmul")
MATMUL = "import torch\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a\n"


def sizes(quick: bool) -> dict:
    if quick:
        return {"train": (128, 2, 16, 50, 12), "record": (128, 2, 20_000), "live": (128, 2, 500), "neighbour": 128}
    return {"train": (512, 2, 64, 100, 12), "record": (512, 3, 100_000), "live": (512, 3, 2_000), "neighbour": 512}


def worker(workload: str, policy: bool, quick: bool, tmp: str) -> float:
    """chars/s of one workload in this (fresh) process."""
    sys.path.insert(0, str(ROOT))
    if policy:
        from probe.runtime.threads import apply_thread_policy
        apply_thread_policy()
    from probe.runtime.heap import apply_heap_policy
    apply_heap_policy("train" if workload == "train" else "record")
    import torch
    from probe.data.corpus import BUNDLED, read_bytes
    s = sizes(quick)
    if workload == "train":
        from probe.train.loop import TrainConfig, train
        H, layers, B, T, iters = s["train"]
        cfg = TrainConfig(data="wiki", out=f"{tmp}/run", rnn_size=H, num_layers=layers, batch_size=B, seq_length=T,
                          max_iters=iters, eval_every=iters, warmup_iters=2, sample_length=1, dropout=0.0)
        return train(cfg, progress=False).chars_per_s
    from probe.data.vocab import Vocab
    from probe.model.charrnn import CharRNN, ModelConfig
    from probe.record.recorder import record, record_arrays
    H, layers, n = s[workload]
    torch.manual_seed(0)
    vocab = Vocab.byte()
    model = CharRNN(ModelConfig(vocab_size=vocab.size, rnn_size=H, num_layers=layers, embed_size=64, dropout=0.0))
    model.eval()
    text = read_bytes(BUNDLED["wiki"])[:n]
    if workload == "live":
        from probe.runtime.threads import interactive_threads
        record_arrays(model, vocab, text[:200], gates=True, topk=5)  # warm-up (kernels compile on first use)
        t = time.perf_counter()
        if policy:
            with interactive_threads():
                record_arrays(model, vocab, text, gates=True, topk=5)
        else:
            record_arrays(model, vocab, text, gates=True, topk=5)
        return n / (time.perf_counter() - t)
    from probe.model import checkpoint
    checkpoint.save(f"{tmp}/ck", model, {"model_config": model.cfg.to_json(), "vocab": vocab.to_json(), "step": 0})
    record(f"{tmp}/ck", text[:2000], f"{tmp}/warm", overwrite=True)
    t = time.perf_counter()
    record(f"{tmp}/ck", text, f"{tmp}/rec", overwrite=True)
    return n / (time.perf_counter() - t)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["PYTHONPATH"] = str(ROOT)
    return env


def measure(workload: str, policy: bool, quick: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-contention-") as d:
        cmd = [sys.executable, __file__, "--worker", workload, "--tmp", d] + ["--no-policy"] * (not policy)
        out = subprocess.run(cmd + ["--quick"] * quick, env=clean_env(), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmark worker {workload} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


class Neighbour:
    """A busy process in its own session (as from a second terminal), stopped on exit."""

    def __init__(self, kind: str, quick: bool):
        self.kind, self.quick, self.proc, self.tmp = kind, quick, None, None

    def __enter__(self) -> "Neighbour":
        if self.kind == "none":
            return self
        if self.kind == "matmul":
            cmd = [sys.executable, "-c", MATMUL]
        else:
            self.tmp = tempfile.mkdtemp(prefix="bench-contention-nb-")
            H = sizes(self.quick)["neighbour"]
            cmd = [sys.executable, "-m", "probe", "train", "--data", "wiki", "--out", f"{self.tmp}/run",
                   "--rnn-size", str(H), "--num-layers", "2", "--max-iters", "1000000", "--eval-every", "1000000"]
        self.proc = subprocess.Popen(cmd, env=clean_env(), cwd=ROOT, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3 if self.kind == "matmul" else 8)  # let it reach its busy loop
        if self.proc.poll() is not None:
            raise SystemExit(f"neighbour {self.kind} exited early ({self.proc.returncode})")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small models and texts, one round")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repetitions (medians reported)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated: train, record, live")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--no-policy", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(worker(args.worker, not args.no_policy, args.quick, args.tmp))
        return
    rounds = 1 if args.quick else args.rounds
    workloads = [w for w in args.workloads.split(",") if w]
    if not workloads or any(w not in WORKLOADS for w in workloads):
        ap.error(f"--workloads: pick from {', '.join(WORKLOADS)}")
    s = sizes(args.quick)
    print(f"# {os.cpu_count()} cores; train {s['train'][1]}x{s['train'][0]} (batch {s['train'][2]} x {s['train'][3]}), "
          f"record {s['record'][1]}x{s['record'][0]} over {s['record'][2]:,} chars, live text "
          f"{s['live'][1]}x{s['live'][0]} over {s['live'][2]:,} chars; {rounds} interleaved round(s)", flush=True)
    runs: dict[tuple[str, str], list[float]] = {}
    t0 = time.time()
    for _ in range(rounds):
        for w in workloads:  # torch's defaults, alone, beside the policy's alone number of the same round
            runs.setdefault((w, "torch defaults"), []).append(measure(w, False, args.quick))
        for nb in NEIGHBOURS:
            with Neighbour(nb, args.quick):
                for w in workloads:
                    runs.setdefault((w, nb), []).append(measure(w, True, args.quick))
                    print(f"  {w:6s} beside {nb:12s} {runs[(w, nb)][-1]:>10,.0f} chars/s", flush=True)
    med = statistics.median

    def ratio(w: str, key: str) -> float:
        return med(a / b for a, b in zip(runs[(w, key)], runs[(w, "none")]))

    print(f"\n({time.time() - t0:.0f} s)\n")
    print("| workload | alone chars/s | beside probe train | ratio | beside 2-thread matmul | ratio | "
          "torch defaults alone | probe / defaults alone |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for w in workloads:
        alone = med(runs[(w, "none")])
        print(f"| {w} | {alone:,.0f} | {med(runs[(w, 'probe train')]):,.0f} | {ratio(w, 'probe train'):.2f} | "
              f"{med(runs[(w, 'matmul')]):,.0f} | {ratio(w, 'matmul'):.2f} | {med(runs[(w, 'torch defaults')]):,.0f} | "
              f"{1 / ratio(w, 'torch defaults'):.2f} |")
    print(json.dumps({f"{w}|{k}": v for (w, k), v in runs.items()}))


if __name__ == "__main__":
    main()
