"""Checks for the values a dashboard callback receives from the browser: one function per field type.

Every value in a request is untrusted: a number can arrive where a list is
expected, text can hold lone surrogate code points, an integer can have a
hundred digits, a string can be megabytes long. Each function returns the
clean value or raises ProbeError with one line naming the field; a bad value
is quoted clipped (`shown`), never in full.
"""
from __future__ import annotations

import math
import re

import numpy as np

from probe.errors import ProbeError

SAFE_INT = 2 ** 53  # the browser's exact integers: anything larger was not typed into a number box
_SURROGATE = re.compile("[\ud800-\udfff]")


def shown(value, limit: int = 40) -> str:
    """`value` as a short printable quote for a message or a log line (repr, clipped, surrogates escaped)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, (str, bytes)) and len(value) > 4 * limit:
        value = value[:4 * limit]  # repr of the head only: a huge string is never copied whole
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still shown
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def as_int(value, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number (int, integral float or numeric string) in [lo, hi] (default: +-2**53)."""
    if value is None or value == "":
        raise ProbeError(f"type a whole number for the {what}")
    if isinstance(value, bool):
        raise ProbeError(f"{what} must be a whole number, not {value!r}")
    out = None
    if isinstance(value, (int, np.integer)):
        out = int(value)
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        out = int(value)
    elif isinstance(value, str) and len(value) < 20 and value.strip().lstrip("-").isdigit():
        out = int(value.strip())
    if out is None:
        raise ProbeError(f"{what} must be a whole number, not {shown(value)}")
    lo = -SAFE_INT if lo is None else lo
    hi = SAFE_INT if hi is None else hi
    if not lo <= out <= hi:
        raise ProbeError(f"{what} must be between {lo:,} and {hi:,}, not {shown(out)}")
    return out


def as_float(value, what: str, lo: float, hi: float) -> float:
    """A finite number in [lo, hi]."""
    if value is None or value == "":
        raise ProbeError(f"type a number for the {what}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str, np.integer, np.floating)):
        raise ProbeError(f"{what} must be a number, not {shown(value)}")
    if isinstance(value, str) and len(value) > 40:
        raise ProbeError(f"{what} must be a number, not {shown(value)}")
    try:
        out = float(value)
    except (ValueError, OverflowError):
        raise ProbeError(f"{what} must be a number, not {shown(value)}") from None
    if not math.isfinite(out) or not lo <= out <= hi:
        raise ProbeError(f"{what} must be a number between {lo:g} and {hi:g}, not {shown(value)}")
    return out


def as_text(value, what: str, max_chars: int, *, required: bool = True, prompt: str | None = None) -> str:
    """Text of at most `max_chars` characters that is valid Unicode (no lone surrogates); None -> "" if optional."""
    if value is None or value == "":
        if required:
            raise ProbeError(prompt or f"type the {what} first")
        return ""
    if not isinstance(value, str):
        raise ProbeError(f"{what} must be text, not {shown(value)}")
    if len(value) > max_chars:
        raise ProbeError(f"{what} is limited to {max_chars:,} characters (got {len(value):,})")
    bad = _SURROGATE.search(value)
    if bad:
        raise ProbeError(f"{what} holds a lone surrogate (U+{ord(bad.group()):04X}) at character {bad.start():,}, "
                         "which is not valid Unicode text: paste it again")
    return value


def as_choice(value, what: str, options) -> str:
    """One of `options` (strings)."""
    options = list(options)
    if not isinstance(value, str) or value not in options:
        raise ProbeError(f"{what} must be one of {', '.join(map(str, options))}, not {shown(value, 20)}")
    return value


def as_choices(value, what: str, options) -> list[str]:
    """A list of distinct strings from `options` (None -> [])."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProbeError(f"{what} must be a list of {', '.join(map(str, options))}, not {shown(value, 20)}")
    if len(value) > 100:
        raise ProbeError(f"{what}: too many values ({len(value):,})")
    out = []
    for v in value:
        v = as_choice(v, what, options)
        if v not in out:
            out.append(v)
    return out


def as_dict(value, what: str) -> dict:
    """A JSON object (dict)."""
    if not isinstance(value, dict):
        raise ProbeError(f"malformed {what}: expected an object, not {shown(value, 20)}")
    return value


def as_records(value, what: str, max_items: int = 10_000) -> list[dict]:
    """A list of JSON objects (a table's rows)."""
    if not isinstance(value, list) or len(value) > max_items or not all(isinstance(r, dict) for r in value):
        raise ProbeError(f"malformed {what}: expected a list of rows")
    return value


def clipped(text: str, limit: int = 300) -> str:
    """`text` on one line, cut to `limit` characters with the full length said (for messages and the log)."""
    text = str(text)
    head = text[:limit].replace("\r", "\\r").replace("\n", "\\n")
    head = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", head)
    return head if len(text) <= limit else f"{head}\u2026 ({len(text):,} characters)"


MAX_BASELINE_ORDER = 20
_BASELINE = re.compile(r"ngram\s*:\s*([0-9]{1,4})", re.IGNORECASE | re.ASCII)


def as_baseline(value, what: str = "baseline", max_order: int = MAX_BASELINE_ORDER) -> int:
    """The order N of an n-gram baseline typed as `ngram:N` (1 <= N <= max_order)."""
    text = as_text(value, what, 40, prompt=f"type a {what} such as ngram:5").strip()
    m = _BASELINE.fullmatch(text)
    if m is None:
        raise ProbeError(f"{what} must be ngram:N with N a whole number, such as ngram:5, not {shown(value)}")
    order = int(m.group(1))
    if not 1 <= order <= max_order:
        raise ProbeError(f"{what}: the n-gram order must be between 1 and {max_order}, not {order}")
    return order
