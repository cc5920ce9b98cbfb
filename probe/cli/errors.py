"""Any exception as the one line the CLI prints: never empty, never a traceback (unless PROBE_DEBUG=1).

Errors of the environment (a full disk, no memory, a file that cannot be
read) exit with 2 like bad input; anything else is a fault in probe or a
library, shown with its exception type so it is not mistaken for bad input,
and exits with 1.
"""
from __future__ import annotations

import errno
import os

DEBUG_ENV = "PROBE_DEBUG"
_NO_SPACE = ("no space left on device", "disk quota exceeded", "file too large")
_NO_MEMORY = ("can't allocate memory", "cannot allocate memory", "out of memory", "not enough memory",
              "bad_alloc", "failed to allocate", "unable to allocate")


def debug() -> bool:
    """True when PROBE_DEBUG is set to anything but '' or '0': errors then end in their traceback."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(text: str) -> str:
    """`text` with its lines joined by '; ' (a message must stay on one line)."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _first_line(e: BaseException, limit: int = 300) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def describe_os_error(e: OSError) -> str:
    """'No space left on device: out.csv' from an OSError, whatever it holds."""
    what = e.strerror or _first_line(e) or (errno.errorcode.get(e.errno, "") if e.errno else "") \
        or type(e).__name__
    files = [str(f) for f in (e.filename, getattr(e, "filename2", None)) if f not in (None, "")]
    return f"{what}: {' -> '.join(files)}" if files else what


def describe(e: BaseException) -> tuple[str, int]:
    """(the one line, the exit status) for an exception that is not a ProbeError."""
    if isinstance(e, MemoryError):
        return f"out of memory{': ' + _first_line(e) if _first_line(e) else ''} (try smaller sizes)", 2
    if isinstance(e, OSError):
        return describe_os_error(e), 2
    text = _first_line(e)
    low = text.lower()
    name = type(e).__name__
    if any(s in low for s in _NO_SPACE):
        return f"{text} ({name})", 2
    if any(s in low for s in _NO_MEMORY):
        return f"out of memory: {text} ({name}; try smaller sizes)", 2
    detail = f"{name}: {text}" if text else f"{name} (no message)"
    return f"{detail} (unexpected; set {DEBUG_ENV}=1 to see the traceback)", 1
