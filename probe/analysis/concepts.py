"""Concepts: named labellings of a text, one label per character.

A concept is binary (inside a regex match or not), continuous (column, distance
to the line end) or integer (bracket depth, indentation). Built-ins are in
`BUILTIN`; `get` takes a built-in name or else a regular expression. Regexes,
built-in ones included, run through `probe.analysis.safe_regex` with a time limit.

>>> get("wiki-link").labels("see [[Paris]] now")
array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=uint8)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from probe.analysis import safe_regex
from probe.checks import ParamError
from probe.errors import ProbeError

LABEL_TYPES = ("binary", "continuous", "integer")


@dataclass
class Concept:
    """A labelling of text: `labels(text)` gives one value per character."""

    name: str
    label_type: str  # binary | continuous | integer
    description: str
    fn: Callable[[str], np.ndarray] = field(repr=False)

    def __post_init__(self) -> None:
        if self.label_type not in LABEL_TYPES:
            raise ProbeError(f"label_type must be one of {', '.join(LABEL_TYPES)}, not {self.label_type!r}")

    def labels(self, text: str) -> np.ndarray:
        """Per-character labels: uint8 (binary), float32 (continuous) or int32 (integer)."""
        out = np.asarray(self.fn(text))
        if out.shape != (len(text),):
            raise ProbeError(f"concept {self.name}: {out.shape} labels for a text of {len(text)} characters")
        dtype = {"binary": np.uint8, "continuous": np.float32, "integer": np.int32}[self.label_type]
        return out.astype(dtype, copy=False)


# --------------------------------------------------------------------------- constructors

def parse_flags(flags: str) -> int:
    """'ims' -> `re` flag bits; ProbeError for an unknown letter."""
    return safe_regex.parse_flags(flags)


@dataclass(frozen=True)
class RegexLabels:
    """Text -> 1 inside the matches of a compiled pattern (or of one capture group), scanned with a time limit."""

    rx: object  # a regex.Pattern
    group: int | str = 0
    timeout: float | None = None  # None: safe_regex.default_timeout() when the labels are computed

    def __call__(self, text: str) -> np.ndarray:
        found, _ = safe_regex.spans(self.rx, text, group=self.group, timeout=self.timeout)
        out = np.zeros(len(text), dtype=np.uint8)
        for start, end in found.tolist():
            out[start:end] = 1
        return out


def from_regex(pattern: str, flags: str = "", group: int | str | None = None, name: str | None = None,
               description: str | None = None, *, timeout: float | None = None) -> Concept:
    """Characters inside a match (or inside capture group `group`) are 1, others 0.

    Matching stops after `timeout` seconds (default: $PROBE_REGEX_TIMEOUT, else
    safe_regex.DEFAULT_TIMEOUT_S) with a one-line ProbeError.
    """
    if timeout is not None:
        timeout = safe_regex.check_timeout(timeout)
    rx = safe_regex.compile_pattern(pattern, flags)
    if group is not None:
        if isinstance(group, str) and group.isdigit():
            group = int(group)
        if isinstance(group, int) and not 0 <= group <= rx.groups:
            raise ProbeError(f"regex {pattern!r} has {rx.groups} capture group(s); there is no group {group}")
        if isinstance(group, str) and group not in rx.groupindex:
            raise ProbeError(f"regex {pattern!r} has no group named {group!r}")
    shown = f"/{pattern}/{flags or ''}" + (f" group {group}" if group is not None else "")
    return Concept(name or shown, "binary", description or f"inside matches of {shown}",
                   RegexLabels(rx, 0 if group is None else group, timeout))


def with_timeout(concept: Concept, timeout: float | None) -> Concept:
    """The concept with its regex matching limited to `timeout` seconds (unchanged if it is not a regex)."""
    if timeout is None or not isinstance(concept.fn, RegexLabels):
        return concept
    return replace(concept, fn=replace(concept.fn, timeout=safe_regex.check_timeout(timeout)))


def from_function(name: str, fn: Callable[[str], np.ndarray], label_type: str = "binary",
                  description: str = "") -> Concept:
    """A concept from any function text -> per-character labels."""
    return Concept(name, label_type, description or f"labels from {getattr(fn, '__name__', 'a function')}", fn)


# --------------------------------------------------------------------------- built-in labellings

def _newline_mask(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == ord("\n")


def column(text: str) -> np.ndarray:
    """Characters since the last newline (0 for the first character of a line)."""
    n = len(text)
    idx = np.arange(n)
    last = np.maximum.accumulate(np.where(_newline_mask(text), idx, -1)) if n else idx
    before = np.concatenate([[-1], last[:-1]]) if n else idx
    return idx - before - 1


def line_end_distance(text: str) -> np.ndarray:
    """Characters until the next newline (0 on the newline; the text's end counts as a line end)."""
    n = len(text)
    idx = np.arange(n)
    pos = np.where(_newline_mask(text), idx, n)
    nxt = np.minimum.accumulate(pos[::-1])[::-1] if n else idx
    return nxt - idx


_OPEN, _CLOSE = "([{", ")]}"


def bracket_depth(text: str) -> np.ndarray:
    """Nesting depth of (), [] and {}; a bracket counts as inside its own pair; unmatched closers are ignored."""
    out = np.zeros(len(text), dtype=np.int32)
    depth = 0
    for i, ch in enumerate(text):
        if ch in _OPEN:
            depth += 1
            out[i] = depth
        elif ch in _CLOSE:
            out[i] = depth
            depth = max(0, depth - 1)
        else:
            out[i] = depth
    return out


def indent(text: str) -> np.ndarray:
    """Indentation of each character's line: leading spaces, a tab counting 4."""
    out = np.zeros(len(text), dtype=np.int32)
    pos = 0
    for line in text.split("\n"):
        lead = len(line) - len(line.lstrip(" \t"))
        width = sum(4 if c == "\t" else 1 for c in line[:lead])
        out[pos:pos + len(line) + 1] = width
        pos += len(line) + 1
    return out


def _regex_concept(name: str, pattern: str, description: str, flags: str = "") -> Concept:
    return from_regex(pattern, flags, name=name, description=description)


BUILTIN: dict[str, Concept] = {c.name: c for c in [
    _regex_concept("url", r"\b(?:https?|ftp)://[^\s<>\"'\[\]{}|]+|\bwww\.[a-z0-9-]+\.[^\s<>\"'\[\]{}|]+",
                   "inside a URL (http://, https://, ftp://, www.)", "i"),
    _regex_concept("wiki-link", r"\[\[[^\[\]\n]*\]\]", "inside a [[wiki link]], brackets included"),
    from_function("column", column, "continuous", "characters since the last newline"),
    from_function("line-end-distance", line_end_distance, "continuous", "characters until the next newline"),
    _regex_concept("quote", r"\"[^\"\n]*\"|&quot;(?:(?!&quot;)[^\n])*&quot;",
                   "inside double quotes (\"...\" or &quot;...&quot;), quotes included"),
    from_function("bracket-depth", bracket_depth, "integer", "nesting depth of (), [] and {}"),
    _regex_concept("comment", r"/\*.*?\*/|(?<![:/])//[^\n]*|<!--.*?-->|&lt;!--.*?--&gt;",
                   "inside a comment: /* */, // to the line end, <!-- --> (also XML-escaped)", "s"),
    from_function("indent", indent, "integer", "indentation of the line (leading spaces; a tab counts 4)"),
    _regex_concept("xml-tag", r"<[^<>\n]*>|&lt;(?:(?!&gt;|&lt;)[^\n])*&gt;",
                   "inside an XML/HTML tag <...> (also XML-escaped &lt;...&gt;)"),
]}


def get(name_or_regex: str, *, flags: str = "", group: int | str | None = None,
        timeout: float | None = None) -> Concept:
    """A built-in concept by name, else the regex `name_or_regex` (matching limited to `timeout` seconds)."""
    if name_or_regex in BUILTIN and not flags and group is None:
        return with_timeout(BUILTIN[name_or_regex], timeout)
    return from_regex(name_or_regex, flags, group, timeout=timeout)


def builtin(name: str, *, timeout: float | None = None) -> Concept:
    """A built-in concept; an unknown name is a ProbeError listing the known ones."""
    if name not in BUILTIN:
        raise ParamError("name", f"unknown concept {name!r}; built-in concepts: {', '.join(BUILTIN)} "
                                 "(or a regular expression: {pattern=REGEX})", advice=True, others=("pattern",))
    return with_timeout(BUILTIN[name], timeout)


def row_labels(rec, concept: Concept) -> np.ndarray:
    """The concept's labels for every row of a recording, refusing a concept that is absent or constant."""
    text = rec.text
    labels = rec.row_labels(concept.labels(text))
    if len(labels) == 0:
        raise ProbeError("the recording is empty")
    if concept.label_type == "binary":
        n_in = int(labels.sum())
        if n_in == 0:
            raise ProbeError(f"concept {concept.name} matches nothing in the recorded text "
                             f"({len(text):,} characters): nothing to find")
        if n_in == len(labels):
            raise ProbeError(f"concept {concept.name} matches everything in the recorded text "
                             f"({len(text):,} characters): nothing to contrast it with")
    elif np.all(labels == labels[0]):
        raise ProbeError(f"concept {concept.name} is constant ({labels[0]}) on the recorded text: "
                         f"it is absent from it")
    return labels


def as_concept(concept):
    """A Concept as is; a string through `get` (built-in name, else regex); None stays None."""
    if concept is None or isinstance(concept, Concept):
        return concept
    if isinstance(concept, str):
        return get(concept)
    raise ProbeError(f"a concept must be a Concept, a built-in name or a regex, not {type(concept).__name__}")
