"""The recorder's writer thread: order, errors on the caller's thread, bounded memory."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from probe.record.background_writes import BackgroundWrites


def test_every_block_is_written_in_order_by_close():
    got = []
    w = BackgroundWrites(lambda name, row, block: got.append((name, row, block.sum())))
    for i in range(50):
        w("a" if i % 2 else "b", i, np.full(10, i))
    w.close()
    assert [r for _, r, _ in got] == list(range(50))
    assert [s for _, _, s in got] == [10 * i for i in range(50)]


def wait_until(condition, timeout: float = 5.0) -> bool:
    """Poll `condition` until it holds (True) or the timeout passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.001)
    return False


def test_a_write_error_is_raised_on_the_callers_thread_and_later_writes_are_skipped():
    got, failed = [], threading.Event()

    def put(name, row, block):
        if row == 3:
            failed.set()
            raise OSError(28, "No space left on device")
        got.append(row)

    w = BackgroundWrites(put)
    for i in range(5):
        w("a", i, np.zeros(4))
    assert failed.wait(5)
    assert wait_until(lambda: w._pending == 0)  # rows 3 and 4 were taken off the queue (4 skipped)
    with pytest.raises(OSError, match="No space"):
        w("a", 5, np.zeros(4))
    with pytest.raises(OSError, match="No space"):
        w.close()
    assert got == [0, 1, 2]


def test_queued_bytes_stay_under_the_bound_while_the_disk_is_slow():
    gate = threading.Event()
    seen = []

    def slow_put(name, row, block):
        gate.wait()
        seen.append(row)

    w = BackgroundWrites(slow_put, max_bytes=3 * 800)
    producer = threading.Thread(target=lambda: [w("a", i, np.zeros(100)) for i in range(10)])  # 800 bytes each
    producer.start()
    assert wait_until(lambda: w._pending == 3 * 800)  # the bound is reached...
    producer.join(0.2)
    assert producer.is_alive() and w._pending == 3 * 800  # ...and the producer waits there
    gate.set()
    producer.join(5)
    w.close()
    assert seen == list(range(10))


def test_close_without_draining_drops_what_is_queued():
    gate = threading.Event()
    seen = []

    def put(name, row, block):
        gate.wait()
        seen.append(row)

    w = BackgroundWrites(put)
    for i in range(5):
        w("a", i, np.zeros(2))
    closer = threading.Thread(target=w.close, kwargs={"drain": False})
    closer.start()
    assert wait_until(lambda: w._dropping)
    gate.set()
    closer.join(5)
    assert not closer.is_alive() and len(seen) <= 1
