"""Part writing benchmark: the same records written as parts by ``PartWriter`` on 1, 2 and 4
threads (``threads``; the DuckDB engine's ``write_threads``), both formats, ``--rounds``
rounds with the thread counts interleaved, each in this process (the rows are made once).

    python benchmarks/writer.py [--records 60000] [--rows-per-file 4096] [--rounds 3]

The records are conversation records (``RECORD_SCHEMA``) of 2 to 14 messages of 20 to 200
pseudo-random words each, about the sizes ``benchmarks/build.py`` generates. Prints, per
format and thread count, the median wall seconds, records/s, this process's CPU seconds
(every thread) and the ratio to one thread, checks that every count wrote the same bytes, and
prints the load average: on a machine shared with others the wall ratio is only an upper
bound of what the threads give.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from ingest import WORDS  # benchmarks/ingest.py's word list

from traingate._datasets.records import RECORD_SCHEMA
from traingate._datasets.writer import BackgroundWriter, Format, PartWriter


def records(count: int, seed: int = 7) -> list[pa.RecordBatch]:
    """``count`` conversation records in batches of about 5,000 (as the engine hands them)."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(count):
        messages = [
            {
                "role": "user" if m % 2 == 0 else "assistant",
                "content": " ".join(rng.choices(WORDS, k=rng.randint(20, 200))),
                "attachments": [],
            }
            for m in range(rng.randint(2, 14))
        ]
        rows.append(
            {
                "record_id": hashlib.sha256(str(i).encode()).hexdigest(),
                "kind": "conversation",
                "basis": "opt_in",
                "date": "2025-01-01",
                "messages": messages,
                "custom_style": None,
                "preferences": None,
                "rating": None,
                "comment": None,
                "categories": None,
                "rated_message_index": None,
            }
        )
    table = pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)
    return table.to_batches(max_chunksize=5_000)


def write(
    batches: list[pa.RecordBatch], directory: Path, *, fmt: Format, rows: int, threads: int
) -> tuple[float, float, list[str]]:
    """Wall and CPU seconds of writing ``batches`` as the builder does, and the parts' hashes."""
    directory.mkdir(parents=True)
    began, cpu = time.perf_counter(), time.process_time()
    writer = BackgroundWriter(
        PartWriter(directory, format=fmt, rows_per_file=rows, threads=threads)
    )
    for batch in batches:
        writer.write(batch)
    files = writer.close()
    return time.perf_counter() - began, time.process_time() - cpu, [f.sha256 for f in files]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--rows-per-file", type=int, default=4_096)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    batches = records(args.records)
    load_before = os.getloadavg()
    print("| format | threads | wall s (median) | records/s | CPU s | vs 1 thread |")
    print("|---|---|---|---|---|---|")
    formats: tuple[Format, ...] = ("parquet", "jsonl")
    for fmt in formats:
        wall: dict[int, list[float]] = {n: [] for n in args.threads}
        cpu: dict[int, list[float]] = {n: [] for n in args.threads}
        hashes: dict[int, list[str]] = {}
        for round_ in range(args.rounds):
            order = args.threads if round_ % 2 == 0 else args.threads[::-1]
            for threads in order:
                root = Path(tempfile.mkdtemp(prefix="traingate-writer-"))
                try:
                    seconds, used, hashes[threads] = write(
                        batches, root / "data", fmt=fmt, rows=args.rows_per_file, threads=threads
                    )
                finally:
                    shutil.rmtree(root)
                wall[threads].append(seconds)
                cpu[threads].append(used)
        assert len({tuple(h) for h in hashes.values()}) == 1, "the thread counts wrote other bytes"
        one = statistics.median(wall[args.threads[0]])
        for threads in args.threads:
            median = statistics.median(wall[threads])
            print(
                f"| {fmt} | {threads} | {median:.2f} | {args.records / median:,.0f} |"
                f" {statistics.median(cpu[threads]):.2f} | {one / median:.2f}x |"
            )
    print(
        f"{args.records:,} records, parts of {args.rows_per_file:,}, {args.rounds} rounds,"
        f" {os.cpu_count()} cores; load average before "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + ", after "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )


if __name__ == "__main__":
    main()
