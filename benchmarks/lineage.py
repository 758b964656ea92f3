"""Lineage lookup benchmark: one build's lineage file of N items (10 million by default), the
time `traingate lineage` and the privacy answer spend on it, against a full scan of the same
file in the same run.

    python benchmarks/lineage.py [--items 10000000] [--lookups 200] [--workdir benchmarks/out]

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

from _phases import rss_mb, run_phase

_CHUNK = 100_000


def _keys(rng: random.Random, n: int) -> list[str]:
    data = rng.randbytes(32 * n).hex()
    return [data[i : i + 64] for i in range(0, 64 * n, 64)]


def write(items: int, path: Path, seed: int) -> None:
    import pyarrow as pa

    from traingate.build.lineage_file import LineageSpool, write_lineage
    from traingate.build.records import LineageItem

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


def lookup(path: Path, lookups: int, seed: int) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from traingate.build.lineage_file import find_items

    rng = random.Random(seed)
    present = _present(path, lookups + 1_000, seed)
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
        keys = pq.read_table(path, columns=["item_key"])["item_key"]
        rows = pc.indices_nonzero(pc.equal(keys, key))
        return len(pq.read_table(path).take(rows)) if len(rows) else 0

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
                "row_groups": pq.ParquetFile(path).num_row_groups,
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
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        kind, path = args.phase[0], Path(args.phase[1])
        if kind == "write":
            write(args.items, path, args.seed)
        else:
            lookup(path, args.lookups, args.seed)
        return
    directory = args.workdir / f"lineage-{args.items}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    path = directory / "build-bench.parquet"
    common = ["--items", str(args.items), "--lookups", str(args.lookups)]
    common += ["--seed", str(args.seed)]
    wrote = run_phase(__file__, [*common, "--phase", "write", str(path)])
    looked = run_phase(__file__, [*common, "--phase", "lookup", str(path)])
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    items = wrote["items"]
    rate = items / (wrote["spool_s"] + wrote["write_s"])
    print(f"lineage of {items:,} items: {wrote['bytes'] / 2**20:,.0f} MiB, ", end="")
    print(f"{looked['row_groups']} row groups")
    print(
        f"write: spool {wrote['spool_s']:.1f} s + sort and write {wrote['write_s']:.1f} s"
        f" = {rate:,.0f} items/s; peak RSS {wrote['rss_mb']:.0f} MiB"
        " (making the synthetic LineageItem objects not counted)"
    )
    print("| lookup | median | p99 | max |")
    print("|---|---|---|---|")
    for name, label in (
        ("hit", "one key the build holds"),
        ("miss", "one key it does not hold"),
        ("keys_12", "12 keys (an average account)"),
        ("keys_1000", "1,000 keys (a heavy account)"),
        ("scan", "baseline: one key by a full scan"),
    ):
        row = looked[name]
        print(
            f"| {label} | {row['median_ms']:.1f} ms | {row['p99_ms']:.1f} ms"
            f" | {row['max_ms']:.1f} ms |"
        )
    ratio = looked["scan"]["median_ms"] / looked["hit"]["median_ms"]
    print(f"full scan / lookup (medians): {ratio:,.0f}x", end="; ")
    print(f"lookup peak RSS {looked['rss_mb']:.0f} MiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
