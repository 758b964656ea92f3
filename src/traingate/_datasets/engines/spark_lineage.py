"""The lineage of a Spark build, written by Spark tasks: no lineage item reaches the driver.

The first pass leaves each batch's lineage items in its ``items`` payload (Arrow IPC of
``spark_tasks.ITEM_SCHEMA``: item key, record id, kind, messages). This stage explodes them
into rows, range-partitions the rows by item key (about ``FILE_ROWS`` items a partition, at
least one partition per core), and each task sorts its range and writes it as one lineage file
of the build (``lineage_file.write_run``: the lineage file's format, footer build id and
row-group key index) into ``PartsOut.lineage``. The driver receives one small row per file
(name, first and last key, rows, sha256); the builder writes the directory's index
(``lineage_file.write_directory``). The ranges are disjoint, and the directory's lookups read
only the files whose range holds a key.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from traingate._datasets.engines.base import PartsOut
from traingate._datasets.engines.spark_tasks import ITEM_SCHEMA
from traingate._datasets.engines.spark_worker import task
from traingate._datasets.lineage_file import ROW_GROUP, LineageRun, write_run

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["FILE_ROWS", "lineage_stage"]

FILE_ROWS = 64 * ROW_GROUP  # items a task sorts and writes (about 1M: ~60 MB in its memory)
_ITEMS = "item_key BINARY, record_id BINARY, kind STRING, messages INT"
_ITEMS_FIELDS: list[tuple[str, pa.DataType]] = [  # ITEM_SCHEMA as Spark takes BINARY columns
    ("item_key", pa.binary()),
    ("record_id", pa.binary()),
    ("kind", pa.string()),
    ("messages", pa.int32()),
]
_ITEMS_ARROW = pa.schema(_ITEMS_FIELDS)
_RUNS = "name STRING, first BINARY, last BINARY, rows BIGINT, sha256 STRING"
_RUN_FIELDS: list[tuple[str, pa.DataType]] = [
    ("name", pa.string()),
    ("first", pa.binary()),
    ("last", pa.binary()),
    ("rows", pa.int64()),
    ("sha256", pa.string()),
]
_RUN_SCHEMA = pa.schema(_RUN_FIELDS)


def lineage_stage(
    spark: SparkSession, evaluated: DataFrame, *, output: PartsOut, items: int
) -> tuple[LineageRun, ...]:
    """Have Spark tasks write the lineage items of ``evaluated``'s batches (about ``items`` of
    them) as sorted, range-disjoint files into ``output.lineage``; their descriptions, in key
    order. Nothing when ``output.lineage`` is not set or there is no item."""
    if output.lineage is None or items <= 0:
        return ()
    directory = output.lineage
    directory.mkdir(parents=True, exist_ok=True)
    partitions = max(spark.sparkContext.defaultParallelism, math.ceil(items / FILE_ROWS))
    written = (
        evaluated.select("items")
        .mapInArrow(_explode, _ITEMS)
        .repartitionByRange(partitions, "item_key")
        .mapInArrow(
            functools.partial(_write, directory=str(directory), build_id=output.build_id), _RUNS
        )
        .collect()
    )
    runs = [
        LineageRun(
            name=str(row["name"]),
            first=bytes(row["first"]),
            last=bytes(row["last"]),
            rows=int(row["rows"]),
            sha256=str(row["sha256"]),
        )
        for row in written
    ]
    return tuple(sorted(runs, key=lambda run: (run.first, run.name)))


@task
def _explode(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Every batch row's lineage items, as rows (a task of the stage's first half)."""
    for batch in batches:
        for payload in batch.column("items").to_pylist():
            if payload is None:
                continue
            table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
            yield from table.cast(ITEM_SCHEMA).cast(_ITEMS_ARROW).to_batches()


@task
def _write(
    batches: Iterator[pa.RecordBatch], *, directory: str, build_id: str
) -> Iterator[pa.RecordBatch]:
    """One range of item keys written as one sorted lineage file, named by the task's
    partition; a retried task writes its own attempt's file and renames it over."""
    from pyspark import TaskContext

    held = list(batches)
    if not held:
        return
    table = pa.Table.from_batches(held)
    context = TaskContext.get()
    partition = context.partitionId() if context is not None else 0
    attempt = context.attemptNumber() if context is not None else 0
    path = Path(directory) / f"run-{partition:05d}.parquet"
    scratch = path.with_name(f".{path.name}.{attempt}")
    run = write_run(table, path=scratch, build_id=build_id)
    if run is None:
        scratch.unlink()
        return
    os.replace(scratch, path)
    yield pa.RecordBatch.from_pylist(
        [
            {
                "name": path.name,
                "first": run.first,
                "last": run.last,
                "rows": run.rows,
                "sha256": run.sha256,
            }
        ],
        schema=_RUN_SCHEMA,
    )
