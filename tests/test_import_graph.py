"""scripts/import_graph.py: the layer rule holds in this repository, and the checker catches what breaks it."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def graph():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {"probe/__init__.py": "", "probe/errors.py": "", "dashboards/__init__.py": "", **files}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_this_repository_has_no_backward_edge_and_no_cycle():
    p = subprocess.run([sys.executable, "scripts/import_graph.py"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "probe.cli" in p.stdout and "probe.record" in p.stdout and not re.search(r"\b0 package edges", p.stdout)


def test_a_clean_tree_passes(graph, tmp_path, capsys):
    root = _tree(tmp_path, {"probe/data/__init__.py": "", "probe/data/vocab.py": "from probe.errors import E\n",
                            "probe/model/__init__.py": "", "probe/model/charrnn.py": "from ..data import vocab\n"})
    assert graph.main([str(root)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^probe\.model +-> probe\.data$", out, re.M)  # a relative import, resolved
    assert re.search(r"^probe\.data +-> probe\.errors$", out, re.M)


def test_a_backward_import_inside_a_function_fails(graph, tmp_path, capsys):
    root = _tree(tmp_path, {"probe/data/__init__.py": "",
                            "probe/data/vocab.py": "def f():\n    from probe.model.charrnn import CharRNN\n",
                            "probe/model/__init__.py": "", "probe/model/charrnn.py": "import probe.data.vocab\n"})
    assert graph.main([str(root)]) == 1
    err = capsys.readouterr().err
    assert "backward edge: probe.data.vocab imports probe.model.charrnn" in err
    assert "package cycle: probe.data <-> probe.model" in err


def test_importlib_indirection_and_unplaced_modules_are_caught(graph, tmp_path, capsys):
    root = _tree(tmp_path, {"probe/data/__init__.py": "",
                            "probe/data/vocab.py": "import importlib\nimportlib.import_module('probe.report')\n",
                            "probe/report.py": "", "probe/stray.py": ""})
    assert graph.main([str(root)]) == 1
    err = capsys.readouterr().err
    assert "backward edge: probe.data.vocab imports probe.report" in err
    assert "module probe.stray is in no layer" in err


def test_a_cycle_within_one_layer_fails(graph, tmp_path, capsys):
    root = _tree(tmp_path, {"probe/names.py": "from probe.checks import check_int\n",
                            "probe/checks.py": "from probe import names\n"})
    assert graph.main([str(root)]) == 1
    assert "package cycle: probe.checks <-> probe.names" in capsys.readouterr().err
