"""Feedback on lake messages: what a report costs when ingest reads its conversation from the
lake at receipt, against the same report with the messages in the store, in one run.

    python benchmarks/feedback_lake.py [--conversations 100000] [--days 365] [--reports 200]
                                       [--backends sqlite,postgresql]

Generates N conversations of 8 messages (~500 characters each) over ``--days`` days, 2 per
account, each started by its ``conversation.updated``. Then, for each backend:

- store: a store holding accounts, conversations and every message; no lake;
- lake: a store holding accounts and conversations only, and ``TRAINGATE_LAKE`` naming a lake
  of every message (``write_lake``: one file per date partition, as ``traingate lake export``
  writes at this size).

``--reports`` conversations get one report each (rating their last message, 0-3 days after
it), ingested one per call as ``POST /v1/feedback`` does; the two stores get the same reports
and must vault the same snapshots (checked). Prints the time per report (mean, p50, p99) for
both, the ratio, and the lake read alone (``ParquetLake.conversation_messages``), on the lake
as written (time order: a day is one row group at this size) and on the same rows sorted by
conversation within each day in row groups of ``--group`` rows (what a writer can do to let
the statistics skip most of a large day). ``--read-only`` measures the reads alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ingest import _fresh_db_url  # benchmarks/ingest.py: a fresh store of a backend

from traingate._core.timeutil import DAY, format_instant, parse_instant
from traingate._datasets.lake import LAKE_ATTACHMENT, LAKE_SCHEMA, ParquetLake, write_lake
from traingate._facade import Traingate
from traingate._settings import Settings

PG_URL = os.environ.get("TRAINGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
START = parse_instant("2025-01-01T00:00:00Z")
WORDS = [
    "the",
    "model",
    "answer",
    "question",
    "please",
    "explain",
    "how",
    "why",
    "data",
    "privacy",
    "training",
    "code",
]
PER_CONVERSATION = 8


def _text(rng: random.Random) -> str:
    """~500 characters of random words: about as compressible as the benchmark lake of
    docs/scale.md (~120-150 bytes a message in zstd Parquet)."""
    return " ".join(rng.choices(WORDS, k=rng.randint(60, 110)))


def conversations(n: int, days: int, seed: int = 11) -> Iterator[tuple[str, str, int, list[int]]]:
    """(conversation id, account id, start, message times) of each conversation."""
    rng = random.Random(seed)
    for i in range(n):
        start = START + rng.randrange(days * DAY)
        times = [start + 1_000_000 * (30 + 40 * k + rng.randrange(30)) for k in range(8)]
        yield f"c{i:07d}", f"a{i // 2:07d}", start, times


def events(n: int, days: int, *, messages: bool) -> Iterator[str]:
    rng = random.Random(5)
    for conv, account, start, times in conversations(n, days):
        if conv.endswith(("0", "2", "4", "6", "8")):
            yield json.dumps(
                {
                    "type": "account.updated",
                    "event_id": f"acct-{account}",
                    "at": format_instant(START - DAY),
                    "account_id": account,
                    "email": f"{account}@example.com",
                    "plan": "free",
                    "organization_id": None,
                }
            )
        yield json.dumps(
            {
                "type": "conversation.updated",
                "event_id": f"conv-{conv}",
                "at": format_instant(start),
                "conversation_id": conv,
                "account_id": account,
                "title": "t",
            }
        )
        if messages:
            for k, at in enumerate(times):
                yield json.dumps(_message(conv, account, k, at, rng))


def _message(conv: str, account: str, k: int, at: int, rng: random.Random) -> dict[str, Any]:
    return {
        "type": "message.created",
        "event_id": f"msg-{conv}-{k}",
        "at": format_instant(at),
        "conversation_id": conv,
        "message_id": f"{conv}-m{k}",
        "account_id": account,
        "role": "user" if k % 2 == 0 else "assistant",
        "content": _text(rng),
        "attachments": [],
    }


def lake_batches(n: int, days: int) -> Iterator[pa.RecordBatch]:
    rng = random.Random(5)
    rows: list[dict[str, Any]] = []
    for conv, account, _, times in conversations(n, days):
        for k, at in enumerate(times):
            event = _message(conv, account, k, at, rng)
            rows.append(
                {
                    "conversation_id": conv,
                    "message_id": event["message_id"],
                    "account_id": account,
                    "role": event["role"],
                    "at": at,
                    "seq": len(rows),
                    "content": event["content"],
                    "attachments": [],
                }
            )
    rows.sort(key=lambda r: r["at"])  # a lake in time order, as the exporter writes it
    for start in range(0, len(rows), 100_000):
        chunk = rows[start : start + 100_000]
        arrays = [
            pa.array([r["at"] for r in chunk], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
            if name == "at"
            else pa.array([r[name] for r in chunk], pa.list_(LAKE_ATTACHMENT))
            if name == "attachments"
            else pa.array([r[name] for r in chunk], LAKE_SCHEMA.field(name).type)
            for name in LAKE_SCHEMA.names
        ]
        yield pa.RecordBatch.from_arrays(arrays, schema=LAKE_SCHEMA)


def reports(n: int, days: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(3)
    chosen = set(rng.sample(range(n), count))
    found = []
    for i, (conv, account, _, times) in enumerate(conversations(n, days)):
        if i in chosen:
            at = times[-1] + rng.randrange(3 * DAY)
            found.append(
                {
                    "type": "feedback.submitted",
                    "event_id": f"fb-{conv}",
                    "at": format_instant(at),
                    "feedback_id": f"fb-{conv}",
                    "account_id": account,
                    "conversation_id": conv,
                    "message_id": f"{conv}-m7",
                    "rating": "down",
                    "comment": None,
                    "categories": [],
                }
            )
    return found


def _drop(url: str) -> None:
    if "search_path" in url:
        import psycopg

        schema = url.rsplit("%3D", 1)[1]
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def timed_reports(tg: Traingate, items: list[dict[str, Any]]) -> tuple[list[float], list[str]]:
    """Seconds per report (one ingest call each) and the vaulted snapshots."""
    seconds, snapshots = [], []
    for report in items:
        began = time.perf_counter()
        summary = tg.events.ingest([json.dumps(report)], workers=0)
        seconds.append(time.perf_counter() - began)
        if summary.rejected or not summary.receipts:
            raise SystemExit(f"report rejected: {summary.errors}")
        snapshots.append(tg.vault.show(summary.receipts[0][2])[1].to_json().decode())
    return seconds, snapshots


def _summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "mean_ms": 1000 * statistics.fmean(ordered),
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def run(backend: str, args: argparse.Namespace, workdir: Path, lake: Path) -> dict[str, Any]:
    n, days = args.conversations, args.days
    items = reports(n, days, args.reports)
    results: dict[str, Any] = {"backend": backend}
    for mode in ("store", "lake"):
        url = _fresh_db_url(backend, workdir, f"fb_{backend}_{mode}")
        settings = Settings(
            db_url=url,
            key_file=workdir / "keys.json",
            lake=lake if mode == "lake" else None,
        )
        try:
            with Traingate.open(settings) as tg:
                began = time.perf_counter()
                summary = tg.events.ingest(events(n, days, messages=mode == "store"))
                results[f"{mode}_setup_s"] = time.perf_counter() - began
                assert summary.rejected == 0, summary.errors[:3]
                seconds, snapshots = timed_reports(tg, items)
                results[mode] = _summary(seconds)
                results[f"{mode}_snapshots"] = snapshots
        finally:
            _drop(url)
    if results.pop("store_snapshots") != results.pop("lake_snapshots"):
        raise SystemExit("the lake's snapshots differ from the store's")
    results["ratio"] = results["lake"]["mean_ms"] / results["store"]["mean_ms"]
    return results


def lake_reads(lake: Path, items: list[dict[str, Any]]) -> dict[str, float]:
    reader = ParquetLake(root=lake)
    seconds = []
    for report in items:
        began = time.perf_counter()
        at = parse_instant(report["at"])
        rows = reader.conversation_messages(
            conversation_id=report["conversation_id"], since=at - 4 * DAY, until=at
        )
        seconds.append(time.perf_counter() - began)
        assert len(rows) == PER_CONVERSATION, (report["conversation_id"], len(rows))
    return _summary(seconds)


def sorted_copy(lake: Path, out: Path, *, group: int) -> None:
    """The lake's rows, each day sorted by conversation, in row groups of ``group`` rows."""
    for day in sorted(lake.iterdir()):
        table = pq.read_table(day)  # one day: small
        table = table.select(LAKE_SCHEMA.names)
        order = pc.sort_indices(table, [("conversation_id", "ascending"), ("at", "ascending")])
        (out / day.name).mkdir(parents=True)
        pq.write_table(
            table.take(order),
            out / day.name / "part-0.parquet",
            row_group_size=group,
            compression="zstd",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--group", type=int, default=8192)
    parser.add_argument("--read-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        lake = workdir / "lake"
        began = time.perf_counter()
        written = write_lake(lake_batches(args.conversations, args.days), lake)
        size = sum(p.stat().st_size for p in lake.rglob("*.parquet"))
        print(
            f"lake: {written.messages:,} messages, {written.partitions} partitions, "
            f"{written.files} files, {size / 1e6:.1f} MB, written in "
            f"{time.perf_counter() - began:.1f} s ({args.conversations:,} conversations over "
            f"{args.days} days: ~{written.messages // max(written.partitions, 1):,} a day)"
        )
        sorted_lake = workdir / "lake-sorted"
        sorted_copy(lake, sorted_lake, group=args.group)
        items = reports(args.conversations, args.days, args.reports)
        for name, root in (("as written", lake), (f"sorted, groups of {args.group}", sorted_lake)):
            read = lake_reads(root, items)
            print(
                f"lake read alone (ParquetLake.conversation_messages, 5 days), {name}: mean "
                f"{read['mean_ms']:.1f} ms, p50 {read['p50_ms']:.1f} ms, "
                f"p99 {read['p99_ms']:.1f} ms"
            )
        if args.read_only:
            return
        print("| backend | messages in | per report: mean | p50 | p99 | setup |")
        print("|---|---|---|---|---|---|")
        for backend in args.backends.split(","):
            result = run(backend, args, workdir, lake)
            for mode in ("store", "lake"):
                row = result[mode]
                print(
                    f"| {backend} | {mode} | {row['mean_ms']:.1f} ms | {row['p50_ms']:.1f} ms"
                    f" | {row['p99_ms']:.1f} ms | {result[f'{mode}_setup_s']:.0f} s |"
                )
            print(f"| {backend} | ratio lake/store (mean) | {result['ratio']:.2f}x | | | |")


if __name__ == "__main__":
    main()
