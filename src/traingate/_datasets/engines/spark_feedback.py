"""Feedback records of a Spark build, made in Spark tasks (``engines/spark.py``).

The driver stages the vault's rows of the reports that may be usable at as-of as they are
stored, still encrypted (``vault.usable_reports_query``), as Parquet in the build's scratch
directory: on SQLite through the store's snapshot process (a read snapshot of the vault's own
file), on PostgreSQL by ``COPY`` over the build's read snapshot (``_store/export.stage_parquet``).
It decrypts nothing. The rows are range-partitioned by report id and sorted, and each task
(``feedback_partition``) decrypts its reports (``vault.open_report``: the master keys and the
signing key travel to the executors in the plan, as the signing key does for the conversation
records), decides each under the policy in force at its submission and makes its record
(``_datasets/feedback.py``, as the builder does for the other engines), applies the build's shape
and returns one row of the first pass's ``OUTPUT`` per batch of reports: its records in the
shape, their lineage items, the report decisions (``tally``) and a summary. The partitions are
numbered after the conversation partitions, so the prefix sum, the part writing and the
lineage stage take the feedback rows after the conversation rows, in report id order: the
parts are the ones the builder writes for the other engines, byte for byte. The driver reads
one small row per batch (``feedback_written``); a report its keys cannot open fails the build
with the vault's own error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from traingate import _errors as errors
from traingate._core.policy import PolicySet
from traingate._datasets.engines.base import BuildRequest, EngineBatch, PartsOut, Tally
from traingate._datasets.engines.spark_stage import StagedQuery, stage_queries
from traingate._datasets.engines.spark_tasks import (
    OUTPUT,
    TALLY_SCHEMA,
    Summary,
    _ipc,
    item_payload,
)
from traingate._datasets.engines.spark_worker import task
from traingate._datasets.feedback import feedback_batches, feedback_granted
from traingate._datasets.shapes import as_shape, row_messages, shape_records, shape_schema
from traingate._errors import StoreError, TraingateError
from traingate._keys import KeyRing
from traingate._store.db import SqliteDatabase
from traingate._store.export import StoreReader
from traingate._store.store import Store
from traingate._vault.vault import open_report, reports_table, usable_reports_query

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["FeedbackPlan", "feedback_frame", "feedback_partition", "feedback_written"]

# A vault row as stored (``vault.usable_reports_query``'s columns).
_STORED_FIELDS: list[tuple[str, pa.DataType]] = [
    ("report_id", pa.string()),
    ("submitted_day", pa.int64()),
    ("expires_day", pa.int64()),
    ("scheme", pa.string()),
    ("master_key_id", pa.string()),
    ("wrapped_key", pa.string()),
    ("nonce", pa.string()),
    ("ciphertext", pa.string()),
]
STORED_SCHEMA = pa.schema(_STORED_FIELDS)
_STORED_DDL = ", ".join(
    f"`{f.name}` {'BIGINT' if f.type == pa.int64() else 'STRING'}" for f in STORED_SCHEMA
)
_REPORTS_PER_BATCH = 2_000  # reports a task makes into one output row
_BYTES_PER_PARTITION = 16 << 20  # of staged (encrypted) reports
_BUSY_TIMEOUT_MS = 30_000
_SUMMARY_KEY = "reports_by_policy"  # in a feedback row's summary (not a conversation row's)
_ERROR_KEY = "error"  # a task's report its keys could not open


@dataclass(frozen=True, slots=True)
class FeedbackPlan:
    """What each feedback task needs (pickled to the workers). ``keys`` holds the vault's
    master keys and the signing key (not the id key, which stays on the driver)."""

    keys: KeyRing
    policies: PolicySet
    purpose: str
    as_of: int
    output: PartsOut
    first_partition: int  # the first partition number after the conversation partitions
    reports_per_batch: int


@contextlib.contextmanager
def feedback_frame(
    spark: SparkSession,
    *,
    request: BuildRequest,
    keys: KeyRing,
    source: StoreReader,
    store: Store,
    stage: Path,
    first_partition: int,
    streams: int,
) -> Iterator[DataFrame | None]:
    """The build's feedback rows (``OUTPUT``), made by Spark tasks, persisted while the
    context lasts; None when the request writes no parts or no policy grants feedback."""
    output = request.output
    if output is None or not feedback_granted(request.policies, request.purpose):
        yield None
        return
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    files = _stage_reports(spark, source, store, request.as_of, stage, streams=streams)
    plan = FeedbackPlan(
        keys=dataclasses.replace(keys, id_key=b""),
        policies=request.policies,
        purpose=request.purpose,
        as_of=request.as_of,
        output=output,
        first_partition=first_partition,
        reports_per_batch=_REPORTS_PER_BATCH,
    )
    partitions = max(
        spark.sparkContext.defaultParallelism,
        math.ceil(sum(f.stat().st_size for f in files) / _BYTES_PER_PARTITION),
    )
    stored = (
        spark.read.schema(_STORED_DDL)
        .parquet(*[str(f) for f in files])
        .repartitionByRange(partitions, "report_id")
        .sortWithinPartitions("report_id")
        .select(*STORED_SCHEMA.names)
    )
    # By RDD partition index, not TaskContext: a partition lost and made again inside a later
    # stage (the union with the conversation rows) keeps its number.
    made = spark.createDataFrame(
        stored.rdd.mapPartitionsWithIndex(functools.partial(feedback_partition, plan=plan)),
        OUTPUT,
    ).persist(StorageLevel.DISK_ONLY)
    try:
        made.count()
        failed = made.where(F.col("summary").startswith(f'{{"{_ERROR_KEY}"')).limit(1).collect()
        if failed:
            raise _error(json.loads(failed[0]["summary"])[_ERROR_KEY])
        yield made
    finally:
        made.unpersist()


def _stage_reports(
    spark: SparkSession, source: StoreReader, store: Store, as_of: int, stage: Path, *, streams: int
) -> list[Path]:
    """The vault's rows that may be usable at ``as_of`` as stored, as Parquet files of
    ``stage / "reports"``: on PostgreSQL over the build's snapshot, by ``streams`` Spark tasks
    (``engines/spark_stage.py``); on SQLite over a read snapshot of the vault's file, held
    like the store's by the snapshot process, which writes the file."""
    db = store.db
    if source.dialect == "postgresql":
        sql, params = usable_reports_query(db.vault_prefix, as_of)
        query = StagedQuery(
            name="reports", sql=sql, params=tuple(params), schema=STORED_SCHEMA,
            table=reports_table(db.vault_prefix),
        )  # fmt: skip
        staged = stage_queries(spark, source, [query], root=stage, streams=streams)
        return sorted(staged["reports"].glob("*.parquet"))
    directory = stage / "reports"
    directory.mkdir(parents=True)
    if not isinstance(db, SqliteDatabase):
        raise StoreError(f"not a SQLite store: {db.url}")
    uri = f"file:{quote(str(db.vault_path.resolve()))}?mode=ro"
    try:
        snapshot = db.snapshots().open(uri=uri, busy_timeout_ms=_BUSY_TIMEOUT_MS)
    except StoreError as exc:
        raise StoreError(f"SQLite {db.vault_path}: cannot open a read snapshot: {exc}") from exc
    sql, params = usable_reports_query("", as_of)
    path = directory / "part-0.parquet"
    # Uncompressed: ciphertext does not compress (compressing it cost a third of the
    # staging CPU: at 8,000 reports, 0.1 of 0.25 s). Written by the snapshot process.
    with StoreReader(dialect="sqlite", connection=snapshot) as vault:
        vault.write_parquet(sql, params, schema=STORED_SCHEMA, path=path, compression="none")
    return [path]


