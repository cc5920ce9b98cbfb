"""probe record: record every state of a model over a text (h, c, gates, top-k, loss) into a folder."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from probe.errors import ProbeError
from probe.names import GATES

GATE_KINDS = {g for gates in GATES.values() for g in gates}

NAME = "record"
HELP = "record every state of a model over a text (h, c, gates, top-k, loss)"
DESCRIPTION = """Record, at every character (every byte for byte-level models), each layer's hidden
state h, cell state c (LSTM), gates (LSTM i f g o; GRU r z n), the top-k next
characters and the loss in bits, into a recording folder of memory-mappable
.npy arrays plus meta.json (written last: a folder without it is incomplete).

Text: the checkpoint's own validation split by default (--part), or TEXT_FILE,
or --text "...". --range and --max-chars count symbols: characters, or bytes
for a byte-level model.

Exact by default: one stream, state carried from the first character to the
last. --streams N runs N segments side by side (faster) and is NOT exact: each
segment starts from a state warmed up on only the --warmup characters before
it, so long-memory units can differ from one pass. The deviation (mean and
max |difference| of h and tanh(c) from one exact pass, over every recorded
row after the first stream, with the row, unit and stream boundary of the
worst) is written into meta.json and printed.

Storage (--dtype compact): h and gates float16, c float32 (cell states of
long-memory units grow past float16's 65,504), top-k probabilities float16,
loss float32. --dtype float32 stores everything in float32. --layers and
--kinds record only some arrays (each one bit for bit what a full recording
holds). The size is printed before anything is written, and a disk without
that much free space is refused. A recording killed part-way leaves a hidden
.NAME.partial-<pid>-<start>-<host> folder beside --out; the next record into
that folder deletes those of processes that no longer run.

examples:
  probe record runs/wiki --out recordings/wiki-val
  probe record runs/shakespeare hamlet.txt --out recordings/hamlet --max-chars 100000
  probe record runs/shakespeare --text "To be, or not to be" --out /tmp/rec --dtype float32
  probe record runs/wiki --out recordings/wiki-fast --streams 16 --warmup 300
  probe record runs/wiki --out recordings/wiki-hc --layers 0,2 --kinds h,c
"""


def parse_range(text: str | None) -> tuple[int | None, int | None] | None:
    """'A:B', 'A:' or ':B' -> (A, B)."""
    if text is None:
        return None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        a, b = (int(p.replace("_", "")) if p.strip() else None for p in parts)
    except ValueError:
        raise ProbeError(f"--range must look like A:B (e.g. 0:50000), not {text!r}") from None
    return a, b


def _word_list(text: str) -> list[str]:
    """'h,c' -> ['h', 'c']."""
    items = [w.strip() for w in text.split(",") if w.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, not {text!r}")
    return items


def _int_list(text: str) -> list[int]:
    """'0,2' -> [0, 2]."""
    try:
        return [int(w) for w in _word_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer numbers (e.g. 0,2), not {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="run folder (uses best/) or checkpoint folder")
    p.add_argument("text_file", nargs="?", help="text file to record (plain, .bz2, .gz, .xz); "
                   "default: the checkpoint's own --part split")
    p.add_argument("--out", "-o", required=True, help="recording folder to create")
    p.add_argument("--text", help="record this text instead of a file")
    p.add_argument("--part", choices=("train", "val", "test"), default="val",
                   help="split of the checkpoint's corpus when no text is given (default val)")
    p.add_argument("--range", dest="char_range", metavar="A:B",
                   help="record symbols A..B-1 of the text (characters; bytes for byte models)")
    p.add_argument("--max-chars", type=int, help="record at most this many symbols")
    p.add_argument("--no-gates", action="store_true", help="do not store gate activations")
    p.add_argument("--layers", metavar="L,L", type=_int_list,
                   help="record only these layers, e.g. 0,2 (default: all)")
    p.add_argument("--kinds", metavar="K,K", type=_word_list,
                   help="record only these kinds, e.g. h,c or h,c,f (default: h, c and the gates)")
    p.add_argument("--topk", type=int, default=5,
                   help="most likely next characters to keep per row (default 5; 0: none)")
    p.add_argument("--dtype", choices=("compact", "float32"), default="compact",
                   help="compact: h, gates float16, c float32 (default); float32: all float32")
    p.add_argument("--streams", type=int, default=1,
                   help="parallel streams (default 1: exact). N > 1 is faster but NOT exact: the deviation from "
                        "one pass is measured into meta.json")
    p.add_argument("--warmup", type=int, default=300,
                   help="with --streams: characters each stream reads before its segment (default 300)")
    p.add_argument("--chunk-size", type=int, default=4096,  # probe.record.recorder.CHUNK_ROWS (not imported: --help stays fast)
                   help="rows computed per chunk (memory grows with it; default 4096)")
    p.add_argument("--untrained", action="store_true",
                   help="record a freshly initialised model of the same shape (seed 0): a baseline")
    p.add_argument("--overwrite", action="store_true", help="replace an existing recording at --out")
    p.add_argument("--reuse", action="store_true",
                   help="keep the recording at --out if it was made from the same weights, text and options; "
                        "else record it again (replacing it)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from probe.record.deviation import summary_line  # torch loads only when the command runs
    from probe.record.recorder import record

    if args.text is not None and args.text_file:
        raise ProbeError("give either TEXT_FILE or --text, not both")
    gate_kinds = [k for k in args.kinds or () if k in GATE_KINDS]
    if args.no_gates and gate_kinds:
        raise ProbeError(f"--kinds names gates ({','.join(gate_kinds)}) and --no-gates leaves them out: drop one")
    text = args.text if args.text is not None else (Path(args.text_file) if args.text_file else None)

    def starting(plan) -> None:  # before anything is written: the size, and what was cleaned up
        if plan.cleaned:
            print(f"removed {len(plan.cleaned)} folder(s) of recordings killed part-way: {', '.join(plan.cleaned)}")
        print(plan.describe(), flush=True)
    rec = record(args.checkpoint, text, args.out, part=args.part, char_range=parse_range(args.char_range),
                 max_chars=args.max_chars, gates=not args.no_gates, topk=args.topk, dtype=args.dtype,
                 chunk_size=args.chunk_size, streams=args.streams, warmup=args.warmup, overwrite=args.overwrite,
                 untrained=args.untrained, progress=not args.quiet and sys.stderr.isatty(),
                 text_source="--text" if args.text is not None else None, reuse=args.reuse,
                 layers=args.layers, kinds=args.kinds, on_start=starting)
    meta = rec.meta
    if getattr(rec, "reused", False):
        print(f"{rec.path} is up to date (same weights, text and options): kept")
        return 0
    unknown = meta.get("unknown_chars") or {}
    if unknown.get("count"):
        shown = ", ".join(f"{c!r} x{n}" for c, n in unknown["most_common"][:5])
        print(f"probe record: note: {unknown['count']:,} characters are not in the model's vocabulary "
              f"({shown}); they were read as <unk>", file=sys.stderr)
    how = summary_line(meta)
    print(f"recorded {meta['n_rows']:,} rows ({meta['text']['n_chars']:,} chars of {meta['text']['source']}) "
          f"in {meta['seconds']:.1f} s, {meta['chars_per_s']:,.0f} chars/s -> {rec.path}; {how}")
    return 0
