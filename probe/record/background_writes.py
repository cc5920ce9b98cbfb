"""Disk writes on a worker thread, so that a recording's I/O overlaps the next chunk's compute.

File writes release the GIL, and the worker calls nothing but the given `put`
(no torch, no numba: their thread pools stay on the main thread). The queue is
bounded in bytes, so memory stays at most `max_bytes` above one chunk; the first
write error is raised again on the caller's thread, at the next `put` or at
`close`.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable

import numpy as np

Put = Callable[[str, int, np.ndarray], None]


class BackgroundWrites:
    """Call as `put(name, row, block)`; `close()` waits for every queued write (or drops them with drain=False).

    A queued block must not be changed afterwards: the recorder hands over freshly computed arrays.
    """

    def __init__(self, put: Put, max_bytes: int = 256 << 20):
        self._put = put
        self._max = int(max_bytes)
        self._queue: queue.Queue = queue.Queue()
        self._room = threading.Condition()
        self._pending = 0
        self._error: BaseException | None = None
        self._dropping = False
        self._thread = threading.Thread(target=self._run, name="probe-writes", daemon=True)
        self._thread.start()

    def __call__(self, name: str, row: int, block: np.ndarray) -> None:
        self._raise_error()
        size = int(block.nbytes)
        with self._room:
            while self._pending and self._pending + size > self._max and self._error is None:
                self._room.wait()
            self._pending += size
        self._queue.put((name, row, block))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            name, row, block = item
            if self._error is None and not self._dropping:
                try:
                    self._put(name, row, block)
                except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                    self._error = e
            with self._room:
                self._pending -= int(block.nbytes)
                self._room.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self, drain: bool = True) -> None:
        """Finish (drain=True: write everything queued, then raise any write error) or abandon the writes."""
        if not self._thread.is_alive():
            if drain:
                self._raise_error()
            return
        self._dropping = not drain
        self._queue.put(None)
        self._thread.join()
        if drain:
            self._raise_error()
