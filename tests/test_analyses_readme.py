"""scripts/analyses_readme.py: the column look-alike check tells a line counter from a clock."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from probe.analysis.concepts import column
from tests.synthetic_recordings import make_recording, noise_arrays, wiki_like_text

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def readme_script():
    spec = importlib.util.spec_from_file_location("analyses_readme", ROOT / "scripts" / "analyses_readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("planted", ["line counter", "clock"])
def test_counter_lookalike_names_the_planted_unit_and_what_it_is(tmp_path, readme_script, planted):
    text = wiki_like_text(80)
    n = len(text)
    arrays = noise_arrays(n, num_layers=2, hidden=8, seed=1)
    rng = np.random.default_rng(2)
    signal = column(text).astype(np.float32) if planted == "line counter" else -np.arange(n, dtype=np.float32)
    arrays["L1.c"][:, 5] = signal + rng.normal(0, 0.5, n).astype(np.float32)
    rec = make_recording(tmp_path / "rec", text, arrays)
    lines = readme_script.counter_lookalike(rec)
    assert len(lines) == 1 and "`L1.c.5`" in lines[0]
    if planted == "clock":
        assert "a clock, not a line counter" in lines[0]
    else:
        assert lines[0].endswith("so it is a line counter.")
