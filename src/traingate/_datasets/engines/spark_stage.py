"""The Spark engine's inputs from the store (its ledgers, the vault's rows), staged from the
build's read snapshot as Parquet.

On PostgreSQL the streams run in Spark tasks, not in the driver: the driver counts each
table's heap blocks and exports its read snapshot (``StoreReader.export_snapshot``), and each
task opens a connection of its own that imports it and copies one range of a table's blocks
(``_store/export.stage_stream``, a TID Range Scan), so every task reads the very rows the
driver's snapshot holds, and the rows are parsed by as many processes as there are streams.
In the driver, streams are threads of one process: psycopg hands ``COPY`` over a row at a
time holding the GIL (benchmarks/stage.py), so they do not add up, and the driver's work
would grow with the ledgers. The streams of a table read its blocks once together, so they
cost the server one scan of it, however many (docs/scale.md). On SQLite the store is one
file of one machine, whose snapshot one process holds (``_store/reader_process.py``): staged by the
driver, one file a ledger.

The task plan carries the store's URL (its credentials included) to the executors, as it
carries the signing key: a cluster that builds reads the store.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from traingate._core.policy.compile import Ledger
from traingate._datasets.engines.spark_worker import task
from traingate._store.export import (
    BlockRange,
    StoreReader,
    block_ranges,
    stage_parquet,
    stage_stream,
    table_blocks,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["StagedQuery", "stage_ledgers", "stage_queries"]


@dataclass(frozen=True, slots=True)
class _Stream:
    """One range of one table's blocks (None: the whole table): what a task copies."""

    sql: str
    params: tuple[Any, ...]
    schema: pa.Schema
    blocks: BlockRange | None
    path: str


@task
def _copy(stream: _Stream, *, url: str, snapshot: str) -> None:
    stage_stream(
        url,
        snapshot,
        stream.sql,
        stream.params,
        schema=stream.schema,
        blocks=stream.blocks,
        path=Path(stream.path),
    )


@dataclass(frozen=True, slots=True)
class StagedQuery:
    """A query of the store's snapshot staged as the Parquet files of directory ``name``;
    ``table`` is the one table it reads from (``FROM <table>``, once), whose blocks the
    streams split (``_store/export.BlockRange``)."""

    name: str
    sql: str
    params: tuple[Any, ...]
    schema: pa.Schema
    table: str


def stage_queries(
    spark: SparkSession,
    source: StoreReader,
    queries: Sequence[StagedQuery],
    *,
    root: Path,
    streams: int,
) -> dict[str, Path]:
    """Every query's rows as Parquet files of the directory ``root / name`` (``root`` must
    be writable by every executor: the build's scratch directory); returns the directories
    by name. On PostgreSQL ``streams`` Spark tasks a query, each a range of its table's
    blocks as the driver's snapshot counts them (the last open-ended); on SQLite the snapshot
    process writes one file a query."""
    directories: dict[str, Path] = {}
    jobs: list[_Stream] = []
    for query in queries:
        directory = root / query.name
        directory.mkdir(parents=True)
        directories[query.name] = directory
        if source.dialect != "postgresql":
            stage_parquet(source, query.sql, query.params, schema=query.schema, directory=directory)
            continue
        ranges: list[BlockRange | None] = [None]
        if streams > 1:
            count = table_blocks(source, query.table)
            ranges = [*block_ranges(query.table, blocks=count, streams=streams)]
        jobs += [
            _Stream(
                sql=query.sql,
                params=query.params,
                schema=query.schema,
                blocks=blocks,
                path=str(directory / f"part-{i}.parquet"),
            )
            for i, blocks in enumerate(ranges)
        ]
    if jobs:
        url, snapshot = source.export_snapshot()
        copy = functools.partial(_copy, url=url, snapshot=snapshot)
        spark.sparkContext.parallelize(jobs, len(jobs)).foreach(copy)
    return directories


def stage_ledgers(
    spark: SparkSession,
    source: StoreReader,
    ledgers: Sequence[Ledger],
    *,
    as_of: int,
    root: Path,
    streams: int,
) -> dict[str, Path]:
    """Every ledger's rows as of ``as_of`` (``stage_queries``), by ledger name."""
    queries = [
        StagedQuery(
            name=ledger.name,
            sql=ledger.query,
            params=(as_of,) * ledger.query.count("?"),
            schema=ledger.schema,
            table=ledger.table,
        )
        for ledger in ledgers
    ]
    return stage_queries(spark, source, queries, root=root, streams=streams)
