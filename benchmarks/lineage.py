"""Lineage lookup benchmark: one build's lineage of N items (10 million by default), as one
file and as a directory of sorted files (a Spark build's), the time `traingate lineage` and
the privacy answer spend on it, against a full scan of the same file in the same run.

    python benchmarks/lineage.py [--items 10000000] [--lookups 200] [--workdir benchmarks/out]
                                 [--layout both|file|directory]

- write:   N synthetic items (random 32-byte keyed hashes, one item in ten sharing its
           conversation's key with another record, as a conversation under two bases) go
           through the builder's path: ``LineageSpool.add`` of ``LineageItem`` objects, then
           ``write_lineage`` (sorted, row groups of ``ROW_GROUP``); in its own process, so
           peak RSS is its own;
- lookup:  ``find_items`` for one key, as ``lineage --conversation/--receipt`` does per build
           (open the file, read its footer, bisect the row groups' key ranges, read one):
           ``--lookups`` keys the file holds and as many it does not; then for 12 keys (an
           average account's conversations at 100M accounts and 1.25B conversations) and for
           1,000 (a heavy account), as the privacy answer does;
- directory: the same items as a Spark build's lineage directory: ranges of ``FILE_ROWS``
           items, shuffled, each sorted and written by ``write_run`` as a task does (its rate
           is one core's), plus one item in a hundred again with another record id in the
           builder's file, whose range overlaps every other (``write_directory``); then the
           same lookups through its index;
- baseline: the same one-key lookup by a full scan: read the file's item keys, filter, read
           the matching rows (what a reader without the sort and the statistics does).

Prints the write rate, the file's size, peak RSS, lookup times (median, p99, max) and the
ratio of the full scan to the median lookup.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import cast

from _phases import rss_mb, run_phase

_CHUNK = 100_000


def _keys(rng: random.Random, n: int) -> list[str]:
    data = rng.randbytes(32 * n).hex()
    return [data[i : i + 64] for i in range(0, 64 * n, 64)]


def write(items: int, path: Path, seed: int) -> None:
    import pyarrow as pa

    from traingate._datasets.lineage_file import LineageSpool, write_lineage
    from traingate._datasets.records import LineageItem

    pa.array(["warm"])  # pyarrow's first conversion of Python objects imports pandas (~1 s)
    rng = random.Random(seed)
    scratch = path.parent / "spool"
    started = time.perf_counter()
    spool = LineageSpool(scratch)
    made = 0.0
    for start in range(0, items, _CHUNK):
        n = min(_CHUNK, items - start)
        began = time.perf_counter()
        keys, records = _keys(rng, n), _keys(rng, n)
        for i in range(0, n - 1, 10):
            keys[i + 1] = keys[i]  # one conversation, two records (two bases)
        batch = [
            LineageItem(item_key=k, kind="conversation", record_id=r, messages=1 + i % 9)
            for i, (k, r) in enumerate(zip(keys, records, strict=True))
        ]
        made += time.perf_counter() - began
        spool.add(batch)
    spooled = time.perf_counter()
    digest = write_lineage(spool, path=path, build_id="build-bench")
    done = time.perf_counter()
    scratch.unlink()
    result = {
        "items": items,
        "spool_s": spooled - started - made,
        "write_s": done - spooled,
        "bytes": path.stat().st_size,
        "sha256": digest,
        "rss_mb": rss_mb(),
    }
    print(json.dumps(result))


def write_runs(single: Path, directory: Path, seed: int) -> None:
    """The items of the lineage file ``single`` as a lineage directory (see the docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from traingate._datasets.engines.spark_lineage import FILE_ROWS
    from traingate._datasets.lineage_file import (
        LineageRun,
        LineageSpool,
        write_directory,
        write_run,
    )
    from traingate._datasets.records import LineageItem

    rng = random.Random(seed)
    directory.mkdir()
    parquet = pq.ParquetFile(single)
    runs: list[LineageRun] = []
    held: list[pa.Table] = []
    rows, task_s = 0, 0.0
    extra: list[LineageItem] = []

    def flush() -> None:
        nonlocal held, rows, task_s
        table = pa.concat_tables(held)
        table = table.take(rng.sample(range(table.num_rows), table.num_rows))  # as shuffled
        began = time.perf_counter()
        path = directory / f"run-{len(runs):05d}.parquet"
        run = write_run(table, path=path, build_id="build-bench")
        task_s += time.perf_counter() - began
        assert run is not None
        runs.append(run)
        held, rows = [], 0

    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group)
        for key in table["item_key"].to_pylist()[::100]:
            extra.append(
                LineageItem(
                    item_key=cast(bytes, key).hex() + "00" * 16,
                    kind="feedback",
                    record_id=rng.randbytes(32).hex(),
                    messages=1,
                )
            )
        held.append(table)
        rows += table.num_rows
        if rows >= FILE_ROWS:
            flush()
    if rows:
        flush()
    spool = LineageSpool(directory.parent / "extra.spool")
    spool.add(extra)
    began = time.perf_counter()
    digest = write_directory(spool, directory=directory, build_id="build-bench", runs=runs)
    builder_s = time.perf_counter() - began
    spool.path.unlink()
    print(
        json.dumps(
            {
                "files": len(runs) + 1,
                "task_items": sum(run.rows for run in runs),
                "task_s": task_s,
                "builder_items": len(extra),
                "builder_s": builder_s,
                "sha256": digest,
                "rss_mb": rss_mb(),
            }
        )
    )


