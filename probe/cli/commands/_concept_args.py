"""Shared CLI options that name a concept: --pattern REGEX [--flags] [--group] | --concept NAME."""
from __future__ import annotations

import argparse

from probe.analysis import concepts, safe_regex
from probe.analysis.concepts import Concept
from probe.errors import ProbeError


def add_concept_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--pattern", "-p", metavar="REGEX", help="characters inside matches of REGEX are the concept")
    g.add_argument("--concept", "-c", metavar="NAME", help="a built-in concept (see `probe concepts`)")
    p.add_argument("--flags", default="", help="regex flags: i (ignore case), m (multiline), s (dot matches newline)")
    p.add_argument("--group", default=None, help="only this capture group of the regex (number or name)")
    add_regex_timeout_argument(p)


def add_regex_timeout_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--regex-timeout", type=float, default=None, metavar="SECONDS",
                   help=f"stop a regex (typed or built-in) that runs longer than this over the text (default: "
                        f"${safe_regex.ENV_TIMEOUT} if set, else {safe_regex.DEFAULT_TIMEOUT_S:g})")


def regex_timeout(args: argparse.Namespace) -> float | None:
    """--regex-timeout checked, or None (the library's default)."""
    value = getattr(args, "regex_timeout", None)
    return None if value is None else safe_regex.check_timeout(value, "regex_timeout")


def concept_from_args(args: argparse.Namespace) -> Concept | None:
    if getattr(args, "pattern", None) is not None:
        if args.pattern == "":
            raise ProbeError("--pattern is empty")
        return concepts.from_regex(args.pattern, args.flags, args.group, timeout=regex_timeout(args))
    if getattr(args, "concept", None) is not None:
        if args.flags or args.group is not None:
            raise ProbeError("--flags and --group go with --pattern, not with a built-in --concept")
        return concepts.builtin(args.concept, timeout=regex_timeout(args))
    return None


def parse_list(value: str | None, what: str, cast=str) -> list | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    try:
        return [cast(v) for v in items]
    except ValueError:
        raise ProbeError(f"--{what} must be a comma-separated list, not {value!r}") from None
