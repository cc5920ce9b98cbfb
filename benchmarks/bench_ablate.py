"""Benchmark an ablation with its random-unit null against plain inference, same model, same text, same run.

    python benchmarks/bench_ablate.py                          # shipped wiki 3x512, 20k chars, L2.c.502, K = 20
    python benchmarks/bench_ablate.py --chars 5000 --unit L0.c.7 --repeats 5 --threads 2

Plain inference: the fused model over the text in chunks, with the loss of every next character.
Ablation: `probe.analysis.ablate.ablate` (its clean pass, then the target and K random units in K+1
streams of one batch). Target: ablation chars/s >= 0.2x plain chars/s. The cost grows with the number
of layers above the held one (they run on every stream). The two alternate `--repeats` times and the
ratio of each pair is reported (a shared machine is noisy: compare ratios, not chars/s).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe.runtime.threads import apply_thread_policy  # noqa: E402

apply_thread_policy()  # as the `probe` command runs: CPU thread policy before torch loads

import torch  # noqa: E402

from probe.analysis.ablate import ablate  # noqa: E402
from probe.model import checkpoint  # noqa: E402
from probe.record.recorder import resolve_text  # noqa: E402


@torch.no_grad()
def plain_inference(model, ids: torch.Tensor, chunk: int = 1024) -> float:
    """Seconds for the fused model over `ids` with the loss of every next symbol."""
    t0 = time.perf_counter()
    state, total = None, 0.0
    for a in range(0, len(ids) - 1, chunk):
        b = min(a + chunk, len(ids) - 1)
        logits, state = model(ids[a:b].view(1, -1), state)
        logp = torch.log_softmax(logits[0].float(), dim=-1)
        total += float(-logp.gather(-1, ids[a + 1:b + 1].view(-1, 1)).sum()) / math.log(2)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "trained_models" / "wiki"))
    ap.add_argument("--chars", type=int, default=20_000)
    ap.add_argument("--unit", default="L2.c.502")
    ap.add_argument("--random", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3, help="plain/ablation pairs, interleaved (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ck = checkpoint.load(args.checkpoint)
    tt = resolve_text(ck, max_chars=args.chars)
    ids = torch.as_tensor(tt.ids.astype("int64"))
    text = tt.text if ck.vocab.kind == "char" else tt.raw
    cfg = ck.model.cfg
    n = len(ids)
    print(f"{cfg.model} {cfg.num_layers}x{cfg.rnn_size}, {n:,} symbols, {args.unit} + K = {args.random}, "
          f"torch threads {torch.get_num_threads()}")
    plain_inference(ck.model, ids[:2048])  # warm-up
    ablate(ck, args.unit, text[:2048], n_random=args.random, n_boot=100)
    ratios = []
    for r in range(args.repeats):
        c0 = time.process_time()
        plain = plain_inference(ck.model, ids)
        c1 = time.process_time()
        t0 = time.perf_counter()
        res = ablate(ck, args.unit, text, mode="mean", n_random=args.random, n_boot=200)
        abl = time.perf_counter() - t0
        c2 = time.process_time()
        ratios.append(plain / abl)
        print(f"  {r + 1}: plain {n / plain:,.0f} chars/s ({plain:.1f} s, {c1 - c0:.1f} s CPU), ablation "
              f"{n / abl:,.0f} chars/s ({abl:.1f} s, {c2 - c1:.1f} s CPU): {plain / abl:.3f}x "
              f"(by CPU time {(c1 - c0) / (c2 - c1):.3f}x)")
    ratios.sort()
    print(f"ablation / plain inference: median {ratios[len(ratios) // 2]:.3f}x, best {ratios[-1]:.3f}x "
          f"(target >= 0.2x); Δloss overall {res.table.delta_all[0]:+.4f} bits/char, rank {res.rank} of "
          f"{args.random + 1}")


if __name__ == "__main__":
    main()
