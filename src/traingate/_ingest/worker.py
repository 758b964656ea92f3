"""A parse worker: ``python -m traingate._ingest.worker``, started by ``traingate._ingest.parsing``.

It reads pickles from standard input (first the plans and settings, ``incoming.Declared``, and
the ``keys.ShortHasher``, then chunks of numbered lines) and writes to standard output, for
each chunk in order, one frame (``traingate._pipes``) holding the pickled list of what
``incoming.read_chunk`` made of it. It stops at the end of its input; SIGINT is ignored and
anything else that would print goes to standard error (``pipes.child_output``). When the
ingesting process is gone (killed: its end of either pipe closed), the worker ends at once and
silently: its results have nowhere to go.
"""

from __future__ import annotations

import os
import pickle
import sys

from traingate._ingest.incoming import read_chunk
from traingate._pipes import child_output, write_frame


def main() -> None:
    results = child_output()
    tasks = sys.stdin.buffer
    try:
        declared, short_hash = pickle.load(tasks)
        while True:
            try:
                chunk = pickle.load(tasks)
            except EOFError:
                return
            frame = pickle.dumps(read_chunk(chunk, declared, short_hash), pickle.HIGHEST_PROTOCOL)
            write_frame(results, frame)
    except (BrokenPipeError, ConnectionResetError, EOFError, pickle.UnpicklingError):
        # The ingesting process died mid-frame: nothing to report to, nobody to read a
        # traceback. Leave without flushing (a flush would raise BrokenPipeError again).
        os._exit(0)


if __name__ == "__main__":
    main()
