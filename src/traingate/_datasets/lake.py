"""The message lake: ``message.created`` rows as Parquet files partitioned by UTC date
(docs/lake.md), a source of messages for builds outside traingate's own store.

    LAKE/date=2024-01-05/part-0.parquet
    LAKE/date=2024-01-06/part-0.parquet  ...

Each row is one message (``LAKE_SCHEMA``); the directory ``date=YYYY-MM-DD`` is the UTC date of
its ``at`` (Hive-style partitioning). A build reads the lake's messages and judges them against
the store's ledgers (plans, consents, flags, deletions, conversations): ``ParquetLake`` is the
``MessageSource`` both engines take (``--messages parquet:PATH``). ``export_lake`` writes the
store's messages as such a lake; ``write_lake`` writes any stream of rows as one.
``ParquetLake.conversation_messages`` reads one conversation's messages from a few partitions:
what a feedback report's snapshot needs at receipt (docs/lake.md).

A lake message whose conversation the store does not know, or whose ``account_id`` is not the
account that owns the conversation in the store, is excluded for an unknown plan (the reason
the vocabulary gives): the store alone says whose a conversation is.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from traingate._core.timeutil import DAY, utc_date
from traingate._errors import BuildError
from traingate._store.db import Database
from traingate._store.export import StoreReader, open_reader, regroup
from traingate._store.store import MessageRow

__all__ = [
    "LAKE_ATTACHMENT",
    "LAKE_SCHEMA",
    "PARTITION",
    "LakeExport",
    "LakeMessage",
    "ParquetLake",
    "export_lake",
    "message_source",
    "store_messages",
    "write_lake",
]

PARTITION = "date"
_ATTACHMENT_FIELDS: list[pa.Field[Any]] = [
    pa.field("attachment_id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("name", pa.string()),
    pa.field("content", pa.string()),
]
LAKE_ATTACHMENT = pa.struct(_ATTACHMENT_FIELDS)
_LAKE_FIELDS: list[pa.Field[Any]] = [
    pa.field("conversation_id", pa.string(), nullable=False),
    pa.field("message_id", pa.string(), nullable=False),
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("role", pa.string(), nullable=False),
    pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("content", pa.string(), nullable=False),
    pa.field("attachments", pa.list_(LAKE_ATTACHMENT), nullable=False),
]
LAKE_SCHEMA = pa.schema(_LAKE_FIELDS)
# What a batch of lake messages becomes for the engines: the store's message columns (the
# compiled SQL's ``batch`` and ``content`` tables at once), ``seq`` unique within the stream.
_BATCH_FIELDS: list[pa.Field[Any]] = [
    pa.field("conversation_id", pa.string()),
    pa.field("ts", pa.int64()),
    pa.field("seq", pa.int64()),
    pa.field("role", pa.string()),
    pa.field("content", pa.string()),
    pa.field("attachments", pa.string()),
]
BATCH_SCHEMA = pa.schema(_BATCH_FIELDS)
_PREFIX = "parquet:"
_SCAN = "read_parquet($files, union_by_name = true)"  # extra columns in some files are fine
_ROWS_PER_FILE = 1_000_000
_PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd"}


def _check_schema(path: Path, schema: pa.Schema) -> None:
    """Refuse a file lacking a lake column or holding it with another type."""
    for expected in LAKE_SCHEMA:
        index = schema.get_field_index(expected.name)
        if index < 0:
            raise BuildError(f"lake file {path}: column {expected.name!r} is missing")
        actual = schema.field(index).type
        if not actual.equals(expected.type) and not (
            expected.name == "attachments" and _attachments_compatible(actual)
        ):
            raise BuildError(
                f"lake file {path}: column {expected.name!r} is {actual}, expected {expected.type}"
            )


def _attachments_compatible(kind: pa.DataType) -> bool:
    """Attachments may be written with nullable or large types; the fields must be there."""
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        return False
    item = kind.value_type
    return pa.types.is_struct(item) and {f.name for f in LAKE_ATTACHMENT} <= {
        item.field(i).name for i in range(item.num_fields)
    }


@dataclass(frozen=True, slots=True)
class LakeMessage:
    """One lake row of a conversation: the account the row names, and the message."""

    account_id: str
    message: MessageRow


_CONVERSATION_COLUMNS = ("message_id", "account_id", "role", "at", "seq", "content", "attachments")


@dataclass(frozen=True, slots=True)
class ParquetLake:
    """A lake of messages at ``root`` (a local or mounted directory)."""

    root: Path
    memory_limit: str = "768MB"

    @property
    def name(self) -> str:
        return f"{_PREFIX}{self.root}"

    def partitions(self, *, as_of: int) -> list[Path]:
        """The ``date=`` directories that can hold messages at or before ``as_of``."""
        if not self.root.is_dir():
            raise BuildError(f"lake {self.root} is not a directory")
        last = utc_date(as_of)
        found = []
        for entry in sorted(self.root.iterdir()):
            if not entry.is_dir() or entry.name.startswith((".", "_")):
                continue
            key, _, day = entry.name.partition("=")
            if key != PARTITION or len(day) != 10:
                raise BuildError(
                    f"lake {self.root}: {entry.name!r} is not a {PARTITION}=YYYY-MM-DD directory"
                )
            if day <= last:
                found.append(entry)
        return found

    def files(self, *, as_of: int) -> list[Path]:
        """The Parquet files of the partitions up to as-of's date, each checked for the lake's
        columns (their footers only are read)."""
        files = [
            path
            for partition in self.partitions(as_of=as_of)
            for path in sorted(partition.glob("*.parquet"))
        ]
        for path in files:
            try:
                schema = pq.read_schema(path)
            except (OSError, pa.ArrowException) as exc:
                raise BuildError(f"lake file {path} cannot be read: {exc}") from exc
            _check_schema(path, schema)
        return files

    def day_partitions(self, *, since: int, until: int) -> list[Path]:
        """The ``date=`` directories of the UTC dates from ``since``'s to ``until``'s that
        exist, found by name: the lake's other partitions are neither listed nor read."""
        if not self.root.is_dir():
            raise BuildError(f"lake {self.root} is not a directory")
        start, end = since - since % DAY, until - until % DAY
        days = (utc_date(day) for day in range(start, end + 1, DAY))
        return [path for path in (self.root / f"{PARTITION}={d}" for d in days) if path.is_dir()]

    def conversation_messages(
        self, *, conversation_id: str, since: int, until: int
    ) -> list[LakeMessage]:
        """The rows of one conversation in the partitions of the UTC dates from ``since``'s to
        ``until``'s (``at`` itself is not filtered: a caller wanting ``at <= until`` keeps
        those), in (``at``, ``seq``, ``message_id``) order. Only those partitions' files are
        opened, each checked for the lake's columns (its footer), and of each file only the
        row groups whose ``conversation_id`` statistics can hold the conversation are read."""
        found: list[LakeMessage] = []
        for partition in self.day_partitions(since=since, until=until):
            for path in sorted(partition.glob("*.parquet")):
                found.extend(_conversation_rows(path, conversation_id))
        found.sort(key=lambda row: (row.message.at, row.message.seq, row.message.message_id))
        return found

    def count(self, *, as_of: int, since: int | None = None, until: int | None = None) -> int:
        """How many lake messages have ``at`` <= as-of (and ``since`` <= ``at`` < ``until``)."""
        files = self.files(as_of=as_of)
        if not files:
            return 0
        low = -(1 << 63) if since is None else since
        high = (1 << 63) - 1 if until is None else until
        with _duckdb(self.memory_limit, None) as con:
            row = con.execute(
                f"SELECT count(*) FROM {_SCAN}"
                ' WHERE epoch_us("at") <= $as_of AND epoch_us("at") >= $low'
                ' AND epoch_us("at") < $high',
                {"files": [str(f) for f in files], "as_of": as_of, "low": low, "high": high},
            ).fetchone()
        return int(row[0]) if row else 0

    def batches(
        self, *, reader: StoreReader, as_of: int, rows_per_batch: int, workdir: Path | None
    ) -> Iterator[pa.RecordBatch]:
        """The lake's messages with ``at`` <= as-of in batches of whole conversations
        (``BATCH_SCHEMA``), in (conversation id, time, ``seq``, message id) order. The lake is
        sorted by DuckDB's Parquet reader, spilling to ``workdir``; a message of a conversation
        owned in the store by another account gets a null conversation id (excluded for an
        unknown plan)."""
        files = self.files(as_of=as_of)
        if not files:
            return
        with _duckdb(self.memory_limit, workdir) as con:
            owners = reader.reader(
                "SELECT conversation_id, account_id FROM conversations",
                schema=pa.schema([("conversation_id", pa.string()), ("account_id", pa.string())]),
            )
            con.register("owners_source", owners)
            try:
                con.execute("CREATE TABLE owners AS FROM owners_source")
            except duckdb.Error as exc:
                raise BuildError(f"DuckDB could not load the conversations: {exc}") from exc
            finally:
                con.unregister("owners_source")
            query = (
                "SELECT CASE WHEN o.account_id IS NULL OR o.account_id = m.account_id"
                ' THEN m.conversation_id END AS conversation_id, epoch_us(m."at") AS ts,'
                " m.role, m.content, to_json(m.attachments)::VARCHAR AS attachments"
                f" FROM {_SCAN} m LEFT JOIN owners o USING (conversation_id)"
                ' WHERE epoch_us(m."at") <= $as_of'
                " ORDER BY 1, 2, m.seq, m.message_id"
            )
            try:
                relation = con.sql(query, params={"files": [str(f) for f in files], "as_of": as_of})
                stream = relation.to_arrow_reader(min(rows_per_batch, 100_000))
                yield from _numbered(regroup(stream, rows_per_batch=rows_per_batch))
            except duckdb.Error as exc:
                raise BuildError(f"DuckDB could not read the lake {self.root}: {exc}") from exc


