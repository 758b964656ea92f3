"""Incoming benchmark: what one parsed event costs as an ``Incoming``
(``traingate._ingest.incoming``), against a plain tuple of the same values, in the same run.

    python benchmarks/incoming.py [--events 100000] [--rounds 7]

The events are the first ``--events`` of ``benchmarks/ingest.py``'s file (mostly messages, with
accounts, consent, conversation settings, feedback and flags), parsed and hashed once. Then, in
this process, ``--rounds`` times each:

- build: each event made into its ``Incoming`` from the parsed pydantic event (what a parse
  worker does after validating a line);
- dumps: the list pickled (a parse worker, per chunk);
- loads: the list unpickled (the ingesting process, for every event a worker parsed);
- the same dumps and loads for plain tuples of the same values (the baseline);
- both loads again with the cyclic garbage collector off: a plain tuple of strings, numbers and
  bytes is untracked by the collector, an instance of a class (a dataclass, a tuple subclass)
  is not, so with 100,000 of them alive much of what loads costs is the collector's passes.

Prints the median CPU time of this process (``time.process_time``) per event in µs, and the load
average: on a shared machine compare figures of one run, or the ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import statistics
import time
from collections.abc import Callable
from typing import Any

from ingest import generate  # benchmarks/ingest.py's events

from traingate._core.events import parse_line
from traingate._ingest import incoming
from traingate._keys import ShortHasher

PLANS = {"free": "consumer", "pro": "consumer", "max": "consumer", "team": "commercial"}


def _cpu(work: Callable[[], object], rounds: int, count: int, *, collect: bool = True) -> float:
    """Median CPU µs per item of ``work`` over ``rounds`` runs, with the cyclic garbage
    collector running or not (``collect``)."""
    spent = []
    for _ in range(rounds):
        gc.collect()
        if not collect:
            gc.disable()
        try:
            started = time.process_time()
            work()
            spent.append(time.process_time() - started)
        finally:
            gc.enable()
    return statistics.median(spent) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    short_hash = ShortHasher(b"k" * 32)
    parsed = []
    for number, event in enumerate(generate(args.events), start=1):
        if number > args.events:
            break
        found = parse_line(json.dumps(event), plans=PLANS, line=number)
        head = (
            number,
            found.event.event_id,
            found.event.at,
            short_hash("event", found.event.event_id),
            short_hash("body", found.body),
        )
        parsed.append((found.event, head))
    build = incoming._incoming  # the one place an Incoming is made from its event
    items: list[Any] = [build(event, head) for event, head in parsed]
    plain = [tuple(getattr(item, name) for name in item.__match_args__) for item in items]
    data = pickle.dumps(items, pickle.HIGHEST_PROTOCOL)
    plain_data = pickle.dumps(plain, pickle.HIGHEST_PROTOCOL)
    assert pickle.loads(data) == items
    count, rounds = len(items), args.rounds
    kinds = sorted({type(item).__name__ for item in items})
    print(f"{count:,} events ({', '.join(kinds)}), {rounds} rounds, median CPU µs per event")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    figures = {
        "build": _cpu(lambda: [build(event, head) for event, head in parsed], rounds, count),
        "dumps": _cpu(lambda: pickle.dumps(items, pickle.HIGHEST_PROTOCOL), rounds, count),
        "loads": _cpu(lambda: pickle.loads(data), rounds, count),
        "tuple dumps": _cpu(lambda: pickle.dumps(plain, pickle.HIGHEST_PROTOCOL), rounds, count),
        "tuple loads": _cpu(lambda: pickle.loads(plain_data), rounds, count),
        "loads, no gc": _cpu(lambda: pickle.loads(data), rounds, count, collect=False),
        "tuple, no gc": _cpu(lambda: pickle.loads(plain_data), rounds, count, collect=False),
    }
    for name, micros in figures.items():
        print(f"{name:<13} {micros:6.2f} µs")
    print(f"loads / tuple loads: {figures['loads'] / figures['tuple loads']:.2f}")
    size, plain_size = len(data) / count, len(plain_data) / count
    print(f"pickled: {size:.0f} bytes per event ({plain_size:.0f} as tuples)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
