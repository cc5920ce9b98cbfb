"""Test bits per character of compressors, an n-gram model and trained models, on the same test split.

    python benchmarks/baselines.py                       # both bundled corpora, no model
    python benchmarks/baselines.py --corpus wiki --model trained_models/wiki --markdown
    python benchmarks/baselines.py --quick               # a smoke test on a slice (numbers not comparable)

The split is the shipped models' one: contiguous 90/5/5 by symbols (bytes for
wiki, characters for shakespeare), taken from the checkpoint when one is given,
else computed like `probe train` with the corpus's default vocabulary.

Bits per character = total bits / characters of the test text. Compressors:
compressed size of the test text alone; "xz -9, given train" is
xz(train + test) - xz(train), the cost of the test text to a compressor that
has read the training text (closer to what a trained model does). The n-gram
model is interpolated Kneser-Ney fitted on the training split. Models are
measured with `probe.train.evaluate.evaluate_split` (exact, one stream).
"""
from __future__ import annotations

import argparse
import bz2
import gzip
import json
import lzma
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from probe.model import checkpoint as ckpt
from probe.data import corpus
from probe.errors import ProbeError
from probe.train.evaluate import count_utf8_chars, evaluate_split
from probe.model.ngram import KneserNey
from probe.train.loop import TrainConfig, load_data
from probe.data.vocab import Vocab, decode_utf8

XZ_9 = 9
QUICK_TRAIN, QUICK_TEST = 300_000, 30_000


@dataclass
class CorpusSplit:
    """One corpus, its vocabulary and split, and the train/test texts as symbols and as UTF-8 bytes."""

    name: str
    vocab: Vocab
    split: corpus.Split
    train_ids: np.ndarray
    test_ids: np.ndarray
    train_bytes: bytes
    test_bytes: bytes
    models: list = field(default_factory=list)

    @property
    def test_chars(self) -> int:
        return count_utf8_chars(self.test_bytes)


def load_corpus(name: str, vocab: Vocab | None = None, split_json: dict | None = None,
                quick: bool = False) -> CorpusSplit:
    """A bundled corpus split like `probe train` splits it (or with a checkpoint's vocabulary and split)."""
    data = load_data(TrainConfig(data=name), vocab=vocab)
    split = corpus.Split.from_json(split_json) if split_json else data.split
    if split.n != len(data.ids):
        raise ProbeError(f"the model's split of {name} counts {split.n:,} symbols, the corpus {len(data.ids):,}")
    raw = corpus.read_bytes(corpus.BUNDLED[name])
    a, b = split.range("val")
    if data.vocab.encoding == "byte":
        train_b, test_b = raw[:a], raw[b:]
    else:
        text = decode_utf8(raw, name)  # char ids are code points, one per character
        train_b, test_b = text[:a].encode("utf-8"), text[b:].encode("utf-8")
    train_ids, test_ids = data.ids[:a], data.ids[b:]
    if quick:
        train_ids, test_ids = train_ids[-QUICK_TRAIN:], test_ids[:QUICK_TEST]
        train_b, test_b = data.vocab.decode_bytes(train_ids), data.vocab.decode_bytes(test_ids)
    return CorpusSplit(name, data.vocab, split, train_ids, test_ids, train_b, test_b)


def compressor_rows(cs: CorpusSplit) -> list[dict]:
    test = cs.test_bytes
    rows = []
    for label, fn in (("gzip -9", lambda d: gzip.compress(d, 9, mtime=0)),
                      ("bz2 -9", lambda d: bz2.compress(d, 9)),
                      ("xz -9", lambda d: lzma.compress(d, preset=XZ_9))):
        t0 = time.time()
        rows.append(_row(label, 8 * len(fn(test)), len(test), cs.test_chars, time.time() - t0))
    t0 = time.time()
    xz = lambda d: len(lzma.compress(d, preset=XZ_9))  # noqa: E731
    given = xz(cs.train_bytes + test) - xz(cs.train_bytes)
    rows.append(_row("xz -9, given train", 8 * given, len(test), cs.test_chars, time.time() - t0))
    return rows


def ngram_row(cs: CorpusSplit, order: int) -> dict:
    t0 = time.time()
    model = KneserNey(order, cs.vocab.size).fit(cs.train_ids)
    bits = model.bits(cs.test_ids)
    n_bytes = len(cs.test_bytes)
    return _row(f"{order}-gram, modified Kneser-Ney", bits, n_bytes, cs.test_chars, time.time() - t0)


