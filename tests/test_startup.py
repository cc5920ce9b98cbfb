"""Start-up (issue 18): `probe --help` imports no command module, and each command imports only what it needs.

Each case runs the CLI in a fresh interpreter and reads which heavy libraries were imported by the end.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

cli = importlib.import_module("probe.cli.main")  # (probe.cli.main the attribute is the main() function)

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "numpy", "pandas", "scipy", "numba", "sklearn", "plotly", "dash", "umap", "safetensors")

# runs probe's CLI entry point (as the `probe` script does) and writes the heavy modules imported by the end
RUN = textwrap.dedent("""
    import atexit, json, os, sys
    HEAVY = %r
    def report():
        mods = sorted(m for m in HEAVY if m in sys.modules)
        cmds = sorted(m for m in sys.modules if m.startswith("probe.cli.commands."))
        with open(os.environ["STARTUP_OUT"], "w") as f:
            json.dump({"heavy": mods, "commands": cmds}, f)
    atexit.register(report)
    from probe.cli import main
    sys.exit(main(sys.argv[1:]))
""") % (HEAVY,)


def imported(tmp_path: Path, *args: str, cwd: Path | None = None) -> tuple[int, dict, str]:
    """(exit code, {"heavy": [...], "commands": [...]}, stdout+stderr) of `probe ARGS` in a fresh interpreter."""
    out = tmp_path / "startup.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STARTUP_OUT": str(out)}
    proc = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, env=env,
                          cwd=cwd or tmp_path, timeout=300)
    return proc.returncode, json.loads(out.read_text()), proc.stdout + proc.stderr


def test_every_table_row_names_its_module_and_help():
    names = [c.name for c in cli.COMMANDS]
    assert len(names) == len(set(names))
    for row in cli.COMMANDS:
        mod = importlib.import_module(row.module)
        assert (mod.NAME, mod.HELP) == (row.name, row.help), row.module
        assert callable(mod.add_arguments) and callable(mod.run)


def test_constants_copied_into_light_command_modules_match_the_library():
    from probe.analysis.hypothesis import MAX_SPAN
    from probe.cli.commands import evaluate, hypothesis
    from probe.train.evaluate import PARTS

    assert hypothesis.MAX_SPAN == MAX_SPAN and evaluate.PARTS == PARTS


def test_help_imports_no_command_module_and_nothing_heavy(tmp_path):
    code, got, out = imported(tmp_path, "--help")
    assert code == 0 and "find-neurons" in out and "models" in out
    assert got == {"heavy": [], "commands": []}


def test_a_command_imports_only_its_own_module(tmp_path):
    code, got, out = imported(tmp_path, "models", "--json")
    assert code == 0, out
    assert got["commands"] == ["probe.cli.commands.models"]
    assert got["heavy"] == []
    assert [m["name"] for m in json.loads(out)] == ["shakespeare", "wiki"]


def test_concepts_loads_no_torch_pandas_scipy(tmp_path):
    code, got, out = imported(tmp_path, "concepts")
    assert code == 0 and "wiki-link" in out
    assert not {"torch", "pandas", "scipy", "numba", "plotly", "sklearn"} & set(got["heavy"])


@pytest.mark.parametrize("row", [c for c in cli.COMMANDS if c.name != "train"], ids=lambda c: c.name)
def test_command_help_loads_no_torch(tmp_path, row):
    """A command's own --help needs its options only (train's come from TrainConfig, which needs torch)."""
    code, got, out = imported(tmp_path, row.name, "--help")
    assert code == 0, out
    assert "torch" not in got["heavy"], f"probe {row.name} --help imports torch at module top"


def test_unknown_command_is_argparse_error_without_imports(tmp_path):
    code, got, out = imported(tmp_path, "no-such-command")
    assert code == 2 and "invalid choice" in out
    assert got == {"heavy": [], "commands": []}


@pytest.fixture(scope="module")
def tiny_recording(tiny_lstm, tmp_path_factory) -> Path:
    from probe.record.recorder import record

    out = tmp_path_factory.mktemp("startup") / "rec"
    record(tiny_lstm, "the quick brown fox jumps over the lazy dog\n" * 30, out)
    return out


@pytest.mark.parametrize("args", [
    ["find-neurons", "{rec}", "--concept", "column"],
    ["neuron", "{rec}", "L1.c.3"],
    ["heatmap", "{rec}", "--unit", "L1.c.3", "--out", "{tmp}/u.html"],
], ids=["find-neurons", "neuron", "heatmap"])
def test_analyses_of_a_recording_load_no_torch(tmp_path, tiny_recording, args):
    args = [a.format(rec=tiny_recording, tmp=tmp_path) for a in args]
    code, got, out = imported(tmp_path, *args)
    assert code == 0, out
    assert "numpy" in got["heavy"]  # the analysis ran
    assert "torch" not in got["heavy"], f"probe {args[0]} imported torch"


def test_a_command_that_loads_torch_gets_the_thread_policy(tmp_path):
    """The policy's thread count is set when torch first loads (an import hook), after the OpenMP settings."""
    code = textwrap.dedent("""
        import os, sys
        from probe.runtime import threads
        threads.defer_thread_policy()
        before = (threads.thread_policy(), "torch" in sys.modules, os.environ.get("GOMP_SPINCOUNT"))
        from probe.model import checkpoint  # imports torch
        import torch
        p = threads.thread_policy()
        print(before[0] is None, before[1], before[2], p.source, p.threads, torch.get_num_threads(), p.wait)
        print(all(type(f).__name__ != "_TorchHook" for f in sys.meta_path))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(PYTHONPATH=str(ROOT), PROBE_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first == "True False 30000 PROBE_THREADS 1 1 GOMP_SPINCOUNT=30000 (probe)"
    assert second == "True"  # the hook removed itself
