"""probe.runtime.threads: one CPU thread policy per process, user overrides kept; library calls leave the heap alone."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from probe.runtime import threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# applies the policy in a fresh interpreter and prints what it set
POLICY = textwrap.dedent("""
    import os, sys
    if "torch-first" in sys.argv:
        import torch
        torch.set_num_threads(1)
    from probe.runtime.threads import apply_thread_policy, usable_cores
    p = apply_thread_policy()
    import torch
    print("threads", p.threads)
    print("torch", torch.get_num_threads())
    print("source", p.source)
    print("wait", p.wait)
    print("again", apply_thread_policy() is p)
    print("cores", usable_cores())
    print("spincount", os.environ.get("GOMP_SPINCOUNT"))
    print("passive", os.environ.get("OMP_WAIT_POLICY"))
""")


def clean_env(**env) -> dict[str, str]:
    """The environment without any thread setting (the test session's own PROBE_THREADS=1 included)."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("PROBE_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "PROBE_HEAP")}
    return {**base, "PYTHONPATH": ROOT, **env}


def policy(*args: str, **env) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", POLICY, *args], capture_output=True, text=True,
                         env=clean_env(**env), timeout=120)
    assert out.returncode == 0, out.stderr
    return dict(line.split(" ", 1) for line in out.stdout.splitlines())


def test_default_policy_spins_briefly_uses_free_cores_and_is_applied_once():
    p = policy()
    assert p["source"] == "free cores" and p["spincount"] == threads.SPINCOUNT
    assert p["wait"] == f"GOMP_SPINCOUNT={threads.SPINCOUNT} (probe)"
    assert 1 <= int(p["threads"]) <= int(p["cores"]) and p["torch"] == p["threads"]
    assert p["again"] == "True"


def test_probe_threads_fixes_the_count():
    p = policy(PROBE_THREADS="1")
    assert (p["threads"], p["torch"], p["source"]) == ("1", "1", "PROBE_THREADS")