def _conversation_rows(path: Path, conversation_id: str) -> list[LakeMessage]:
    """The rows of one file naming the conversation. Row groups whose ``conversation_id``
    statistics exclude it are skipped; of the others the ids are read first, and the other
    columns only of the row groups holding the conversation."""
    try:
        parquet = pq.ParquetFile(path)
        _check_schema(path, parquet.schema_arrow)
        tables = [
            table
            for group in _candidate_groups(parquet, conversation_id)
            if (table := _matching_rows(parquet, group, conversation_id)) is not None
        ]
    except (OSError, pa.ArrowException) as exc:
        raise BuildError(f"lake file {path} cannot be read: {exc}") from exc
    return [row for table in tables for row in _lake_messages(table)]


def _candidate_groups(parquet: pq.ParquetFile, conversation_id: str) -> list[int]:
    """The row groups whose statistics (when written) can hold the conversation."""
    metadata = parquet.metadata
    leaf = next(
        i
        for i in range(metadata.num_columns)
        if metadata.schema.column(i).path == "conversation_id"
    )
    found = []
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(leaf).statistics
        low, high = (stats.min, stats.max) if stats is not None and stats.has_min_max else (0, 0)
        if isinstance(low, str) and isinstance(high, str) and not low <= conversation_id <= high:
            continue
        found.append(group)
    return found


