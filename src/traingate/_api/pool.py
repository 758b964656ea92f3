"""A small pool of ``Traingate`` instances, one lent to each request at a time.

Each instance holds its own database connection, so requests running on different worker
threads never share one; SQLite serializes writers with ``BEGIN IMMEDIATE`` and a busy
timeout, PostgreSQL with its advisory lock. Instances are opened lazily up to ``size``; an
instance whose request failed with a store error is closed rather than lent again.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

from traingate._errors import StoreError
from traingate._facade import Traingate
from traingate._settings import Settings

__all__ = ["TraingatePool"]


class TraingatePool:
    def __init__(self, *, settings: Settings, size: int = 4, wait: float = 30.0) -> None:
        if size < 1:
            raise ValueError("a pool holds at least one instance")
        self.settings = settings
        self.size = size
        self.wait = wait
        self._idle: queue.LifoQueue[Traingate] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._open = 1
        self._idle.put(self._new())  # fail fast on unusable settings; migrates the store once

    def _new(self) -> Traingate:
        """Open an instance for a slot already counted in ``_open``."""
        try:
            return Traingate.open(self.settings)
        except BaseException:
            with self._lock:
                self._open -= 1
            raise

    def _take(self) -> Traingate:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = self._open < self.size
            if grow:
                self._open += 1
        if grow:
            return self._new()
        try:
            return self._idle.get(timeout=self.wait)
        except queue.Empty:
            raise StoreError(f"all {self.size} store connections stayed busy") from None

    def _discard(self, tg: Traingate) -> None:
        with self._lock:
            self._open -= 1
        with contextlib.suppress(Exception):
            tg.close()

    @contextlib.contextmanager
    def lease(self) -> Iterator[Traingate]:
        """Lend one instance for the duration of the block."""
        if self._closed:
            raise StoreError("the store pool is closed")
        tg = self._take()
        try:
            yield tg
        except StoreError:
            self._discard(tg)
            raise
        except BaseException:
            self._give_back(tg)
            raise
        else:
            self._give_back(tg)

    def _give_back(self, tg: Traingate) -> None:
        if self._closed:
            self._discard(tg)
        else:
            self._idle.put(tg)

    def close(self) -> None:
        """Close every idle instance; instances still lent are closed when returned."""
        self._closed = True
        while True:
            try:
                tg = self._idle.get_nowait()
            except queue.Empty:
                return
            self._discard(tg)
