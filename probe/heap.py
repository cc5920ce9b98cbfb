"""Keep freed memory in the process heap, so that large per-step buffers are reused, not re-faulted.

glibc's malloc serves every allocation above its mmap threshold (at most 32 MB) with a fresh
`mmap` and returns it to the kernel on `free`. A training step of a 2x512 LSTM at batch 64 x 100
allocates and frees ~230 MB of such buffers (the fused kernel's workspace, activations and
their gradients), so every step touches those pages anew: ~58,000 minor page faults a step,
each zeroing a 4 KB page. Measured on this project's 2-core machine, that costs ~25% of a
step. With mmap off for malloc and the heap never trimmed, the buffers of one step are reused by
the next; the price is that the process keeps its peak heap size until it exits, and that size is
larger: for the first few steps glibc splits small blocks off the freed large ones, so the heap
grows by a few large buffers before every request fits again (a 2x512 training process: ~1.1 GB
peak instead of ~0.8 GB; then no growth).

`retain_freed_memory()` is called by `probe train` and `probe record` (train() and record());
set PROBE_HEAP=system to leave the C library's defaults alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
_M_MMAP_MAX = -4
_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Tell glibc's malloc to serve large blocks from the heap and never trim it; idempotent.

    Returns True when the setting is in force (Linux with glibc, and PROBE_HEAP is not
    "system"), False where it does not apply.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("PROBE_HEAP", "").lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; trim threshold at 2**31-1 bytes means "never give memory back"
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied


def heap_retained() -> bool:
    """Whether retain_freed_memory() has put the setting in force in this process."""
    return bool(_applied)
