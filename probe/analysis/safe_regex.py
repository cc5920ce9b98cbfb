"""Regular expressions with a time limit: one mechanism for the CLI, the library and the dashboard.

Patterns are written in Python's `re` syntax (checked by `re`, so its error
messages are the familiar ones) and run by the `regex` package, whose matching
takes a `timeout=`: a pattern with catastrophic backtracking, such as
`(a|aa)+$` over a run of a's, stops with a one-line `RegexTimeout` instead of
hanging. The limit covers the whole scan of a text and counts the CPU time of
the matching (as `regex` measures it), so a busy machine does not cut a sound
pattern short; its wall time then stretches with the load.

Limits: `timeout=` where a function takes one; else the environment variable
PROBE_REGEX_TIMEOUT (seconds), else `DEFAULT_TIMEOUT_S`. The dashboard uses the
shorter `TIMEOUT_S` (typed into a page, answered at once).
"""
from __future__ import annotations

import math
import os
import re
import warnings

import numpy as np
import regex

from probe.checks import ParamError
from probe.errors import ProbeError

MAX_PATTERN = 500  # patterns typed into the dashboard
MAX_MATCHES = 200_000  # matches kept by the dashboard
TIMEOUT_S = 1.0  # the dashboard's limit
DEFAULT_TIMEOUT_S = 10.0  # the library's and the CLI's limit
ENV_TIMEOUT = "PROBE_REGEX_TIMEOUT"
FLAG_LETTERS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE, "a": re.ASCII}
_RE_TO_REGEX = {re.IGNORECASE: regex.IGNORECASE, re.MULTILINE: regex.MULTILINE, re.DOTALL: regex.DOTALL,
                re.VERBOSE: regex.VERBOSE, re.ASCII: regex.ASCII}


class RegexTimeout(ProbeError):
    """A pattern that ran past its time limit; names the pattern and the limit, and how to raise it."""

    LIBRARY_HOW = f"pass timeout=SECONDS or set {ENV_TIMEOUT}=SECONDS"

    def __init__(self, pattern: str, limit: float, n_chars: int, how_to_raise: str | None = LIBRARY_HOW):
        self.pattern, self.limit, self.n_chars = pattern, limit, n_chars
        super().__init__(self.message(how_to_raise))

    def message(self, how_to_raise: str | None) -> str:
        """The one line, ending with `how_to_raise` (a parameter, an option; None: the limit is fixed)."""
        shown = self.pattern if len(self.pattern) <= 80 else self.pattern[:77] + "..."
        return (f"the regular expression {shown!r} is too slow on this text ({self.n_chars:,} characters): stopped "
                f"at the {self.limit:g} s limit (CPU time); simplify it (nested repeats like (a|aa)+ backtrack without end)"
                + (f" or raise the limit: {how_to_raise}" if how_to_raise else ""))


