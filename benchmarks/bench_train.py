"""Training speed: probe's trainer vs a bare fused loop vs a per-step LSTMCell loop, float32 and bf16.

Run alone on an idle machine (other busy processes make 2-thread torch many times slower):

    python benchmarks/bench_train.py            # full: 2x512, batch 64 x seq 100
    python benchmarks/bench_train.py --quick    # small shapes, seconds
    python benchmarks/bench_train.py --quality  # also: bf16 vs float32 validation bpc after the same steps

Every number of one table comes from the same run, so ratios are comparable.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from probe.runtime.threads import apply_thread_policy  # noqa: E402

apply_thread_policy()  # as `probe train` runs: CPU thread policy before torch loads (probe/runtime/threads.py)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from probe.data.corpus import BUNDLED, read_bytes  # noqa: E402
from probe.train.loop import TrainConfig, evaluate, load_data, train  # noqa: E402


def batches(ids: np.ndarray, B: int, T: int, n: int):
    L = (len(ids) - 1) // B
    x = torch.from_numpy(ids[: B * L].reshape(B, L).copy())
    y = torch.from_numpy(ids[1: B * L + 1].reshape(B, L).copy())
    for i in range(n):
        j = (i * T) % (L - T)
        yield x[:, j:j + T], y[:, j:j + T]


def bare_fused(ids, V, H, layers, B, T, iters, warm, bf16, device, fused_adamw=False):
    """The reference: embedding, one multi-layer nn.LSTM, linear head, AdamW, carried state.

    fused_adamw: torch's fused AdamW kernel (what probe's trainer uses) instead of the default loop.
    """
    torch.manual_seed(0)
    emb, rnn, head = nn.Embedding(V, 64), nn.LSTM(64, H, layers, batch_first=True), nn.Linear(H, V)
    mods = nn.ModuleList([emb, rnn, head]).to(device)
    opt = torch.optim.AdamW(mods.parameters(), lr=2e-3, **({"fused": True} if fused_adamw else {}))
    state, t0 = None, None
    for i, (x, y) in enumerate(batches(ids, B, T, iters + warm)):
        if i == warm:
            t0 = time.perf_counter()
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out, state = rnn(emb(x), state)
            logits = head(out)
        loss = F.cross_entropy(logits.float().reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state = tuple(s.detach() for s in state)
    return iters * B * T / (time.perf_counter() - t0)


def per_step_cells(ids, V, H, layers, B, T, iters, warm, device):
    """How most PyTorch char-rnn ports run: a Python loop of LSTMCell over time steps."""
    torch.manual_seed(0)
    emb = nn.Embedding(V, 64)
    cells = nn.ModuleList(nn.LSTMCell(64 if l == 0 else H, H) for l in range(layers))
    head = nn.Linear(H, V)
    mods = nn.ModuleList([emb, cells, head]).to(device)
    opt = torch.optim.AdamW(mods.parameters(), lr=2e-3)
    state, t0 = None, None
    for i, (x, y) in enumerate(batches(ids, B, T, iters + warm)):
        if i == warm:
            t0 = time.perf_counter()
        x, y = x.to(device), y.to(device)
        if state is None:
            state = [(torch.zeros(B, H, device=device), torch.zeros(B, H, device=device)) for _ in cells]
        e, outs = emb(x), []
        for t in range(T):
            inp = e[:, t]
            for l, cell in enumerate(cells):
                state[l] = cell(inp, state[l])
                inp = state[l][0]
            outs.append(inp)
        logits = head(torch.stack(outs, 1))
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state = [(h.detach(), c.detach()) for h, c in state]
    return iters * B * T / (time.perf_counter() - t0)


def probe_trainer(corpus: str, H, layers, B, T, iters, warm, bf16, device_name, out: Path, seed=0):
    """probe.train.loop.train with evaluation stubbed out; chars/s over the iterations after the warm-up.

    The trainer evaluates every `warm` steps here (evaluate() is a stub that only clocks the call), and
    after each evaluation it saves a checkpoint and a sample. With the default --eval-every 500 those
    cost a fraction of a percent; in a 30-step window every third step they would cost several percent,
    so their time inside the window is left out (measured around each call).
    """
    cfg = TrainConfig(data=corpus, out=str(out), rnn_size=H, num_layers=layers, batch_size=B, seq_length=T,
                      max_iters=iters + warm, eval_every=warm, bf16=bf16, device=device_name, dropout=0.0,
                      warmup_iters=10, seed=seed, sample_length=1)
    import probe.train.loop as PT
    real_eval, real_save, real_sample = PT.evaluate, PT.ckpt.save, PT.sample_text
    calls, side = [], []  # evaluate() times; (start, seconds) of every save and sample

    def clock_eval(*a, **kw):  # evaluate() runs at step `warm` and at the end: the span between is training
        calls.append(time.perf_counter())
        return 0.0

    def timed(fn, flush=False):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                if flush:  # the kernel writes the checkpoint's dirty pages back later, on the same two cores:
                    os.sync()  # flushed here, so that this cost stays out of the timed training steps
                side.append((t0, time.perf_counter() - t0))
        return wrapper

    PT.evaluate, PT.ckpt.save, PT.sample_text = clock_eval, timed(real_save, flush=True), timed(real_sample)
    try:
        train(cfg, progress=False)
    finally:
        PT.evaluate, PT.ckpt.save, PT.sample_text = real_eval, real_save, real_sample
    inside = sum(d for t, d in side if calls[0] <= t < calls[-1])
    return iters * B * T / (calls[-1] - calls[0] - inside)


def flops_per_char(V, E, H, layers) -> float:
    """Matmul FLOPs of one training step per character (forward x 3 for forward + backward)."""
    fwd = sum(2 * 4 * H * ((E if l == 0 else H) + H) for l in range(layers)) + 2 * H * V
    return 3 * fwd


def quality(steps: int, H: int, layers: int, device_name: str) -> tuple[float, float]:
    """Validation bits per byte on the Wikipedia sample after `steps` iterations, float32 vs bf16."""
    res = []
    for bf16 in (False, True):
        with tempfile.TemporaryDirectory() as d:
            cfg = TrainConfig(data="wiki", out=d + "/r", rnn_size=H, num_layers=layers, max_iters=steps,
                              eval_every=steps, bf16=bf16, device=device_name, dropout=0.0, seed=0,
                              warmup_iters=50, sample_length=1)
            train(cfg, progress=False)
            from probe.model import checkpoint
            ck = checkpoint.load(d + "/r", which="latest")
            data = load_data(cfg, vocab=ck.vocab)
            res.append(evaluate(ck.model, data.part("val"), torch.device("cpu"), bf16=False) / math.log(2))
    return res[0], res[1]


LOOPS = {  # name: (label, heap); each measurement runs in a fresh process, one loop at a time
    "bare": ("bare fused nn.LSTM", "system"),
    "bare_fo": ("bare fused nn.LSTM + fused AdamW", "system"),
    "bare_fo_heap": ("bare fused nn.LSTM + fused AdamW + retained heap", "retained"),
    "probe": ("probe train", "retained"),
    "probe_system": ("probe train, PROBE_HEAP=system", "system"),
}


def shapes(quick: bool) -> tuple[int, int, int, int, int, int]:
    """H, layers, batch, seq, timed iterations, warm-up iterations."""
    return (128, 2, 16, 50, 20, 3) if quick else (512, 2, 64, 100, 30, 3)


def measure_one(loop: str, bf16: bool, quick: bool, device_name: str) -> float:
    """chars/s of one loop in this process (called in a fresh worker process)."""
    if LOOPS.get(loop, ("", "system"))[1] == "retained":
        from probe.runtime.heap import retain_freed_memory
        retain_freed_memory()
    device = torch.device("cuda" if device_name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    H, layers, B, T, iters, warm = shapes(quick)
    ids = np.frombuffer(read_bytes(BUNDLED["wiki"])[:3_000_000], dtype=np.uint8).astype(np.int64)
    if loop == "cells":
        return per_step_cells(ids, 256, H, layers, B, T, max(iters // 3, 3), 1, device)
    if loop.startswith("probe"):
        with tempfile.TemporaryDirectory() as d:
            return probe_trainer("wiki", H, layers, B, T, iters, warm, bf16, device.type, Path(d) / "run")
    return bare_fused(ids, 256, H, layers, B, T, iters, warm, bf16, device, fused_adamw=loop != "bare")


def in_fresh_process(loop: str, bf16: bool, args) -> float:
    """Run measure_one in a new interpreter, so that no loop inherits another's heap or caches."""
    env = dict(os.environ)
    env["PROBE_HEAP"] = LOOPS.get(loop, ("", "system"))[1]
    cmd = [sys.executable, __file__, "--worker", loop, "--device", args.device, "--threads", str(args.threads)]
    cmd += ["--bf16"] * bf16 + ["--quick"] * args.quick
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmark worker {loop} failed:\n{out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--quality", action="store_true", help="bf16 vs float32 validation bpc on the wiki sample")
    ap.add_argument("--quality-steps", type=int, default=300)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; medians are reported")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: measure one loop and print chars/s
    ap.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(measure_one(args.worker, args.bf16, args.quick, args.device))
        return
    device = torch.device("cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    H, layers, B, T, iters, warm = shapes(args.quick)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, device {device}; LSTM {layers}x{H}, batch {B} x seq {T}, {iters} timed iterations, "
          f"{args.rounds} interleaved rounds (medians), every loop in a fresh process")
    # rounds interleave the loops, so that a slow spell of a shared machine hits all of them; each number
    # is the median over rounds, each ratio the median of the ratios within a round
    runs: dict[tuple[str, bool], list[float]] = {}
    for r in range(args.rounds):
        for bf16 in (False, True):
            for loop in LOOPS:
                runs.setdefault((loop, bf16), []).append(in_fresh_process(loop, bf16, args))
    cells = in_fresh_process("cells", False, args)
    med = lambda xs: float(np.median(xs))  # noqa: E731
    fpc = flops_per_char(256, 64, H, layers)
    speed = {key: med(v) for key, v in runs.items()}
    print("| loop | precision | chars/s | vs bare fused | vs bare + fused AdamW + retained heap | GFLOP/s |")
    print("|---|---|---|---|---|---|")
    for bf16 in (False, True):
        p = "bf16" if bf16 else "float32"
        for loop, (label, _) in LOOPS.items():
            vs_bare = med([a / b for a, b in zip(runs[(loop, bf16)], runs[("bare", bf16)])])
            vs_heap = med([a / b for a, b in zip(runs[(loop, bf16)], runs[("bare_fo_heap", bf16)])])
            print(f"| {label} | {p} | {speed[(loop, bf16)]:,.0f} | {vs_bare:.2f}x | {vs_heap:.2f}x | "
                  f"{speed[(loop, bf16)] * fpc / 1e9:.0f} |")
    print(f"| per-step LSTMCell loop | float32 | {cells:,.0f} | {cells / speed[('bare', False)]:.2f}x | | "
          f"{cells * fpc / 1e9:.0f} |")
    def gain(loop: str) -> float:  # bf16 / float32 within each round, median over rounds
        return med([b / f for b, f in zip(runs[(loop, True)], runs[(loop, False)])])
    print(f"\nbf16 / float32 (median of the rounds' ratios): probe train {gain('probe'):.2f}x, bare fused "
          f"{gain('bare'):.2f}x, bare + fused AdamW + retained heap {gain('bare_fo_heap'):.2f}x;  probe train "
          f"float32 / per-step LSTMCell: {speed[('probe', False)] / cells:.2f}x")
    if args.quality:
        steps = 20 if args.quick else args.quality_steps
        f32, b16 = quality(steps, H, layers, device.type)
        print(f"\nvalidation bits/byte after {steps} steps (wiki sample, evaluated in float32): float32 {f32:.4f}, "
              f"bf16 {b16:.4f}, difference {100 * (b16 - f32) / f32:+.2f}%")


if __name__ == "__main__":
    main()
