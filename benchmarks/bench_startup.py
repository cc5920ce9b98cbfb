"""Start-up wall time of `probe --help` and `probe concepts`: an older commit against the working tree (issue 18).

The older commit is exported with `git archive` into a temporary folder (the checkout is not touched) and both
trees run with the same interpreter, each from its own folder on PYTHONPATH; runs alternate (before, after,
before, ...) so a neighbour's load hits both alike. Reports the median of --repeat runs of each.

    .venv/bin/python benchmarks/bench_startup.py                 # before = 2e9226f, 5 runs each
    .venv/bin/python benchmarks/bench_startup.py --before HEAD~3 --repeat 9 --json startup.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {"probe --help": ["--help"], "probe concepts": ["concepts"]}


def export_commit(commit: str, dest: Path) -> None:
    """The tree of `commit` into `dest`, without touching the checkout (git archive)."""
    archive = dest / "tree.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, stdout=f, check=True)
    with tarfile.open(archive) as t:
        t.extractall(dest, filter="data")
    archive.unlink()


def run_once(tree: Path, args: list[str]) -> float:
    """Seconds of `python -m probe ARGS` run from `tree` (its probe first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "probe", *args], cwd=tree, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"probe {' '.join(args)} failed in {tree}: {out.stderr.strip()[-500:]}")
    return seconds


def which_probe(tree: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, "-c", "import probe; print(probe.__file__)"], cwd=tree, env=env,
                          capture_output=True, text=True, check=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="2e9226f", help="git commit to compare against (default 2e9226f)")
    ap.add_argument("--repeat", type=int, default=5, help="runs of each command in each tree (default 5)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="probe-startup-") as tmp:
        before = Path(tmp)
        export_commit(args.before, before)
        trees = {"before": before, "after": ROOT}
        for name, tree in trees.items():
            found = which_probe(tree)
            if not found.startswith(str(tree)):
                raise SystemExit(f"{name}: probe imported from {found}, not from {tree}")
        for tree in trees.values():  # warm the file cache and any bytecode compilation once, untimed
            for cmd in COMMANDS.values():
                run_once(tree, cmd)
        times = {label: {name: [] for name in trees} for label in COMMANDS}
        for _ in range(args.repeat):
            for label, cmd in COMMANDS.items():
                for name, tree in trees.items():
                    times[label][name].append(run_once(tree, cmd))
    rows = []
    print(f"start-up, median of {args.repeat} (interleaved), python {sys.version.split()[0]}, "
          f"before = {args.before}, after = working tree")
    print(f"{'command':<16} {'before s':>9} {'after s':>9} {'speed-up':>9}")
    for label, t in times.items():
        b, a = statistics.median(t["before"]), statistics.median(t["after"])
        rows.append({"command": label, "before_s": b, "after_s": a, "speedup": b / a, "runs": t})
        print(f"{label:<16} {b:>9.3f} {a:>9.3f} {b / a:>8.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"before": args.before, "repeat": args.repeat, "results": rows},
                                              indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
