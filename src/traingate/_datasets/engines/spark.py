"""The Spark engine: the compiled policy (``build.compile``) evaluated inside Apache Spark.

One policy, read once: every Spark task runs the very SQL the DuckDB engine runs, in an
embedded DuckDB, over a batch of whole conversations and the ledger rows those conversations
need. Spark does the moving of data; the decisions are the compiled SQL's.

1. Inputs are staged as Parquet in the build's scratch directory: the ledgers (``LEDGERS``,
   from the store's read snapshot; on PostgreSQL by Spark tasks that import the driver's
   exported snapshot: ``engines/spark_stage.py``) and, unless the build reads a lake
   (``--messages``), the store's messages written as a lake (``_datasets/lake.py``).
2. Spark keys every ledger row by the conversation it concerns: conversation ledgers by their
   id; plans, account deletions and account-scope consents through the conversations of the
   account; organization-scope consents through the accounts that had the organization; flag
   clears through their flag. The keyed rows and the messages make one stream.
3. The stream is range-partitioned by conversation id and sorted within partitions: a task
   holds whole conversations, in order, each with exactly its ledger rows.
4. ``mapInArrow`` (``engines/spark_tasks.py``) cuts a partition into batches of whole
   conversations; per batch the ledger rows become the ``l_*`` tables and the compiled
   ``prepare``, ``decide``, ``tally``, ``eligible`` and ``records`` run;
   ``records.group_messages`` cuts the records. A batch leaves as one row of Arrow IPC
   payloads (records, tally, decisions).
5. Every partition is decided at once, in parallel, and kept on the executors (``DISK_ONLY``).
   When the builder says where the parts go (``BuildRequest.output``, a build), the tasks have
   also made the records (record ids and lineage keys: the signing key travels in the plan)
   in the build's shape, and other tasks have made the feedback records from the vault's
   rows, staged still encrypted (``engines/spark_feedback.py``: partitions numbered after the
   conversation partitions, in report id order); the driver reads one small row per batch,
   numbers each partition's rows by a prefix sum of the counts, and a second pass writes the
   parts where the rows are (``spark_tasks.write_partition``: whole parts in place, pieces of
   shared parts as fragments that tasks then assemble; the last part, not full, goes back to
   the builder), while the driver takes each batch's tally (``_written``), and a third
   stage has tasks write the lineage items as sorted files (``engines/spark_lineage.py``): no
   lineage item reaches the driver. Otherwise (a policy diff, a test reading records) the
   driver reads the partitions in order (``toLocalIterator``): records arrive in conversation
   id order, as from the DuckDB engine.

The session: the one passed in, else the active one of the process, else a new one on
``master`` (stopped at the end of the build). Select with ``--engine spark``; the master with
``--spark-master`` or ``TRAINGATE_SPARK_MASTER`` (default ``local[2]``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from traingate._core.policy.compile import LEDGERS, Ledger, compile_purpose
from traingate._datasets.engines.base import BuildRequest, EngineBatch, PartsOut, Tally, Written
from traingate._datasets.engines.spark_feedback import feedback_frame, feedback_written
from traingate._datasets.engines.spark_lineage import lineage_stage
from traingate._datasets.engines.spark_stage import stage_ledgers
from traingate._datasets.engines.spark_tasks import (
    MESSAGE_TAG,
    OUTPUT,
    WRITTEN,
    Summary,
    TaskPlan,
    assemble_part,
    engine_batch,
    evaluate_partition,
    file_entry,
    read_fragments,
    read_tally,
    write_partition,
)
from traingate._datasets.engines.spark_worker import task
from traingate._datasets.lake import ParquetLake, store_messages, write_lake
from traingate._datasets.records import ENGINE_SCHEMA
from traingate._datasets.writer import FileEntry
from traingate._errors import BuildError
from traingate._settings import DEFAULT_SPARK_MASTER
from traingate._store.export import StoreReader
from traingate._store.store import Store

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["DEFAULT_MASTER", "SparkEngine"]

DEFAULT_MASTER = DEFAULT_SPARK_MASTER
_ORDER = ("k", "tag", "ts", "lake_seq", "message_id")  # a conversation's ledger rows first
_BYTES_PER_PARTITION = 64 << 20  # of compressed Parquet input
_LAKE_DDL = (
    "conversation_id STRING, message_id STRING, account_id STRING, role STRING,"
    " at TIMESTAMP, seq BIGINT, content STRING,"
    " attachments ARRAY<STRUCT<attachment_id: STRING, source: STRING, name: STRING,"
    " content: STRING>>"
)
# How the rows of each ledger find the conversations they concern.
_KEYED_BY = {
    "l_conversations": "conversation",
    "l_conversation_deletions": "conversation",
    "l_flags": "conversation",
    "l_conversation_settings": "conversation",
    "l_flag_clears": "flag",
    "l_account_plans": "account",
    "l_account_deletions": "account",
    "l_consents": "consent",
}
_NO_RECORDS = pa.RecordBatch.from_pylist([], schema=ENGINE_SCHEMA)
_SPARK_TYPES = {pa.string(): "STRING", pa.int64(): "BIGINT"}
_SESSION_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}
# What the engine's queries run with, on whichever session (restored after the build). With a
# byte bound on the Arrow batches fed to the tasks (Spark 4: 64 MB by default), Spark sizes
# every vector of the batch after each row it writes (``ArrowWriter.sizeInBytes``: 7-10% of
# the executors' task time, measured with JFR); at ``INT_MAX`` it does not, and batches are
# bounded by their rows alone (``spark.sql.execution.arrow.maxRecordsPerBatch``), as before
# Spark 4.
_QUERY_SETTINGS = {"spark.sql.execution.arrow.maxBytesPerBatch": str(2**31 - 1)}


class SparkEngine:
    """Evaluate the compiled policy in Spark tasks. ``partitions`` fixes the number of range
    partitions (default: one per 64 MiB of Parquet input, at least the session's parallelism);
    ``batch_messages`` bounds the rows a task decides at once (50,000 as in the DuckDB engine:
    against 20,000, a third less of the tasks' Python CPU, the compiled statements' fixed cost
    spread over more rows); ``stage_streams`` is how many tasks stage each ledger from a
    PostgreSQL store (default: the session's parallelism, at most 16; each copies one range of
    the ledger's heap blocks, so together they cost the server one scan:
    ``engines/spark_stage.py``); ``config`` adds Spark settings to a session this engine
    creates."""

    name = "spark"
    writes_parts = True
    makes_feedback = True  # in a build (``BuildRequest.output``): ``engines/spark_feedback.py``

    def __init__(
        self,
        *,
        master: str = DEFAULT_MASTER,
        session: SparkSession | None = None,
        partitions: int | None = None,
        batch_messages: int = 50_000,
        memory_limit: str = "384MB",
        stage_streams: int | None = None,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self.master = master
        self.session = session
        self.partitions = partitions
        self.batch_messages = batch_messages
        self.memory_limit = memory_limit
        self.stage_streams = stage_streams
        self.config = dict(config or {})

    def run(
        self, *, request: BuildRequest, source: StoreReader, store: Store
    ) -> Iterator[EngineBatch]:
        compiled = compile_purpose(
            policy=request.policy, purpose=request.purpose, as_of=request.as_of
        )
        ledgers = [ledger for ledger in LEDGERS if compiled.with_content or not ledger.content]
        plan = TaskPlan(
            ledgers=tuple(
                (ledger.name, tag, tuple(ledger.schema.names)) for tag, ledger in enumerate(ledgers)
            ),
            prepare=compiled.prepare,
            decide=compiled.decide,
            tally=compiled.tally,
            eligible=compiled.eligible,
            records=compiled.records,
            with_content=compiled.with_content,
            rows_per_batch=self.batch_messages,
            memory_limit=self.memory_limit,
            keep_decisions=request.keep_decisions,
            output=request.output,
        )
        with (
            _scratch(request.workdir) as stage,
            self._session(stage) as spark,
            _settings(spark, _QUERY_SETTINGS),
        ):
            from pyspark import StorageLevel

            streams = self.stage_streams or min(16, spark.sparkContext.defaultParallelism)
            ledger_dirs = stage_ledgers(
                spark, source, ledgers, as_of=request.as_of, root=stage / "ledgers",
                streams=streams,
            )  # fmt: skip
            if request.messages is None:
                lake = ParquetLake(root=stage / "messages")
                write_lake(store_messages(source, as_of=request.as_of), lake.root)
            elif isinstance(request.messages, ParquetLake):
                lake = request.messages
            else:
                raise BuildError(f"the spark engine cannot read messages from {request.messages}")
            files = lake.files(as_of=request.as_of)
            if not files:  # no message at or before as-of: nothing to decide but reports
                yield from _feedback_only(spark, request, source, store, stage, streams)
                return
            partitions = self.partitions or max(
                spark.sparkContext.defaultParallelism,
                math.ceil(sum(f.stat().st_size for f in files) / _BYTES_PER_PARTITION),
            )
            try:
                rows = _keyed(
                    spark, ledgers=ledgers, ledger_dirs=ledger_dirs, files=files,
                    as_of=request.as_of,
                )  # fmt: skip
                evaluated = (
                    _partitioned(rows, partitions)
                    .mapInArrow(functools.partial(evaluate_partition, plan=plan), OUTPUT)
                    .persist(StorageLevel.DISK_ONLY)
                )
                try:
                    # Every partition decided at once, in parallel, kept by the executors; then
                    # the driver takes the partitions in order (one at a time), or the tasks
                    # write the parts where the records are (``_written``).
                    evaluated.count()
                    if request.output is not None:  # with the feedback rows after them
                        with feedback_frame(
                            spark, request=request, keys=store.keys, source=source,
                            store=store, stage=stage, first_partition=partitions,
                            streams=streams,
                        ) as made:  # fmt: skip
                            every = evaluated if made is None else evaluated.unionByName(made)
                            yield from _written(spark, every, request.output, stage)
                        return
                    for row in evaluated.toLocalIterator(prefetchPartitions=True):
                        yield engine_batch(
                            int(row["messages"]), row["records"], row["tally"], row["decisions"]
                        )
                finally:
                    evaluated.unpersist()
            except _spark_errors() as exc:
                raise BuildError(f"Spark failed: {_first_line(exc)}") from exc

    @contextlib.contextmanager
    def _session(self, stage: Path) -> Iterator[SparkSession]:
        """The engine's session, the process's active one, or a new one stopped at the end."""
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise BuildError(
                "the spark engine needs PySpark: pip install 'traingate[spark]'"
            ) from exc
        from pyspark import SparkContext

        if self.session is not None:
            yield self.session
            return
        # A session already running in this process (another thread's, a notebook's) is used
        # as it is, and left running.
        active = SparkSession.getActiveSession()
        if active is None and SparkContext._active_spark_context is not None:
            active = SparkSession.builder.getOrCreate()
        if active is not None:
            yield active
            return
        if shutil.which("java") is None and not _java_home():
            raise BuildError("the spark engine needs Java 17 or later (java is not on PATH)")
        builder = SparkSession.builder.master(self.master).appName("traingate-build")
        settings = dict(_SESSION_DEFAULTS)
        if self.master.startswith("local"):  # spill files in the build's scratch directory
            settings["spark.local.dir"] = str(stage / "spark-local")
        for key, value in {**settings, **self.config}.items():
            builder = builder.config(key, value)
        try:
            spark = builder.getOrCreate()
        except _spark_errors() as exc:
            raise BuildError(f"Spark cannot start on {self.master}: {_first_line(exc)}") from exc
        try:
            spark.sparkContext.setLogLevel("ERROR")
            # Python workers run this interpreter (its traingate, DuckDB and pyarrow) unless
            # PYSPARK_PYTHON names another.
            if not _env("PYSPARK_PYTHON"):
                spark.sparkContext.pythonExec = sys.executable
            yield spark
        finally:
            spark.stop()


@contextlib.contextmanager
def _settings(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """``settings`` set on the session's SQL configuration for the build, then put back as
    they were (unset where they were not set)."""
    before: dict[str, str | None] = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, was in before.items():
            if was is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, was)


def _feedback_only(
    spark: SparkSession,
    request: BuildRequest,
    source: StoreReader,
    store: Store,
    stage: Path,
    streams: int,
) -> Iterator[EngineBatch]:
    """A build with no message to decide: its feedback rows alone (``spark_feedback``)."""
    if request.output is None:
        return
    try:
        with feedback_frame(
            spark, request=request, keys=store.keys, source=source, store=store, stage=stage,
            first_partition=0, streams=streams,
        ) as made:  # fmt: skip
            if made is not None:
                yield from _written(spark, made, request.output, stage)
    except _spark_errors() as exc:
        raise BuildError(f"Spark failed: {_first_line(exc)}") from exc


def _env(name: str) -> str:
    return os.environ.get(name, "")


def _java_home() -> bool:
    home = _env("JAVA_HOME")
    return bool(home) and (Path(home) / "bin" / "java").exists()


def _spark_errors() -> tuple[type[BaseException], ...]:
    from pyspark.errors import PySparkException

    py4j_error: type[BaseException] = importlib.import_module("py4j.protocol").Py4JError
    return (PySparkException, py4j_error)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def _scratch(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        stage = workdir / "spark"
        stage.mkdir()
        yield stage
        return
    with tempfile.TemporaryDirectory(prefix="traingate-spark-") as tmp:
        yield Path(tmp)


def _ddl(schema: pa.Schema) -> str:
    columns = []
    for field in schema:
        kind = _SPARK_TYPES.get(field.type)
        if kind is None:
            raise BuildError(f"the spark engine cannot stage a {field.type} column ({field.name})")
        columns.append(f"`{field.name}` {kind}")
    return ", ".join(columns)


def _keyed(
    spark: SparkSession,
    *,
    ledgers: list[Ledger],
    ledger_dirs: Mapping[str, Path],
    files: list[Path],
    as_of: int,
) -> DataFrame:
    """Every ledger row keyed ``k`` by its conversation and tagged by its ledger, with the
    messages (tag ``MESSAGE_TAG``)."""
    from pyspark.sql import functions as F

    frames = {
        ledger.name: spark.read.schema(_ddl(ledger.schema)).parquet(str(ledger_dirs[ledger.name]))
        for ledger in ledgers
    }
    for needed in ("l_conversations", "l_flags", "l_account_plans"):
        if needed not in frames:
            raise BuildError(f"the spark engine needs the ledger {needed}")
    owners = frames["l_conversations"].select(F.col("conversation_id").alias("k"), "account_id")

    def keyed(ledger: Ledger) -> DataFrame:
        frame = frames[ledger.name]
        how = _KEYED_BY.get(ledger.name)
        if how == "conversation":
            return frame.withColumn("k", F.col("conversation_id"))
        if how == "account":
            return frame.join(owners, "account_id")
        if how == "flag":
            flags = frames["l_flags"].select("flag_id", F.col("conversation_id").alias("k"))
            return frame.join(flags, "flag_id")
        if how == "consent":
            by_account = frame.where(F.col("scope") == "account").join(
                owners.withColumnRenamed("account_id", "subject"), "subject"
            )
            organizations = (
                frames["l_account_plans"]
                .where(F.col("organization_id").isNotNull())
                .select("account_id", F.col("organization_id").alias("subject"))
                .distinct()
                .join(owners, "account_id")
                .select("subject", "k")
                .distinct()
            )
            by_organization = frame.where(F.col("scope") == "organization").join(
                organizations, "subject"
            )
            return by_account.unionByName(by_organization)
        raise BuildError(
            f"the spark engine does not know which conversations {ledger.name} concerns"
        )

    stream = None
    for tag, ledger in enumerate(ledgers):
        part = keyed(ledger).select("k", F.lit(tag).alias("tag"), *ledger.schema.names)
        stream = part if stream is None else stream.unionByName(part, allowMissingColumns=True)
    if stream is None or not files:
        raise BuildError("the spark engine needs ledgers and at least one lake file")
    messages = (
        spark.read.schema(_LAKE_DDL)
        .parquet(*[str(f) for f in files])
        .where(F.unix_micros("at") <= F.lit(as_of))
        .select(
            F.col("conversation_id").alias("k"),
            F.lit(MESSAGE_TAG).alias("tag"),
            "conversation_id",
            "account_id",
            F.unix_micros("at").alias("ts"),
            F.col("seq").alias("lake_seq"),
            "message_id",
            "role",
            "content",
            "attachments",
        )
    )
    return stream.unionByName(messages, allowMissingColumns=True)


def _written(
    spark: SparkSession, evaluated: DataFrame, output: PartsOut, stage: Path
) -> Iterator[EngineBatch]:
    """The parts written where the records are. The driver reads each batch's row count (one
    small row per batch of ``batch_messages``), numbers the partitions' rows by a prefix sum,
    and has every task write the parts wholly inside its rows (``_parts``) and the lineage
    files (``spark_lineage.lineage_stage``). While the tasks write, the driver takes each
    batch's tally and counts, and yields them; then the parts and lineage files. It never
    holds a record but those of the last part, nor a lineage item."""
    per_partition: Counter[int] = Counter()
    for row in evaluated.select("partition", "n_rows").collect():
        per_partition[int(row["partition"])] += int(row["n_rows"])
    starts: dict[int, int] = {}
    total = 0
    for partition in sorted(per_partition):
        starts[partition] = total
        total += per_partition[partition]
    with ThreadPoolExecutor(2, thread_name_prefix="traingate-spark-parts") as pool:
        parts = pool.submit(_parts, spark, evaluated, output, stage, starts, total)
        lineage = pool.submit(lineage_stage, spark, evaluated, output=output, items=total)
        for row in evaluated.select("messages", "tally", "summary", "n_rows").toLocalIterator(
            prefetchPartitions=True
        ):
            summary = Summary.from_json(row["summary"])
            yield feedback_written(
                row["summary"],
                EngineBatch(
                    records=_NO_RECORDS,
                    tally=read_tally(row["tally"]),
                    messages_seen=int(row["messages"]),
                    written=Written(
                        counts=summary.counts,
                        rows=int(row["n_rows"]),
                        messages=summary.messages,
                        left_out=summary.left_out,
                    ),
                ),
            )
        files, tail = parts.result()
        runs = lineage.result()
    yield EngineBatch(
        records=_NO_RECORDS,
        tally=Tally(),
        messages_seen=0,
        written=Written(files=files, tail=tail, lineage=runs),
    )


def _parts(
    spark: SparkSession,
    evaluated: DataFrame,
    output: PartsOut,
    stage: Path,
    starts: Mapping[int, int],
    total: int,
) -> tuple[tuple[FileEntry, ...], tuple[pa.RecordBatch, ...]]:
    """Every task writes the parts wholly inside its rows and hands back the pieces of the
    parts it shares with its neighbours (fragment files); those parts are then assembled by
    tasks too. The last part, when it is not full, is the builder's (the feedback records
    follow it): its rows are returned."""
    fragments = stage / "fragments"
    fragments.mkdir()
    written = (
        evaluated.select("partition", "batch", "rows")
        .mapInArrow(
            functools.partial(
                write_partition, output=output, starts=starts, fragments=str(fragments),
            ),
            WRITTEN,
        )
        .collect()
    )  # fmt: skip
    entries: dict[int, tuple[str, int, str]] = {}
    shared: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for row in written:
        if row["sha256"] is not None:
            entries[int(row["part"])] = (row["path"], int(row["rows"]), row["sha256"])
        else:
            shared[int(row["part"])].append((int(row["partition"]), row["path"]))
    tail = [path for _, path in sorted(shared.pop(total // output.rows_per_file, []))]
    if shared:
        jobs = [(part, [path for _, path in sorted(pieces)]) for part, pieces in shared.items()]
        assemble = functools.partial(_assemble, output=output)
        for part, path, rows, sha256 in (
            spark.sparkContext.parallelize(sorted(jobs), len(jobs)).map(assemble).collect()
        ):
            entries[part] = (path, rows, sha256)
    if sorted(entries) != list(range(len(entries))):
        raise BuildError(f"the Spark tasks wrote parts {sorted(entries)}, not one of each")
    files = tuple(file_entry(*entries[part]) for part in sorted(entries))
    return files, tuple(read_fragments(tail))


@task
def _assemble(job: tuple[int, list[str]], *, output: PartsOut) -> tuple[int, str, int, str]:
    part, fragments = job
    return assemble_part(part, fragments, output=output)


def _partitioned(rows: DataFrame, partitions: int) -> DataFrame:
    """Whole conversations per partition, partitions in conversation order, each sorted."""
    return rows.repartitionByRange(partitions, "k").sortWithinPartitions(*_ORDER)
