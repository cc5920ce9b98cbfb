"""Shared fixtures: tiny models trained in a second or two on real text, so tests stay fast."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from probe.runtime.threads import apply_thread_policy

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".numba_cache"))
# the CLI's CPU thread policy, before torch loads; tiny test models run on one thread unless PROBE_THREADS says more
os.environ.setdefault("PROBE_THREADS", "1")
apply_thread_policy()

from probe.data.corpus import BUNDLED, read_bytes  # noqa: E402
from probe.train.loop import TrainConfig, train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shakespeare_text() -> str:
    return read_bytes(BUNDLED["shakespeare"]).decode("utf-8")


@pytest.fixture(scope="session")
def wiki_bytes() -> bytes:
    return read_bytes(BUNDLED["wiki"])


def tiny_config(data: str, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), rnn_size=16, num_layers=2, embed_size=8, dropout=0.0,
                seq_length=20, batch_size=4, max_iters=30, eval_every=15, warmup_iters=5, sample_length=20)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def small_text_file(tmp_path_factory, shakespeare_text) -> Path:
    p = tmp_path_factory.mktemp("data") / "small.txt"
    p.write_text(shakespeare_text[:20000], encoding="utf-8")
    return p


@pytest.fixture(scope="session")
def tiny_lstm(tmp_path_factory, small_text_file) -> Path:
    """A 2x16 LSTM run folder trained 30 iterations on 20k characters of Shakespeare."""
    out = tmp_path_factory.mktemp("runs") / "lstm"
    train(tiny_config(small_text_file, out), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_gru(tmp_path_factory, small_text_file) -> Path:
    out = tmp_path_factory.mktemp("runs") / "gru"
    train(tiny_config(small_text_file, out, model="gru"), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_rnn(tmp_path_factory, small_text_file) -> Path:
    out = tmp_path_factory.mktemp("runs") / "rnn"
    train(tiny_config(small_text_file, out, model="rnn"), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_byte_lstm(tmp_path_factory, wiki_bytes) -> Path:
    """A byte-level 2x16 LSTM trained briefly on 30k bytes of the Wikipedia sample."""
    p = tmp_path_factory.mktemp("data") / "wiki-small.xml"
    p.write_bytes(wiki_bytes[:30000])
    out = tmp_path_factory.mktemp("runs") / "byte"
    train(tiny_config(p, out, vocab="byte"), progress=False)
    return out
