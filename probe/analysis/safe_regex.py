"""Regular expressions typed into the page, run with a time limit and a bound on matches.

The stdlib `re` cannot be interrupted inside a thread, so the match runs in a
separate Python process that is killed when the time is up: a pattern with
catastrophic backtracking answers "too slow" after about a second while the
server keeps serving other requests.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from array import array

import numpy as np

from probe.errors import ProbeError

MAX_PATTERN = 500
MAX_MATCHES = 200_000
TIMEOUT_S = 1.0
FLAG_LETTERS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE, "a": re.ASCII}

# Runs in the child (python -I -S: no site, no user code). Reads a JSON header line, then the text;
# writes (start, end) pairs as native int64, then one int64: 1 if it stopped at the bound.
_CHILD = r"""
import json, re, sys
from array import array
inp = sys.stdin.buffer
head = json.loads(inp.readline())
text = inp.read().decode("utf-8")
out, n, cut = array("q"), 0, 0
for m in re.compile(head["pattern"], head["flags"]).finditer(text):
    if m.end() > m.start():
        out.append(m.start()); out.append(m.end()); n += 1
        if n >= head["max"]:
            cut = 1
            break
out.append(cut)
sys.stdout.buffer.write(out.tobytes())
"""


def parse_flags(flags: str | None) -> int:
    value = 0
    for ch in (flags or ""):
        if ch not in FLAG_LETTERS:
            raise ProbeError(f"unknown regex flag {ch!r}: use any of {''.join(FLAG_LETTERS)}")
        value |= FLAG_LETTERS[ch]
    return value


def check_pattern(pattern, flags: str | None = "") -> int:
    """Validate a pattern from the page (type, length, syntax); returns the re flags."""
    if not isinstance(pattern, str) or not pattern:
        raise ProbeError("type a regular expression")
    if len(pattern) > MAX_PATTERN:
        raise ProbeError(f"the regular expression is too long ({len(pattern)} characters; at most {MAX_PATTERN})")
    value = parse_flags(flags)
    try:
        re.compile(pattern, value)
    except (re.error, OverflowError, RecursionError) as e:
        raise ProbeError(f"invalid regular expression: {e}") from None
    return value


def find_spans(pattern: str, text: str, flags: str | None = "", *, timeout: float = TIMEOUT_S,
               max_matches: int = MAX_MATCHES) -> tuple[np.ndarray, bool]:
    """(n, 2) int64 [start, end) character spans of the non-empty matches, and whether the bound cut them.

    Raises ProbeError for an invalid pattern, or when matching takes longer than `timeout` seconds.
    """
    value = check_pattern(pattern, flags)
    head = json.dumps({"pattern": pattern, "flags": value, "max": int(max_matches)}).encode("utf-8")
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(head + b"\n" + text.encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ProbeError(f"the regular expression is too slow on this text (stopped after {timeout:g} s); "
                         "simplify it (nested repeats like (a+)+ backtrack without end)") from None
    if proc.returncode != 0:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        raise ProbeError(f"the regular expression failed: {last[0][:200]}")
    values = array("q")
    values.frombytes(out)
    cut = bool(values[-1])
    spans = np.asarray(values[:-1], dtype=np.int64).reshape(-1, 2)
    return spans, cut


def spans_to_labels(spans: np.ndarray, n: int) -> np.ndarray:
    """Boolean per-character labels: True inside any span."""
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, spans[:, 0], 1)
    np.add.at(delta, spans[:, 1], -1)
    return np.cumsum(delta[:-1]) > 0


def regex_labels(pattern: str, text: str, flags: str | None = "", *, timeout: float = TIMEOUT_S,
                 max_matches: int = MAX_MATCHES) -> tuple[np.ndarray, int, bool]:
    """Per-character labels of `text` for `pattern`, the number of matches, and whether the bound cut them."""
    spans, cut = find_spans(pattern, text, flags, timeout=timeout, max_matches=max_matches)
    return spans_to_labels(spans, len(text)), len(spans), cut