def _matching_rows(parquet: pq.ParquetFile, group: int, conversation_id: str) -> pa.Table | None:
    ids = parquet.read_row_group(group, columns=["conversation_id"]).column(0)
    mask = pc.equal(ids, pa.scalar(conversation_id, ids.type))
    if not pc.any(mask).as_py():
        return None
    table = parquet.read_row_group(group, columns=list(_CONVERSATION_COLUMNS))
    return table.filter(mask)


def _lake_messages(table: pa.Table) -> list[LakeMessage]:
    at = table.column("at").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()
    columns = {name: table.column(name).to_pylist() for name in _CONVERSATION_COLUMNS}
    return [
        LakeMessage(
            account_id=account,
            message=MessageRow(
                message_id=message_id,
                role=role,
                at=moment,
                seq=seq,
                content=content,
                attachments=tuple(attachments),
            ),
        )
        for message_id, account, role, moment, seq, content, attachments in zip(
            columns["message_id"],
            columns["account_id"],
            columns["role"],
            at,
            columns["seq"],
            columns["content"],
            columns["attachments"],
            strict=True,
        )
    ]


@contextlib.contextmanager
def _duckdb(memory_limit: str, workdir: Path | None) -> Iterator[duckdb.DuckDBPyConnection]:
    config: dict[str, str | bool | int | float | list[str]] = {"memory_limit": memory_limit}
    if workdir is not None:
        config["temp_directory"] = str(workdir / "lake-spill")
    try:
        con = duckdb.connect(":memory:", config=config)
    except duckdb.Error as exc:
        raise BuildError(f"DuckDB cannot start: {exc}") from exc
    try:
        yield con
    finally:
        con.close()


def _numbered(tables: Iterable[pa.Table]) -> Iterator[pa.RecordBatch]:
    """Each table as one batch of ``BATCH_SCHEMA``, ``seq`` numbering the rows of the stream."""
    start = 0
    for table in tables:
        n = table.num_rows
        seq = pa.array(range(start, start + n), pa.int64())
        start += n
        arrays: list[pa.Array[Any]] = [
            table.column("conversation_id").combine_chunks().cast(pa.string()),
            table.column("ts").combine_chunks().cast(pa.int64()),
            seq,
            table.column("role").combine_chunks().cast(pa.string()),
            table.column("content").combine_chunks().cast(pa.string()),
            table.column("attachments").combine_chunks().cast(pa.string()),
        ]
        yield pa.RecordBatch.from_arrays(arrays, schema=BATCH_SCHEMA)


