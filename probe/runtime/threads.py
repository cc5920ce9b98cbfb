"""One CPU thread policy for the whole process, applied once by each entry point before torch loads.

This torch build runs its intra-op threads on GNU OpenMP (libgomp). libgomp lets a thread that
waits at a barrier spin ~300,000 times (a few ms) before it sleeps; when another busy process
holds one of the cores, the thread that is waited for is off the CPU, and the spinning one burns
the other core: a 2-thread forward of a 512-unit LSTM over 512 steps ran 30-100x slower beside a
2-thread torch matmul loop. Sleeping at once (OMP_WAIT_POLICY=PASSIVE) holds up under a neighbour
but costs ~40-60% alone, since the threads fall asleep between the many small kernels of a
recurrent step; a very short spin (GOMP_SPINCOUNT=300) cost recording a quarter of its alone speed.
probe shortens the spin tenfold (GOMP_SPINCOUNT=30000, a fraction of a millisecond), which keeps the
alone speed, and lets the thread count follow the cores other processes leave free: measured at
start, re-checked cheaply by long loops (`refresh_threads`), and measured again before each short
interactive request (live text, clamping: `interactive_threads`). Beside a busy neighbour probe
runs on one thread, where no OpenMP barrier waits at all.

Overrides: PROBE_THREADS=N fixes the thread count (no adapting); a user-set OMP_NUM_THREADS,
OMP_WAIT_POLICY or GOMP_SPINCOUNT is left alone (and OMP_NUM_THREADS also fixes the count);
a torch.set_num_threads() call made before, or any time after, wins over the policy.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

from probe.errors import ProbeError

SPINCOUNT = "30000"  # libgomp spins this many times at a barrier before it sleeps (its default: 300,000)
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # a user's setting of either is kept as it is
REFRESH_EVERY_S = 2.0  # refresh_threads() measures other processes over at least this long
START_SAMPLE_S = 0.05  # at start, other processes' CPU use is sampled this long
INTERACTIVE_SAMPLE_S = 0.03  # before an interactive request (live text, clamping), this long


@dataclass(frozen=True)
class ThreadPolicy:
    """What apply_thread_policy() set: the torch thread count, where it came from, and the wait setting."""

    threads: int
    source: str  # "PROBE_THREADS", "OMP_NUM_THREADS", "torch.set_num_threads" or "free cores"
    wait: str  # e.g. "GOMP_SPINCOUNT=30000 (probe)", "OMP_WAIT_POLICY=PASSIVE (user)"
    cores: int

    @property
    def adaptive(self) -> bool:
        return self.source == "free cores"


_policy: ThreadPolicy | None = None
_last = {"t": 0.0, "busy": 0.0, "own": 0.0, "set": 0}


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def _cpu_times() -> tuple[float, float]:
    """(seconds of CPU used by every process on the machine, seconds used by this one), cumulative."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    ticks = os.sysconf("SC_CLK_TCK")
    values = [int(v) for v in parts[:8]]  # user nice system idle iowait irq softirq steal
    busy = (sum(values) - values[3] - values[4]) / ticks
    own = os.times()
    return busy, own.user + own.system


def free_cores(others_busy: float, cores: int) -> int:
    """Threads to use when other processes keep `others_busy` cores busy: the rest, at least 1."""
    return max(1, min(cores, cores - int(others_busy + 0.5)))


def _others_busy_since(busy0: float, own0: float, t0: float) -> tuple[float, float, float, float]:
    busy, own = _cpu_times()
    t = time.monotonic()
    return max(0.0, ((busy - busy0) - (own - own0)) / max(t - t0, 1e-9)), busy, own, t


