"""Keep freed memory in the process heap, so that large per-step buffers are reused, not re-faulted.

glibc's malloc serves every allocation above its mmap threshold (at most 32 MB) with a fresh
`mmap` and returns it to the kernel on `free`. A training step of a 2x512 LSTM at batch 64 x 100
allocates and frees ~230 MB of such buffers (the fused kernel's workspace, activations and
their gradients), so every step touches those pages anew: tens of thousands of minor page faults a
step, each zeroing a 4 KB page (benchmarks/bench_train.py measures the cost: PROBE_HEAP=system
for the default). With mmap off for malloc and the heap never trimmed, the buffers of one step are
reused by the next; the price is that the process keeps its peak heap size until it exits, and that size is
larger: for the first few steps glibc splits small blocks off the freed large ones, so the heap
grows by a few large buffers before every request fits again (then no growth).

The recorder allocates in one thread and frees in another (its writer); with per-thread arenas its
peak grew with the text's length with glibc's defaults. It asks for every block kept too, plus one
arena for all threads (`one_arena`), and gives free pages back every 32 chunks: its peak stays flat
over the text's length, and multi-stream recordings run faster, since oneDNN's workspace per layer
and chunk is no longer faulted in anew (benchmarks/bench_record.py measures both). (`blocks="small"`, blocks up to 32 MB, is the milder setting.)

These settings hold for the whole process, so library functions never make them: entry points do,
once, by `apply_heap_policy(work)` (the CLI for train, record and the commands that record, the
benchmarks); a notebook may call it too. Set PROBE_HEAP=system to leave the C library's defaults
alone (every function here then does nothing).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_LARGEST_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc refuses more on 64-bit
_STRENGTH = {"none": 0, "small": 1, "all": 2}
_applied = "none"


@functools.lru_cache(maxsize=1)
def _glibc():
    """The C library when it is glibc on Linux (it has mallopt and malloc_trim), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return None
    return libc


def _mallopt():
    """glibc's mallopt, or None where it does not apply (not glibc, or PROBE_HEAP=system)."""
    libc = _glibc()
    if libc is None or os.environ.get("PROBE_HEAP", "").lower() == "system":
        return None
    return libc.mallopt


def retain_freed_memory(blocks: str = "all") -> bool:
    """Tell glibc's malloc to keep freed blocks in the heap for reuse; idempotent, never weakens.

    blocks "all": every block, however large, comes from the heap (mmap off for malloc);
    "small": blocks up to 32 MB. Either way the heap is never trimmed. Returns True when the
    setting (or a stronger one) is in force: Linux with glibc, and PROBE_HEAP is not "system".
    """
    global _applied
    if blocks not in ("all", "small"):
        raise ValueError(f"blocks must be 'all' or 'small', not {blocks!r}")
    if _STRENGTH[_applied] >= _STRENGTH[blocks]:
        return True
    mallopt = _mallopt()
    if mallopt is None:
        return False
    # mallopt returns 1 on success; trim threshold at 2**31-1 bytes means "never give memory back"
    ok = bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    if blocks == "all":
        ok = ok and bool(mallopt(_M_MMAP_MAX, 0))
    else:
        ok = ok and bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST_MMAP_THRESHOLD))
    if ok:
        _applied = blocks
    return ok


def heap_retained() -> str:
    """Which retain_freed_memory() setting is in force in this process: "none", "small" or "all"."""
    return _applied


def one_arena() -> bool:
    """Let every thread allocate from the main heap (M_ARENA_MAX 1).

    A recording frees in its writer thread what the main thread allocated; with per-thread
    arenas glibc's heaps grew with the text's length (663 MB at 10% of a 10M-character
    recording, 1,144 MB at 90%), with one arena they stay flat. Returns True when set.
    """
    mallopt = _mallopt()
    return bool(mallopt and mallopt(_M_ARENA_MAX, 1))


def give_back_freed_memory() -> bool:
    """Return the heap's free pages to the kernel now (glibc malloc_trim); True if any were."""
    if _mallopt() is None:
        return False
    return bool(_glibc().malloc_trim(0))


HEAP_POLICIES = ("train", "record")


def apply_heap_policy(work: str) -> bool:
    """The process-wide heap setting for an entry point that runs `work`; True when it is in force.

    "train": keep every freed block (~1.4x faster steps). "record": keep them, one arena for all
    threads (the writer frees what the main thread allocated; peaks stay flat over long texts).
    """
    if work not in HEAP_POLICIES:
        raise ValueError(f"work must be one of {', '.join(HEAP_POLICIES)}, not {work!r}")
    ok = retain_freed_memory("all")
    if work == "record":
        ok = one_arena() and ok
    return ok