# -- in the tasks -------------------------------------------------------------------------------


@task
def feedback_partition(
    index: int, rows: Iterable[Any], *, plan: FeedbackPlan
) -> Iterator[tuple[Any, ...]]:
    """One range of stored reports, in report id order: a row of ``OUTPUT`` per batch of
    ``reports_per_batch``. A report the keys cannot open gives one error row and ends it."""
    partition = plan.first_partition + index
    chunk: list[tuple[Any, ...]] = []
    number = 0
    try:
        for row in rows:
            chunk.append(tuple(row))
            if len(chunk) >= plan.reports_per_batch:
                yield from _batch(chunk, plan, partition=partition, number=number)
                chunk, number = [], number + 1
        if chunk:
            yield from _batch(chunk, plan, partition=partition, number=number)
    except TraingateError as exc:
        failure = {_ERROR_KEY: {"type": type(exc).__name__, "message": str(exc)}}
        yield (partition, number, 0, None, None, None, None, 0, None, json.dumps(failure))


def _batch(
    chunk: list[tuple[Any, ...]], plan: FeedbackPlan, *, partition: int, number: int
) -> Iterator[tuple[Any, ...]]:
    """One batch of stored reports made into one ``OUTPUT`` row (none when no report of it is
    usable at as-of)."""
    reports = (open_report(raw, keys=plan.keys, as_of=plan.as_of) for raw in chunk)
    for made in feedback_batches(
        (r for r in reports if r is not None),
        policies=plan.policies,
        purpose=plan.purpose,
        as_of=plan.as_of,
        signing_key=plan.output.signing_key,
        size=len(chunk) + 1,  # one batch
    ):
        shape = as_shape(plan.output.shape)
        shaped = shape_records(made.records, shape=shape)
        rows = shaped.rows.cast(shape_schema(shape))
        summary = Summary(
            counts=_counts(made.records),
            messages=row_messages(shape, shaped.rows),
            left_out=dict(shaped.left_out),
        )
        tally = pa.table(
            {
                "basis": [b for b, _ in made.tally.counts],
                "reason": [r for _, r in made.tally.counts],
                "n": list(made.tally.counts.values()),
            },
            schema=TALLY_SCHEMA,
        )
        text = json.dumps(
            {**json.loads(summary.to_json()), _SUMMARY_KEY: sorted(made.by_policy.items())}
        )
        yield (
            partition, number, 0, None, _ipc(tally), None, _ipc(rows), rows.num_rows,
            item_payload(made.items), text,
        )  # fmt: skip


