"""probe.runtime.heap: large freed blocks stay in the heap, so re-allocating them costs no page faults."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")

# allocates and frees a 64 MB tensor 5 times after 12 warm-up rounds; prints minor page faults of the 5
SCRIPT = textwrap.dedent("""
    import resource, sys, torch
    from probe.runtime.heap import heap_retained, retain_freed_memory
    mode = sys.argv[1]
    if mode == "train":
        import tempfile
        from probe.train.loop import TrainConfig, train
        with tempfile.TemporaryDirectory() as d:
            open(d + "/t.txt", "w").write("abcdefgh " * 400)
            train(TrainConfig(data=d + "/t.txt", out=d + "/r", rnn_size=8, num_layers=1, embed_size=4,
                              batch_size=2, seq_length=10, max_iters=2, eval_every=2, sample_length=1),
                  progress=False)
    elif mode == "cli-train":  # the entry point applies the heap setting, the library does not
        import tempfile
        from probe.cli.main import main
        with tempfile.TemporaryDirectory() as d:
            open(d + "/t.txt", "w").write("abcdefgh " * 400)
            assert main(["train", "--data", d + "/t.txt", "--out", d + "/r", "--rnn-size", "8", "--num-layers", "1",
                         "--embed-size", "4", "--batch-size", "2", "--seq-length", "10", "--max-iters", "2",
                         "--eval-every", "2", "--sample-length", "1"]) == 0
    elif mode in ("all", "small"):
        print("applied", retain_freed_memory(mode))
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(12):  # steady state: glibc splits small blocks off freed big ones for a few rounds
        x = torch.ones(16_000_000); del x
    f0 = faults()
    for _ in range(5):
        x = torch.ones(16_000_000); del x
    print("retained", heap_retained())
    print("faults", faults() - f0)
""")


def run(mode: str, **env) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=300)
    assert out.returncode == 0, out.stderr
    return dict(line.split(" ", 1) for line in out.stdout.splitlines())


def test_retained_heap_reuses_large_blocks_without_page_faults():
    off, on, small = run("off"), run("all"), run("small")
    assert on["applied"] == "True" and on["retained"] == "all" and off["retained"] == "none"
    # 5 x 64 MB of fresh pages is ~78,000 faults of 4 KB; reused heap memory needs (almost) none
    assert int(off["faults"]) > 50_000
    assert int(on["faults"]) < int(off["faults"]) // 20
    # "small" keeps blocks up to 32 MB only: a 64 MB block still comes fresh from mmap
    assert small["retained"] == "small" and int(small["faults"]) > 50_000


def test_the_train_command_applies_it_the_library_does_not_and_probe_heap_system_opts_out():
    assert run("cli-train")["retained"] == "all"
    library = run("train")  # train() itself leaves the process-wide setting alone
    assert library["retained"] == "none" and int(library["faults"]) > 50_000
    opted_out = run("cli-train", PROBE_HEAP="system")
    assert opted_out["retained"] == "none" and int(opted_out["faults"]) > 50_000
    assert run("all", PROBE_HEAP="system")["applied"] == "False"


GIVE_BACK = textwrap.dedent("""
    import numpy as np
    from probe.runtime.heap import give_back_freed_memory, retain_freed_memory
    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    print("retained", retain_freed_memory("small"))
    blocks = [np.ones(2_000_000) for _ in range(20)]  # 20 x 16 MB, under the 32 MB threshold: heap blocks
    del blocks
    print("kept", rss_mb())
    print("gave", give_back_freed_memory())
    print("after", rss_mb())
""")


def test_give_back_returns_the_retained_pages():
    out = subprocess.run([sys.executable, "-c", GIVE_BACK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert got["retained"] == "True" and got["gave"] == "True"
    assert float(got["kept"]) - float(got["after"]) > 250  # most of the 320 MB freed goes back