def model_row(cs: CorpusSplit, ck: ckpt.Checkpoint, streams: int, quick: bool) -> dict:
    r = evaluate_split(ck, "test", streams=streams, max_chars=QUICK_TEST if quick else None)
    n_bytes = r["n_symbols"] if r["vocab"] == "byte" else None
    label = f"{ck.meta['model_config']['model'].upper()} {ck.meta['model_config']['num_layers']}x" \
            f"{ck.meta['model_config']['rnn_size']} ({ck.path})"
    return _row(label, r["total_bits"], n_bytes, r["n_chars"], r["seconds"])


def _row(method: str, bits: float, n_bytes: int | None, n_chars: int, seconds: float) -> dict:
    return {"method": method, "bits": bits, "bits_per_char": bits / n_chars,
            "bits_per_byte": bits / n_bytes if n_bytes else None, "seconds": seconds}


def render(cs: CorpusSplit, rows: list[dict], markdown: bool, quick: bool) -> str:
    per_byte = cs.vocab.encoding == "byte"
    a, b = cs.split.range("val")
    head = (f"{cs.name}: test split symbols {b:,}..{cs.split.n:,} of {cs.split.n:,} ({cs.vocab.encoding}s); "
            f"{len(cs.test_bytes):,} bytes, {cs.test_chars:,} characters"
            + ("  [QUICK: slices, not comparable]" if quick else ""))
    cols = ["method", "test bits/char"] + (["test bits/byte"] if per_byte else [])
    body = []
    for r in rows:
        cells = [r["method"], f"{r['bits_per_char']:.3f}"]
        if per_byte:
            cells.append(f"{r['bits_per_byte']:.3f}" if r["bits_per_byte"] is not None else "")
        body.append(cells)
    if markdown:
        lines = [f"**{head}**", "", "| " + " | ".join(cols) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|"]
        lines += ["| " + " | ".join(c) + " |" for c in body]
        return "\n".join(lines)
    widths = [max(len(x[i]) for x in [cols] + body) for i in range(len(cols))]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([head, fmt(cols), fmt(["-" * w for w in widths])] + [fmt(c) for c in body])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", choices=("wiki", "shakespeare", "both"), default="both")
    ap.add_argument("--model", action="append", default=[], metavar="CKPT",
                    help="checkpoint or run folder trained on a bundled corpus (repeatable)")
    ap.add_argument("--order", type=int, nargs="+", default=[5], help="n-gram order(s) (default 5; e.g. 5 7)")
    ap.add_argument("--streams", type=int, default=1, help="streams for model evaluation (default 1: exact)")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables for a model card")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke test: last {QUICK_TRAIN:,} training and first {QUICK_TEST:,} test symbols")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except ProbeError as e:
        print(f"baselines: error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    names = ["wiki", "shakespeare"] if args.corpus == "both" else [args.corpus]
    shas = {n: corpus.sha256(corpus.read_bytes(corpus.BUNDLED[n])) for n in names}
    by_corpus: dict[str, list[ckpt.Checkpoint]] = {n: [] for n in names}
    for path in args.model:
        ck = ckpt.load(path)
        sha = ck.meta.get("data", {}).get("sha256")
        match = [n for n in names if shas[n] == sha]
        if not match:
            raise ProbeError(f"{path} was trained on {ck.meta.get('data', {}).get('corpus')}, "
                             f"not on {' or '.join(names)}")
        by_corpus[match[0]].append(ck)
    results = {}
    for name in names:
        models = by_corpus[name]
        vocab = split_json = None
        if models:
            vocab, split_json = models[0].vocab, models[0].meta["data"]["split"]
            for other in models[1:]:
                if other.meta["data"]["split"] != split_json or other.vocab.encoding != vocab.encoding:
                    raise ProbeError(f"the models given for {name} use different splits or vocabularies")
        cs = load_corpus(name, vocab, split_json, quick=args.quick)
        rows = compressor_rows(cs) + [ngram_row(cs, order) for order in args.order]
        rows += [model_row(cs, ck, args.streams, args.quick) for ck in models]
        results[name] = rows
        if not args.json:
            print(render(cs, rows, args.markdown, args.quick), flush=True)
            print()
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