def message_source(spec: str, *, memory_limit: str = "768MB") -> ParquetLake:
    """The message source named on the command line: ``parquet:PATH``."""
    if not spec.startswith(_PREFIX) or len(spec) == len(_PREFIX):
        raise BuildError(f"unknown message source {spec!r}; expected parquet:PATH (a lake)")
    return ParquetLake(root=Path(spec[len(_PREFIX) :]).absolute(), memory_limit=memory_limit)


# -- writing a lake -----------------------------------------------------------------------------


def _attachment_rows(text: str) -> list[dict[str, Any]]:
    if text == "[]":
        return []
    items: list[dict[str, Any]] = json.loads(text)
    return [
        {
            "attachment_id": a.get("attachment_id"),
            "source": a.get("source"),
            "name": a.get("name"),
            "content": a.get("content"),
        }
        for a in items
    ]


def store_messages(
    reader: StoreReader, *, as_of: int | None = None, page: int = 20_000
) -> Iterator[pa.RecordBatch]:
    """The store's messages (``at`` <= as-of when given) as ``LAKE_SCHEMA`` batches, in time
    order; ``seq`` is the message's arrival order in the store."""
    sql = (
        "SELECT conversation_id, message_id, account_id, role, at, event_seq, content,"
        " attachments FROM messages"
    )
    params: tuple[Any, ...] = ()
    if as_of is not None:
        sql += " WHERE at <= ?"
        params = (as_of,)
    sql += " ORDER BY at, event_seq"
    for rows in reader.rows(sql, params, page=page):
        columns = list(zip(*rows, strict=True))
        arrays: list[pa.Array[Any]] = [
            pa.array(columns[0], pa.string()),
            pa.array(columns[1], pa.string()),
            pa.array(columns[2], pa.string()),
            pa.array(columns[3], pa.string()),
            pa.array(columns[4], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.array(columns[5], pa.int64()),
            pa.array(columns[6], pa.string()),
            pa.array([_attachment_rows(t) for t in columns[7]], pa.list_(LAKE_ATTACHMENT)),
        ]
        yield pa.RecordBatch.from_arrays(arrays, schema=LAKE_SCHEMA)


def _with_date(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    schema = LAKE_SCHEMA.append(pa.field(PARTITION, pa.string()))
    for batch in batches:
        if batch.num_rows == 0:
            continue
        batch = pa.RecordBatch.from_arrays(
            [batch.column(name) for name in LAKE_SCHEMA.names], schema=LAKE_SCHEMA
        )
        day = pc.strftime(batch.column("at"), format="%Y-%m-%d")
        yield pa.RecordBatch.from_arrays([*batch.columns, day], schema=schema)


@dataclass(frozen=True, slots=True)
class LakeExport:
    path: Path
    messages: int
    partitions: int
    files: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "messages": self.messages,
            "partitions": self.partitions,
            "files": self.files,
        }


def write_lake(
    batches: Iterable[pa.RecordBatch], out: Path, *, rows_per_file: int = _ROWS_PER_FILE
) -> LakeExport:
    """Write ``LAKE_SCHEMA`` batches under the new directory ``out``, partitioned by date."""
    schema = LAKE_SCHEMA.append(pa.field(PARTITION, pa.string()))
    counted = 0

    def counting() -> Iterator[pa.RecordBatch]:
        nonlocal counted
        for batch in _with_date(batches):
            counted += batch.num_rows
            yield batch

    out.mkdir(mode=0o700)
    ds.write_dataset(
        pa.RecordBatchReader.from_batches(schema, counting()),
        out,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([pa.field(PARTITION, pa.string())]), flavor="hive"),
        basename_template="part-{i}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        max_rows_per_file=rows_per_file,
        max_rows_per_group=min(rows_per_file, 131_072),
        min_rows_per_group=min(rows_per_file, 65_536),
        max_open_files=256,
        file_options=ds.ParquetFileFormat().make_write_options(**_PARQUET_OPTIONS),
    )
    days = [p for p in out.iterdir() if p.is_dir()]
    files = sum(len(list(day.glob("*.parquet"))) for day in days)
    return LakeExport(path=out, messages=counted, partitions=len(days), files=files)


def export_lake(*, db: Database, out: Path, as_of: int | None = None) -> LakeExport:
    """Write the store's messages (``at`` <= as-of when given) as a lake at ``out``, from one
    read snapshot, atomically: ``out`` appears whole or not at all. Refuses an existing
    ``out``. The lake holds the messages as they are (identifiable): keep it as the store."""
    target = out.absolute()
    if target.exists() or target.is_symlink():
        raise BuildError(f"{target} already exists; a lake export never writes into it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{secrets.token_hex(6)}"
    try:
        with open_reader(db) as reader:
            written = write_lake(store_messages(reader, as_of=as_of), staging)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return LakeExport(
        path=target, messages=written.messages, partitions=written.partitions, files=written.files
    )
