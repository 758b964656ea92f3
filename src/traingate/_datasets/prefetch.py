"""Run an iterator on a worker thread, a few items ahead of its consumer.

A build's engine spends most of its time where Python lets other threads run (SQLite through
the ADBC driver, DuckDB, Arrow), while the builder's own work on each batch (record ids,
lineage, counts) holds the interpreter: run on its own thread, the engine decides the next
batch while the builder finishes this one. Order is kept; at most ``depth`` items wait, so
memory stays bounded.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["Prefetch"]

T = TypeVar("T")


class _End:
    """The worker's last message: the iterator ended, or raised ``error``."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Prefetch(Generic[T]):
    """``with Prefetch(items) as ahead: for item in ahead: ...``: the items of ``items``, in
    order, produced on a worker thread. An exception of the iterator is raised in the
    consumer's thread; leaving the block early stops the worker and waits for it (the iterator
    is closed on the worker's thread, so what it holds is released before the caller's
    resources, such as a database connection, are)."""

    def __init__(self, items: Iterator[T], *, depth: int = 2) -> None:
        self._items = items
        self._queue: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="traingate-prefetch")

    def _put(self, item: T | _End) -> bool:
        """Hand ``item`` to the consumer unless it stopped listening."""
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.05)
                return True
        return False

    def _work(self) -> None:
        end = _End()
        try:
            for item in self._items:
                if not self._put(item):
                    break
        except BaseException as exc:  # handed to the consumer's thread
            end = _End(exc)
        finally:
            close = getattr(self._items, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
        self._put(end)

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item

    def __enter__(self) -> Prefetch[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
