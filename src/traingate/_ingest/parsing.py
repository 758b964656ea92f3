"""Numbered lines into ``Incoming`` events, in this process or in parse workers.

Validating an event costs about as much as checking and writing it, so the lines of a large file
are parsed by worker processes while this process checks and writes. The first ``inline`` lines
are parsed here, one at a time (an API request or a small file never starts a worker); when more
follow, the workers start before the last of those is handed on, and chunks of lines go
round-robin to them, at most a batch and a few chunks ahead of the lines the caller has taken
(so the workers parse the next batch while the caller writes this one, and memory stays flat),
and their results come back in file order.

A worker is ``python -m traingate._ingest.worker`` speaking pickles over its standard input and
output: a fresh interpreter that imports traingate alone (``multiprocessing``'s spawn would run
the caller's main module again in the child), handed the id key and nothing else of the key
ring. A thread per worker feeds its input and another drains its output (frames of
``traingate._pipes`` holding pickles, unpickled only when taken), so that no pipe fills while
this process is writing. If a worker cannot start or fails, the chunks it held and every later
line are parsed here instead. When reading the source fails (bad bytes midway), the lines read
before the failure are handed on first, as if parsed here.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from itertools import chain, islice
from typing import IO

from traingate._ingest.incoming import Declared, Incoming, Rejected, read_chunk, read_numbered
from traingate._keys import ShortHasher
from traingate._pipes import read_frame

__all__ = ["CHUNK", "INLINE", "WORKER_ARGS", "default_workers", "parse_lines"]

INLINE = 20_000  # lines parsed in this process before any worker starts
CHUNK = 2_000  # lines per worker task: enough to amortize a task, small enough to stream
# How a worker is started: this interpreter, running traingate._ingest.worker.
WORKER_ARGS: tuple[str, ...] = ("-m", "traingate._ingest.worker")

Chunk = list[tuple[int, str]]
Parsed = Incoming | Rejected


def default_workers() -> int:
    """Parse workers when none are asked for: a core is left to the process that checks and
    writes, and at most four (beyond that, checking and writing is the bottleneck)."""
    return max(0, min((os.cpu_count() or 1) - 1, 4))


class _Worker:
    """One worker process, with a thread feeding its input and one draining its output, so
    that it parses on while this process is busy writing a batch."""

    def __init__(self, declared: Declared, short_hash: ShortHasher) -> None:
        self._process = subprocess.Popen(
            [sys.executable, *WORKER_ARGS], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._tasks: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._tasks.put((declared, short_hash))
        self._results: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._threads = (
            threading.Thread(target=self._feed, args=(self._process.stdin,), daemon=True),
            threading.Thread(target=self._drain, args=(self._process.stdout,), daemon=True),
        )
        for thread in self._threads:
            thread.start()

    def _feed(self, pipe: IO[bytes]) -> None:
        with contextlib.suppress(OSError), pipe:  # OSError: the worker is gone (see result)
            while (task := self._tasks.get()) is not None:
                pickle.dump(task, pipe, pickle.HIGHEST_PROTOCOL)
                pipe.flush()

    def _drain(self, pipe: IO[bytes]) -> None:
        """Frames as they come (unpickled by the caller, when it needs them); None at the
        end of the output."""
        with contextlib.suppress(OSError), pipe:
            while (frame := read_frame(pipe)) is not None:
                self._results.put(frame)
        self._results.put(None)

    def submit(self, chunk: Chunk) -> None:
        self._tasks.put(chunk)

    def result(self) -> list[Parsed]:
        """The next chunk's results; raises EOFError if the worker died."""
        frame = self._results.get()
        if frame is None:
            raise EOFError("the parse worker ended")
        parsed: list[Parsed] = pickle.loads(frame)
        return parsed

    def stop(self, *, abort: bool) -> None:
        """End the worker: at the end of its input, or at once when ``abort``."""
        if abort:
            self._process.terminate()
        self._tasks.put(None)
        for thread in self._threads:
            thread.join()
        self._process.wait()


def _in_workers(
    source: Iterator[tuple[int, str]],
    *,
    held: Chunk,
    declared: Declared,
    short_hash: ShortHasher,
    workers: int,
    ahead: int,
) -> Iterator[Parsed]:
    """The ``held`` lines (parsed here), then every line of ``source`` (parsed by the
    workers). The workers start, and are handed their first chunks, before the held lines are
    parsed and handed on: the caller writes a batch when it takes the last of them."""
    pool: list[_Worker] = []
    # Chunks in file order, each with the worker parsing it (None: parsed here when taken).
    pending: deque[tuple[_Worker | None, Chunk]] = deque()
    if held:
        pending.append((None, held))
    broken = False
    sent = 0
    try:
        pool.extend(_Worker(declared, short_hash) for _ in range(workers))
    except OSError:  # no process could be started: parse here
        broken = True

    def take() -> list[Parsed]:
        nonlocal broken
        worker, chunk = pending.popleft()
        if worker is not None and not broken:
            try:
                return worker.result()
            except (EOFError, pickle.UnpicklingError):
                broken = True
        return read_chunk(chunk, declared, short_hash)

    try:
        while True:
            try:
                chunk = list(islice(source, CHUNK))
            except Exception:
                while pending:  # what was read before the failure, then the failure
                    yield from take()
                raise
            if not chunk:
                break
            if broken:
                while pending:
                    yield from take()
                yield from read_chunk(chunk, declared, short_hash)
                continue
            worker = pool[sent % len(pool)]
            worker.submit(chunk)
            pending.append((worker, chunk))
            sent += 1
            if len(pending) * CHUNK > ahead:
                yield from take()
        while pending:
            yield from take()
    finally:
        for worker in pool:
            worker.stop(abort=broken or bool(pending))


def parse_lines(
    lines: Iterable[tuple[int, str]],
    *,
    declared: Declared,
    short_hash: ShortHasher,
    workers: int,
    inline: int,
    ahead: int,
) -> Generator[Parsed, None, None]:
    """Every numbered line as an ``Incoming`` or a ``Rejected``, in order: the first
    ``inline`` in this process, the rest in ``workers`` processes (here too when 0), which
    are handed up to ``ahead`` lines beyond the one the caller takes (the caller's batch and
    more, so that they parse the next batch while the caller writes this one).

    The last of the first ``inline`` lines is held back until the workers have started on
    the lines after it (a caller whose batch is ``inline`` lines writes it on taking that
    line: without this the workers would start only after that write)."""
    source = iter(lines)
    if workers < 1:
        for number, text in source:
            yield read_numbered(number, text, declared, short_hash)
        return
    held: Chunk = []
    try:
        for line in islice(source, inline):
            if held:
                yield read_numbered(*held.pop(), declared, short_hash)
            held.append(line)
        following = next(source, None)
    except Exception:
        yield from read_chunk(held, declared, short_hash)  # what was read, then the failure
        raise
    if following is None:  # nothing left for workers
        yield from read_chunk(held, declared, short_hash)
        return
    yield from _in_workers(
        chain([following], source),
        held=held,
        declared=declared,
        short_hash=short_hash,
        workers=workers,
        ahead=ahead,
    )
