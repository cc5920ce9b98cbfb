"""probe concepts: list the built-in concepts."""
from __future__ import annotations

import argparse


NAME = "concepts"
HELP = "list the built-in concepts (labellings of text) for find-neurons, fit-probe and embed"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from probe.analysis.concepts import BUILTIN

    width = max(len(n) for n in BUILTIN)
    for name, c in BUILTIN.items():
        print(f"{name:<{width}}  {c.label_type:<10}  {c.description}")
    print("\nAny regular expression works too: --pattern '\\[\\[.*?\\]\\]' (characters inside matches are 1).")
    return 0