def _positive_int(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ProbeError(f"{name} must be a whole number of threads, at least 1, not {value!r}")
    return n


_wait: list[str] = []


def set_wait_policy() -> str:
    """Set a shorter OpenMP spin (GOMP_SPINCOUNT) unless the user chose a wait policy; once, before torch loads.

    Touches only the environment (child processes inherit it); returns the setting in force, e.g.
    "GOMP_SPINCOUNT=30000 (probe)". libgomp reads it when torch loads: once torch is in, it is too late.
    """
    if _wait:
        return _wait[0]
    user = [f"{var}={os.environ[var]} (user)" for var in WAIT_VARS if var in os.environ]
    if user:
        _wait.append(user[0])
    elif "torch" in sys.modules:
        _wait.append("libgomp default (torch was imported first)")
    else:
        os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
        _wait.append(f"GOMP_SPINCOUNT={SPINCOUNT} (probe)")
    return _wait[0]


def check_thread_env() -> None:
    """Raise ProbeError (one line) for a bad PROBE_THREADS; touches nothing, imports nothing."""
    wanted = os.environ.get("PROBE_THREADS")
    if wanted is not None:
        _positive_int("PROBE_THREADS", wanted)


class _TorchHook(importlib.abc.MetaPathFinder):
    """Applies the thread policy right after torch's first import (one shot: removes itself)."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_apply(module):
            try:
                exec_module(module)
            finally:
                loader.__dict__.pop("exec_module", None)  # the loader's own method again
            try:
                apply_thread_policy(_torch_first=False)
            except ProbeError:
                pass  # a bad PROBE_THREADS: check_thread_env() reported it before anything imported torch

        loader.exec_module = exec_then_apply
        return spec


_hook = _TorchHook()


def defer_thread_policy() -> str:
    """The CLI's start: the wait setting now (environment only), the thread count when torch first loads.

    Raises ProbeError for a bad PROBE_THREADS. Commands that never import torch (concepts, models,
    find-neurons...) thus pay nothing for it; the others get the same policy as apply_thread_policy().
    Returns the wait setting in force.
    """
    check_thread_env()
    wait = set_wait_policy()
    if _policy is None:
        if "torch" in sys.modules:
            apply_thread_policy()
        elif _hook not in sys.meta_path:
            sys.meta_path.insert(0, _hook)
    return wait


def apply_thread_policy(*, sample_s: float = START_SAMPLE_S, _torch_first: bool | None = None) -> ThreadPolicy:
    """Apply the policy once per process (later calls return the first result); call it before importing torch.

    Imports torch and sets its intra-op thread count: PROBE_THREADS when set; else, when the user set
    OMP_NUM_THREADS or torch.set_num_threads() ran before, that count; else the cores that other
    processes leave free, sampled over `sample_s` seconds. Raises ProbeError for a bad PROBE_THREADS.
    """
    global _policy
    if _policy is not None:
        return _policy
    cores = usable_cores()
    wanted = os.environ.get("PROBE_THREADS")
    fixed = _positive_int("PROBE_THREADS", wanted) if wanted is not None else None
    torch_first = "torch" in sys.modules if _torch_first is None else _torch_first
    wait = set_wait_policy()
    import torch

    if fixed is not None:
        threads, source = fixed, "PROBE_THREADS"
    elif os.environ.get("OMP_NUM_THREADS"):
        threads, source = torch.get_num_threads(), "OMP_NUM_THREADS"
    elif torch_first and torch.get_num_threads() != cores:
        threads, source = torch.get_num_threads(), "torch.set_num_threads"
    else:
        busy0, own0 = _cpu_times()
        t0 = time.monotonic()
        time.sleep(max(0.0, sample_s))
        others, busy, own, t = _others_busy_since(busy0, own0, t0)
        threads, source = free_cores(others, cores), "free cores"
        _last.update(t=t, busy=busy, own=own)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    _last["set"] = threads
    _policy = ThreadPolicy(threads=threads, source=source, wait=wait, cores=cores)
    return _policy


def thread_policy() -> ThreadPolicy | None:
    """The policy applied in this process, or None when no entry point applied one."""
    return _policy


def refresh_threads(min_interval_s: float = REFRESH_EVERY_S) -> int:
    """Re-fit the thread count to the cores other processes leave free; cheap enough to call every step.

    Does nothing (returns torch's count) unless the policy chose the count from free cores, at
    most once per `min_interval_s`, and never after someone else changed the count
    (torch.set_num_threads wins). Measures other processes' CPU use since the last check.
    """
    import torch

    current = torch.get_num_threads()
    if _policy is None or not _policy.adaptive or current != _last["set"]:
        return current
    if time.monotonic() - _last["t"] < min_interval_s:
        return current
    others, busy, own, t = _others_busy_since(_last["busy"], _last["own"], _last["t"])
    _last.update(t=t, busy=busy, own=own)
    threads = free_cores(others, _policy.cores)
    if threads != current:
        torch.set_num_threads(threads)
        _last["set"] = threads
    return threads


@contextmanager
def one_thread():
    """Run work on one torch thread; restores the count."""
    with threads_for(1):
        yield


@contextmanager
def threads_for(n: int):
    """Run work on `n` torch threads; restores the count afterwards, even after an error."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def interactive_thread_count(sample_s: float = INTERACTIVE_SAMPLE_S) -> int:
    """Threads for one short interactive request (live text, clamping): the cores free right now.

    Other processes' CPU use is sampled over `sample_s` (a few % of a request): alone, both cores
    help (2-thread live text ~1.3x one thread); beside a busy neighbour one thread never waits on a
    descheduled peer. A fixed count (PROBE_THREADS, OMP_NUM_THREADS, torch.set_num_threads) is kept.
    """
    import torch

    if _policy is None or not _policy.adaptive or torch.get_num_threads() != _last["set"]:
        return torch.get_num_threads()
    busy0, own0 = _cpu_times()
    t0 = time.monotonic()
    time.sleep(max(0.0, sample_s))
    others = _others_busy_since(busy0, own0, t0)[0]
    return free_cores(others, _policy.cores)


@contextmanager
def interactive_threads():
    """Run one short interactive request on the cores free right now (`interactive_thread_count`)."""
    with threads_for(interactive_thread_count()):
        yield
