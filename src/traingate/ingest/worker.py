"""A parse worker: ``python -m traingate.ingest.worker``, started by ``traingate.ingest.parsing``.

It reads pickles from standard input (first the plans and the ``keys.ShortHasher``, then chunks
of numbered lines) and writes to standard output, for each chunk in order, the pickled list of
what ``incoming.read_chunk`` made of it, after its length in ``FRAME_HEADER`` bytes. It stops at
the end of its input. SIGINT is ignored: the process that started it decides when it stops.
Anything else that would print is sent to standard error, so that standard output carries
nothing but results.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys

from traingate.ingest.incoming import read_chunk
from traingate.ingest.parsing import FRAME_HEADER


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    results = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    tasks = sys.stdin.buffer
    plans, short_hash = pickle.load(tasks)
    while True:
        try:
            chunk = pickle.load(tasks)
        except EOFError:
            return
        frame = pickle.dumps(read_chunk(chunk, plans, short_hash), pickle.HIGHEST_PROTOCOL)
        results.write(len(frame).to_bytes(FRAME_HEADER, "big"))
        results.write(frame)
        results.flush()


if __name__ == "__main__":
    main()