def _present(path: Path, count: int, seed: int) -> list[bytes]:
    """``count`` item keys the file holds, from row groups spread over it."""
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    parquet = pq.ParquetFile(path)
    groups = sorted(rng.sample(range(parquet.num_row_groups), min(20, parquet.num_row_groups)))
    column = parquet.read_row_groups(groups, columns=["item_key"])["item_key"].to_pylist()
    return [bytes(k) for k in rng.sample(column, count)]


def _timed(call: object, *args: object, **kwargs: object) -> tuple[float, object]:
    began = time.perf_counter()
    result = call(*args, **kwargs)  # type: ignore[operator]
    return time.perf_counter() - began, result


def lookup(path: Path, single: Path, lookups: int, seed: int) -> None:
    """Lookups in ``path`` (a lineage file or directory) of keys the file ``single`` holds."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from traingate._datasets.lineage_file import find_items

    rng = random.Random(seed)
    present = _present(single, lookups + 1_000, seed)
    absent = [rng.randbytes(16) for _ in range(lookups)]

    def one(key: bytes) -> float:
        seconds, found = _timed(find_items, path, build_id="build-bench", item_keys=[key])
        assert (key in absent) or found, key.hex()
        return seconds

    find_items(path, build_id="build-bench", item_keys=[present[0]])  # imports, page cache
    hits = [one(key) for key in present[:lookups]]
    misses = [one(key) for key in absent]
    twelve = [
        _timed(find_items, path, build_id="build-bench", item_keys=present[i : i + 12])[0]
        for i in range(0, 240, 12)
    ]
    thousand = [
        _timed(find_items, path, build_id="build-bench", item_keys=present[-1_000:])[0]
        for _ in range(3)
    ]

    def scan(key: bytes) -> int:
        keys = pq.read_table(single, columns=["item_key"])["item_key"]
        rows = pc.indices_nonzero(pc.equal(keys, key))
        return len(pq.read_table(single).take(rows)) if len(rows) else 0

    scans = [_timed(scan, key)[0] for key in present[:3]]

    def summary(times: list[float]) -> dict[str, float]:
        ordered = sorted(times)
        return {
            "median_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            "max_ms": 1000 * ordered[-1],
        }

    print(
        json.dumps(
            {
                "hit": summary(hits),
                "miss": summary(misses),
                "keys_12": summary(twelve),
                "keys_1000": summary(thousand),
                "scan": summary(scans),
                "row_groups": pq.ParquetFile(single).num_row_groups,
                "rss_mb": rss_mb(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the lineage file")
    parser.add_argument("--layout", choices=("both", "file", "directory"), default="both")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        kind, path = args.phase[0], Path(args.phase[1])
        if kind == "write":
            write(args.items, path, args.seed)
        elif kind == "runs":
            write_runs(path, Path(args.phase[2]), args.seed)
        else:
            lookup(Path(args.phase[2]), path, args.lookups, args.seed)
        return
    directory = args.workdir / f"lineage-{args.items}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    path = directory / "build-bench.parquet"
    common = ["--items", str(args.items), "--lookups", str(args.lookups)]
    common += ["--seed", str(args.seed)]
    wrote = run_phase(__file__, [*common, "--phase", "write", str(path)])
    layouts = {"file": path}
    if args.layout != "file":
        runs = run_phase(__file__, [*common, "--phase", "runs", str(path), str(directory / "dir")])
        layouts["directory"] = directory / "dir"
        if args.layout == "directory":
            del layouts["file"]
    looked = {
        name: run_phase(__file__, [*common, "--phase", "lookup", str(path), str(where)])
        for name, where in layouts.items()
    }
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    items = wrote["items"]
    rate = items / (wrote["spool_s"] + wrote["write_s"])
    print(f"lineage of {items:,} items: {wrote['bytes'] / 2**20:,.0f} MiB, ", end="")
    print(f"{next(iter(looked.values()))['row_groups']} row groups in one file")
    print(
        f"write: spool {wrote['spool_s']:.1f} s + sort and write {wrote['write_s']:.1f} s"
        f" = {rate:,.0f} items/s; peak RSS {wrote['rss_mb']:.0f} MiB"
        " (making the synthetic LineageItem objects not counted)"
    )
    if "directory" in layouts:
        print(
            f"directory: {runs['files']} files; tasks sorted and wrote {runs['task_items']:,}"
            f" items in {runs['task_s']:.1f} s ({runs['task_items'] / runs['task_s']:,.0f}"
            f" items/s on one core); the builder's file of {runs['builder_items']:,} items and"
            f" the index in {runs['builder_s']:.1f} s"
        )
    print("| layout | lookup | median | p99 | max |")
    print("|---|---|---|---|---|")
    for layout, found in looked.items():
        for name, label in (
            ("hit", "one key the build holds"),
            ("miss", "one key it does not hold"),
            ("keys_12", "12 keys (an average account)"),
            ("keys_1000", "1,000 keys (a heavy account)"),
            ("scan", "baseline: one key by a full scan of the file"),
        ):
            row = found[name]
            print(
                f"| {layout} | {label} | {row['median_ms']:.1f} ms | {row['p99_ms']:.1f} ms"
                f" | {row['max_ms']:.1f} ms |"
            )
    for layout, found in looked.items():
        ratio = found["scan"]["median_ms"] / found["hit"]["median_ms"]
        print(f"{layout}: full scan / lookup (medians): {ratio:,.0f}x", end="; ")
        print(f"lookup peak RSS {found['rss_mb']:.0f} MiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