def test_user_openmp_settings_are_kept():
    p = policy(OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1")
    assert p["passive"] == "PASSIVE" and p["spincount"] == "None"  # no spin count added beside the user's policy
    assert p["wait"] == "OMP_WAIT_POLICY=PASSIVE (user)"
    assert (p["threads"], p["torch"], p["source"]) == ("1", "1", "OMP_NUM_THREADS")
    assert policy(GOMP_SPINCOUNT="5")["spincount"] == "5"


def test_torch_imported_first_keeps_its_thread_count():
    p = policy("torch-first")
    assert p["wait"] == "libgomp default (torch was imported first)" and p["spincount"] == "None"
    assert p["torch"] == "1"
    if p["cores"] != "1":  # on one core, 1 thread is also the default: nothing tells the two apart
        assert p["source"] == "torch.set_num_threads"


def test_a_bad_probe_threads_is_one_line_from_the_cli():
    for bad in ("0", "two", "-3"):
        out = subprocess.run([sys.executable, "-m", "probe", "concepts"], capture_output=True, text=True,
                             env=clean_env(PROBE_THREADS=bad), timeout=120, cwd=ROOT)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert out.stderr.strip() == f"probe: error: PROBE_THREADS must be a whole number of threads, at least 1, not '{bad}'"


def test_free_cores_stays_between_one_and_the_cores():
    assert threads.free_cores(0.0, 2) == 2
    assert threads.free_cores(0.4, 2) == 2
    assert threads.free_cores(0.9, 2) == 1
    assert threads.free_cores(2.0, 2) == 1  # never zero
    assert threads.free_cores(5.0, 16) == 11
    assert all(1 <= threads.free_cores(x / 4, c) <= c for c in (1, 2, 8) for x in range(0, 40))
    assert 1 <= threads.usable_cores() <= (os.cpu_count() or 1)


# refresh_threads with the other processes' CPU use faked: busy neighbours take threads away, idle ones give them back
REFRESH = textwrap.dedent("""
    import torch
    from probe.runtime import threads
    p = threads.apply_thread_policy(sample_s=0.0)
    cores = p.cores
    clock = {"busy": 0.0, "own": 0.0}
    threads._cpu_times = lambda: (clock["busy"], clock["own"])
    threads._last.update(busy=0.0, own=0.0)
    def tick(others, own, seconds):  # others' and our CPU use, in cores, over `seconds`
        clock["busy"] += (others + own) * seconds
        clock["own"] += own * seconds
        threads._last["t"] -= seconds  # as if that time had passed
    tick(cores, 1.0, 3.0)
    print("busy", threads.refresh_threads(), torch.get_num_threads())
    tick(0.0, 1.0, 3.0)
    print("idle", threads.refresh_threads(), torch.get_num_threads())
    tick(cores, 1.0, 0.5)
    print("soon", threads.refresh_threads(min_interval_s=2.0))
    torch.set_num_threads(1)  # the user's choice wins from here on
    tick(0.0, 1.0, 3.0)
    print("user", threads.refresh_threads(), torch.get_num_threads())
    print("cores", cores)
""")


def test_refresh_follows_the_free_cores_until_the_user_sets_a_count():
    out = subprocess.run([sys.executable, "-c", REFRESH], capture_output=True, text=True, env=clean_env(),
                         timeout=120)
    assert out.returncode == 0, out.stderr
    r = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    cores = int(r["cores"])
    assert r["busy"] == "1 1"
    assert r["idle"] == f"{cores} {cores}"
    assert r["soon"] == str(cores)  # within the interval nothing is measured or changed
    assert r["user"] == "1 1"


def test_refresh_does_nothing_without_an_adaptive_policy():
    import torch

    before = torch.get_num_threads()  # this session: PROBE_THREADS (conftest), a fixed count
    assert threads.thread_policy() is not None and not threads.thread_policy().adaptive
    assert threads.refresh_threads(min_interval_s=0.0) == before == torch.get_num_threads()


def test_one_thread_for_interactive_work_restores_the_count():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threads.one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), threads.one_thread():
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_interactive_requests_use_the_cores_free_at_that_moment(monkeypatch):
    import torch

    cores = 2
    monkeypatch.setattr(threads, "_policy", threads.ThreadPolicy(threads=cores, source="free cores",
                                                                 wait="test", cores=cores))
    monkeypatch.setitem(threads._last, "set", torch.get_num_threads())
    clock = {"busy": 0.0}

    def fake_cpu_times():  # other processes add `load` cores of CPU per second of wall time; this one nothing
        clock["busy"] += clock["load"] * threads.INTERACTIVE_SAMPLE_S
        return clock["busy"], 0.0

    monkeypatch.setattr(threads, "_cpu_times", fake_cpu_times)
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock["busy"] / max(clock["load"], 1e-9))
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    clock["load"] = 0.0
    assert threads.interactive_thread_count() == cores  # a quiet machine: every core
    clock["load"] = 1.0
    assert threads.interactive_thread_count() == 1  # a neighbour holds a core: one thread
    before = torch.get_num_threads()
    with threads.interactive_threads():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.setattr(threads, "_policy", threads.ThreadPolicy(threads=3, source="PROBE_THREADS",
                                                                 wait="test", cores=cores))
    assert threads.interactive_thread_count() == torch.get_num_threads()  # a fixed count is kept


# the library's train() and record() leave the process heap as it was; the entry point's call sets it
HEAP = textwrap.dedent("""
    import sys, tempfile
    from probe.runtime.heap import apply_heap_policy, heap_retained
    from probe.train.loop import TrainConfig, train
    from probe.record.recorder import record
    with tempfile.TemporaryDirectory() as d:
        open(d + "/t.txt", "w").write("abcdefgh " * 400)
        train(TrainConfig(data=d + "/t.txt", out=d + "/r", rnn_size=8, num_layers=1, embed_size=4,
                          batch_size=2, seq_length=10, max_iters=2, eval_every=2, sample_length=1), progress=False)
        print("after train", heap_retained())
        record(d + "/r", "abc abc abc", d + "/rec")
        print("after record", heap_retained())
    print("applied", apply_heap_policy("record"), heap_retained())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_library_calls_leave_the_heap_setting_alone():
    out = subprocess.run([sys.executable, "-c", HEAP], capture_output=True, text=True,
                         env=clean_env(PROBE_THREADS="1"), timeout=300)
    assert out.returncode == 0, out.stderr
    r = dict(line.rsplit(" ", 1) if not line.startswith("applied") else ("applied", line[8:])
             for line in out.stdout.splitlines())
    assert r["after train"] == "none" and r["after record"] == "none"
    assert r["applied"] == "True all"
    with pytest.raises(ValueError, match="work must be one of train, record"):
        from probe.runtime.heap import apply_heap_policy
        apply_heap_policy("notebook")
