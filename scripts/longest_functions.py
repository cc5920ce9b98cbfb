"""List the longest functions of probe/ and dashboards/ and the module count.

    python scripts/longest_functions.py [ROOT] [--top 10]

A function's length is its lines from `def` to its last line, docstring and
nested functions included (a nested function is listed on its own as well).
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

PACKAGES = ("probe", "dashboards")


def functions(path: Path, module: str) -> list[tuple[int, str]]:
    """(lines, qualified name) of every function and method in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                out.append((child.end_lineno - child.lineno + 1, name))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, f"{module}.")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args(argv)
    root = Path(args.root)
    files = sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py"))
    found = []
    for p in files:
        module = ".".join(p.relative_to(root).with_suffix("").parts)
        found += functions(p, module)
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in files)
    print(f"{len(files)} modules, {lines:,} lines, {len(found)} functions")
    for n, name in sorted(found, key=lambda f: (-f[0], f[1]))[:args.top]:
        print(f"{n:>5}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