def _counts(records: pa.RecordBatch) -> dict[tuple[str, str], tuple[int, int]]:
    """Records and messages by (kind, basis), as the builder counts them."""
    found: Counter[tuple[str, str]] = Counter()
    sizes: Counter[tuple[str, str]] = Counter()
    lengths = pc.fill_null(pc.list_value_length(records.column("messages")), 0).to_pylist()
    for kind, basis, n in zip(
        records.column("kind").to_pylist(),
        records.column("basis").to_pylist(),
        lengths,
        strict=True,
    ):
        found[(str(kind), str(basis))] += 1
        sizes[(str(kind), str(basis))] += int(n)
    return {key: (found[key], sizes[key]) for key in found}


# -- back on the driver -------------------------------------------------------------------------


def feedback_written(summary: str, batch: EngineBatch) -> EngineBatch:
    """A first-pass row read on the driver as ``batch``: when it is a feedback row (its
    summary says how many reports each policy decided), its tally is the reports'."""
    data = json.loads(summary)
    if _SUMMARY_KEY not in data or batch.written is None:
        return batch
    return dataclasses.replace(
        batch,
        tally=Tally(),
        written=dataclasses.replace(
            batch.written,
            reports=batch.tally,
            reports_by_policy={int(i): int(n) for i, n in data[_SUMMARY_KEY]},
        ),
    )


def _error(failure: dict[str, str]) -> TraingateError:
    """A task's error, raised again on the driver as the same traingate error."""
    kind = getattr(errors, failure.get("type", ""), None)
    if not (isinstance(kind, type) and issubclass(kind, TraingateError)):
        kind = StoreError
    return kind(failure.get("message", "a feedback report could not be read"))
