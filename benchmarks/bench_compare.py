"""`probe compare` of the shipped wiki model against `ngram:20` on its validation split, against the time to
record that split, in the same run (target: compare <= 1x record).

    python benchmarks/bench_compare.py                      # the whole validation split (~300k bytes)
    python benchmarks/bench_compare.py --max-chars 20000    # a quick check on the split's first bytes

The n-gram is fitted once on the training split and cached (~/.cache/probe/ngram or $PROBE_CACHE/ngram);
the fit is timed on its own (first run only), the comparison then runs with the cache warm. The recording
is exact (one stream) with probe's defaults (gates, top-5, compact dtypes) into a temporary folder.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from probe.runtime.threads import apply_thread_policy

apply_thread_policy()  # as the `probe` command runs: CPU thread policy before torch loads

from probe.analysis.compare import compare, training_ids  # noqa: E402
from probe.data import corpus
from probe.model import checkpoint as ckpt
from probe.model.ngram import fit_cached
from probe.record.recorder import record

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "trained_models" / "wiki"))
    ap.add_argument("--order", type=int, default=20)
    ap.add_argument("--max-chars", type=int, default=None, help="only the split's first N symbols")
    args = ap.parse_args(argv)
    ck = ckpt.load(args.checkpoint)
    t0 = time.perf_counter()
    fit_cached(training_ids(ck), args.order, ck.vocab.size)
    fit_s = time.perf_counter() - t0
    _, raw = corpus.read_training_corpus(ck.meta["data"])
    a, b = corpus.Split.from_json(ck.meta["data"]["split"]).range("val")
    if args.max_chars:
        b = min(b, a + args.max_chars)
    text = raw[a:b] if ck.vocab.encoding == "byte" else raw.decode("utf-8")[a:b]
    tmp = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    try:
        t0 = time.perf_counter()
        record(ck, text, tmp / "rec")
        record_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    cmp = compare(ck, f"ngram:{args.order}", text)
    compare_s = time.perf_counter() - t0
    row = cmp.summary.iloc[0]
    print(f"text: {b - a:,} symbols of the validation split of {ck.meta['data']['corpus']}")
    print(f"n-gram fit or cache load: {fit_s:.1f} s")
    print(f"record (exact, one stream): {record_s:.1f} s")
    print(f"compare vs ngram:{args.order} (cache warm): {compare_s:.1f} s  -> {compare_s / record_s:.2f}x record")
    print(f"bits/char: model {row.bpc_a:.3f}, {args.order}-gram {row.bpc_b:.3f}, Δ {row.delta_bpc:+.3f} "
          f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