def check_timeout(timeout, name: str = "timeout") -> float:
    """A positive, finite number of seconds; a ProbeError naming the parameter `name` otherwise."""
    try:
        value = float(timeout)
    except (TypeError, ValueError):
        raise ParamError(name, f"must be a number of seconds, not {timeout!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ParamError(name, f"must be a positive number of seconds, not {timeout!r}")
    return value


def default_timeout() -> float:
    """$PROBE_REGEX_TIMEOUT if set, else DEFAULT_TIMEOUT_S."""
    env = os.environ.get(ENV_TIMEOUT, "").strip()
    return check_timeout(env, ENV_TIMEOUT) if env else DEFAULT_TIMEOUT_S


def parse_flags(flags: str | None) -> int:
    """'ims' -> the `re` flag bits; ProbeError for an unknown letter."""
    if flags is not None and not isinstance(flags, str):
        raise ProbeError(f"regex flags must be a string of letters such as 'im', not {type(flags).__name__}")
    value = 0
    for ch in (flags or ""):
        if ch not in FLAG_LETTERS:
            raise ProbeError(f"unknown regex flag {ch!r}: use any of i (ignore case), m (multiline), "
                             f"s (dot matches newline), x (verbose), a (ASCII)")
        value |= FLAG_LETTERS[ch]
    return value


def compile_pattern(pattern: str, flags: str | None = "") -> regex.Pattern:
    """Check `pattern` with Python's `re` (its syntax and messages), compile it with `regex` (timeouts)."""
    if not isinstance(pattern, str):
        raise ProbeError(f"a regular expression must be a string, not {type(pattern).__name__}")
    value = parse_flags(flags)
    with warnings.catch_warnings():  # "possible nested set" and the like: not errors
        warnings.simplefilter("ignore", FutureWarning)
        try:
            re.compile(pattern, value)
        except (re.error, OverflowError, RecursionError) as e:
            raise ProbeError(f"invalid regex {pattern!r}: {e}") from None
        try:
            return regex.compile(pattern, sum(_RE_TO_REGEX[f] for f in _RE_TO_REGEX if value & f) | regex.V0)
        except (regex.error, OverflowError, RecursionError) as e:
            raise ProbeError(f"invalid regex {pattern!r}: {e}") from None


def spans(rx: regex.Pattern, text: str, *, group: int | str = 0, timeout: float | None = None,
          max_matches: int | None = None, concurrent: bool = False) -> tuple[np.ndarray, bool]:
    """(n, 2) int64 [start, end) spans of the non-empty matches (of `group`), and whether `max_matches` cut them.

    Raises RegexTimeout when the scan takes longer than `timeout` seconds
    (default: `default_timeout()`). `concurrent` releases the GIL while matching.
    """
    limit = default_timeout() if timeout is None else check_timeout(timeout)
    out: list[int] = []
    cut = False
    try:
        for m in rx.finditer(text, timeout=limit, concurrent=concurrent):
            s, e = m.span(group)
            if e > s:
                out += (s, e)
                if max_matches is not None and len(out) >= 2 * max_matches:
                    cut = True
                    break
    except TimeoutError:
        raise RegexTimeout(rx.pattern, limit, len(text)) from None
    return np.asarray(out, dtype=np.int64).reshape(-1, 2), cut


def spans_to_labels(spans: np.ndarray, n: int) -> np.ndarray:
    """Boolean per-character labels: True inside any span."""
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, spans[:, 0], 1)
    np.add.at(delta, spans[:, 1], -1)
    return np.cumsum(delta[:-1]) > 0


# --------------------------------------------------------------------------- the dashboard's entry points

def check_pattern(pattern, flags: str | None = "") -> int:
    """Validate a pattern from the page (type, length, syntax); returns the re flags."""
    if not isinstance(pattern, str) or not pattern:
        raise ProbeError("type a regular expression")
    if len(pattern) > MAX_PATTERN:
        raise ProbeError(f"the regular expression is too long ({len(pattern)} characters; at most {MAX_PATTERN})")
    value = parse_flags(flags)
    try:
        compile_pattern(pattern, flags)
    except ProbeError as e:
        raise ProbeError(str(e).replace(f"invalid regex {pattern!r}", "invalid regular expression", 1)) from None
    return value


def find_spans(pattern: str, text: str, flags: str | None = "", *, timeout: float = TIMEOUT_S,
               max_matches: int = MAX_MATCHES) -> tuple[np.ndarray, bool]:
    """(n, 2) int64 [start, end) character spans of the non-empty matches, and whether the bound cut them.

    Raises ProbeError for an invalid pattern, RegexTimeout when matching takes longer than `timeout` seconds.
    """
    check_pattern(pattern, flags)
    try:
        return spans(compile_pattern(pattern, flags), text, timeout=timeout, max_matches=max_matches,
                     concurrent=True)
    except RegexTimeout as e:  # the page's limit is not the user's to raise
        raise RegexTimeout(e.pattern, e.limit, e.n_chars, None) from None


def regex_labels(pattern: str, text: str, flags: str | None = "", *, timeout: float = TIMEOUT_S,
                 max_matches: int = MAX_MATCHES) -> tuple[np.ndarray, int, bool]:
    """Per-character labels of `text` for `pattern`, the number of matches, and whether the bound cut them."""
    found, cut = find_spans(pattern, text, flags, timeout=timeout, max_matches=max_matches)
    return spans_to_labels(found, len(text)), len(found), cut
