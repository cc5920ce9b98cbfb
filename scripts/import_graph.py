"""Print the package-level import graph of probe/ and dashboards/; exit 1 on a backward edge or a cycle.

    python scripts/import_graph.py [ROOT]

Every `import`/`from ... import` is read with `ast`, those inside functions
included (a lazy import is still a dependency), and so is
`importlib.import_module("literal")`. A module belongs to a package node
(`probe.model`, `probe.cli`, `dashboards`; the small bottom modules
`probe.errors`, `probe.names`... are nodes of their own). Imports may only go
to the same layer or a lower one:

    errors, names, checks, files, runtime -> data -> model -> train -> record
      -> sae -> analysis -> figures -> report -> dashboards -> cli

A cycle is reported between package nodes and between modules.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

# Layer of each package node, lowest first; the `probe` package itself (its __version__) is at the bottom.
LAYERS: list[tuple[str, ...]] = [
    ("probe", "probe.errors", "probe.names", "probe.checks", "probe.files", "probe.runtime", "probe.resources",
     "probe.shipped"),
    ("probe.data",),
    ("probe.model",),
    ("probe.train",),
    ("probe.record",),
    ("probe.sae",),
    ("probe.analysis",),
    ("probe.figures",),
    ("probe.report",),
    ("dashboards",),
    ("probe.cli", "probe.__main__"),
]
LAYER_OF = {node: i for i, nodes in enumerate(LAYERS) for node in nodes}
PACKAGES = ("probe", "dashboards")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def node_of(module: str) -> str | None:
    """The package node a module belongs to (the longest known prefix), or None outside probe/dashboards."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYER_OF and (prefix != "probe" or module == "probe"):  # probe/ itself: only __init__
            return prefix
    return "dashboards" if parts[0] == "dashboards" else None


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute names of everything `tree` imports (relative imports resolved against `module`).

    `from pkg import name` gives `pkg.name` (a module, or a name defined in `pkg`: `resolve` decides).
    """
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.update(f"{target}.{a.name}" for a in node.names)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.add(node.args[0].value)
    return out


def resolve(name: str, files: dict[str, Path]) -> str | None:
    """The module `name` stands for: itself, or the nearest enclosing module (`probe.figures.text_heatmap`, a
    function, -> `probe.figures`); importing a module runs its parent packages too, but they are not edges."""
    while name and name not in files:
        name = name.rpartition(".")[0]
    return name or None


def scan(root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> imported modules of probe/dashboards, package node -> imported package nodes)."""
    files = {module_name(root, p): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}
    mod_edges: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = {resolve(name, files) for name in imported_modules(tree, mod, path.name == "__init__.py")}
        mod_edges[mod] = {t for t in targets if t and t != mod and not mod.startswith(t + ".")}
    pkg_edges: dict[str, set[str]] = defaultdict(set)
    for mod, targets in mod_edges.items():
        src = node_of(mod)
        if src is None:
            continue
        pkg_edges[src]  # every node appears
        for t in targets:
            dst = node_of(t)
            if dst is not None and dst != src:
                pkg_edges[src].add(dst)
    return mod_edges, dict(pkg_edges)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def backward_edges(mod_edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(module, imported module) pairs whose import goes up the layer order."""
    bad = []
    for mod, targets in sorted(mod_edges.items()):
        src = node_of(mod)
        for t in sorted(targets):
            dst = node_of(t)
            if src and dst and LAYER_OF[dst] > LAYER_OF[src]:
                bad.append((mod, t))
    return bad


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent
    sys.setrecursionlimit(10_000)
    mod_edges, pkg_edges = scan(root)
    for node in sorted(pkg_edges, key=lambda n: (LAYER_OF[n], n)):
        deps = sorted(pkg_edges[node], key=lambda n: (LAYER_OF[n], n))
        print(f"{node:<16} -> {', '.join(deps) if deps else '(nothing)'}")
    problems = [f"backward edge: {m} imports {t} ({node_of(m)} is below {node_of(t)})"
                for m, t in backward_edges(mod_edges)]
    problems += [f"package cycle: {' <-> '.join(c)}" for c in cycles(pkg_edges)]
    problems += [f"module cycle: {' <-> '.join(c)}" for c in cycles(mod_edges)]
    unplaced = sorted(m for m in mod_edges if node_of(m) is None)
    problems += [f"module {m} is in no layer (add it to LAYERS in scripts/import_graph.py)" for m in unplaced]
    print(f"{len(mod_edges)} modules, {len(pkg_edges)} packages, "
          f"{sum(len(v) for v in pkg_edges.values())} package edges")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
