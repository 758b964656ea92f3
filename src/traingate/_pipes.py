"""What traingate's helper processes share: frames over a pipe, and a child's own standard
output.

Two kinds of child process speak over their standard input and output: parse workers
(``_ingest/worker.py``) and the SQLite snapshot (``_store/reader_process.py``). Each answers
in frames (``FRAME_HEADER`` bytes of big-endian length, then the payload), so that the parent
can take a whole answer off the pipe before decoding it, and each keeps its standard output
for frames alone (``child_output``).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import IO, Any

__all__ = ["FRAME_HEADER", "child_output", "read_frame", "write_frame"]

FRAME_HEADER = 8


def write_frame(out: IO[bytes], *parts: Any) -> None:
    """One frame of ``parts`` (bytes-like) concatenated, flushed."""
    out.write(sum(len(part) for part in parts).to_bytes(FRAME_HEADER, "big"))
    for part in parts:
        out.write(part)
    out.flush()


def read_frame(pipe: IO[bytes]) -> bytes | None:
    """The next frame's payload; None at the end of the pipe or of a truncated frame."""
    head = pipe.read(FRAME_HEADER)
    if len(head) < FRAME_HEADER:
        return None
    size = int.from_bytes(head, "big")
    payload = pipe.read(size)
    return payload if len(payload) == size else None


def child_output() -> IO[bytes]:
    """In a child process: a private handle on its standard output, for frames, with file
    descriptor 1 pointed at standard error (so that anything printed cannot corrupt a frame).
    SIGINT is ignored: the parent decides when its children stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return out
