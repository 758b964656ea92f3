"""What a Spark task of the Spark engine runs (``engines/spark.py``), and how the driver reads
what it returns. Imported by the Python workers: DuckDB and Arrow (of Spark, only the task's
partition number).

A task receives its partition as Arrow batches of keyed rows (``k``: the conversation, ``tag``:
the ledger, or ``MESSAGE_TAG`` for a message), sorted by conversation with each conversation's
ledger rows first. It cuts them into batches of whole conversations (``store.export.regroup``); for
each, the batch's ledger rows become the ``l_*`` tables of the compiled SQL and its messages the
``batch`` and ``content`` tables, and the compiled statements run as in the DuckDB engine. A
batch leaves as one row (``OUTPUT``): its partition and position, how many messages it decided
and Arrow IPC payloads of its records (``ENGINE_SCHEMA``), its tally and, when asked, its
decisions; or, in a build (``TaskPlan.output``), the records made here (``rows``: in the
build's shape, with their record ids), their lineage items and a summary of their counts.
A second pass (``write_partition``) writes a partition's rows as parts, their names and
boundaries from where its rows start (a prefix sum the driver makes); ``assemble_part``
writes a part several partitions share from their fragments.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from traingate._datasets.engines.base import DECISION_SCHEMA, EngineBatch, PartsOut, Tally
from traingate._datasets.engines.spark_worker import task
from traingate._datasets.records import (
    ENGINE_SCHEMA,
    LineageItem,
    conversation_records,
    group_messages,
)
from traingate._datasets.shapes import as_shape, row_messages, shape_records, shape_schema
from traingate._datasets.writer import FileEntry, part_name, part_pieces, write_part
from traingate._keys import SHORT_HASH
from traingate._store.export import regroup

__all__ = [
    "ITEM_SCHEMA",
    "MESSAGE_TAG",
    "OUTPUT",
    "WRITTEN",
    "Summary",
    "TaskPlan",
    "assemble_part",
    "engine_batch",
    "evaluate_partition",
    "file_entry",
    "item_payload",
    "read_fragments",
    "read_tally",
    "write_partition",
]

MESSAGE_TAG = 1_000  # after every ledger's tag: a conversation's ledger rows sort first
OUTPUT = (
    "partition INT, batch INT, messages BIGINT, records BINARY, tally BINARY,"
    " decisions BINARY, rows BINARY, n_rows BIGINT, items BINARY, summary STRING"
)
# What a task of the second pass returns: one row per part it wrote whole (``sha256`` set) or
# per piece of a part it holds only some rows of (a fragment file, assembled afterwards).
WRITTEN = "part INT, partition INT, path STRING, rows BIGINT, sha256 STRING"
# A batch's lineage items (``OUTPUT.items``), as the lineage stage reads them
# (``engines/spark_lineage.py``): what the lineage file keeps, kind as a plain string.
_ITEM_FIELDS: list[tuple[str, pa.DataType]] = [
    ("item_key", pa.binary(SHORT_HASH)),
    ("record_id", pa.binary(32)),
    ("kind", pa.string()),
    ("messages", pa.int32()),
]
ITEM_SCHEMA = pa.schema(_ITEM_FIELDS)
_WRITTEN_FIELDS: list[tuple[str, pa.DataType]] = [
    ("part", pa.int32()),
    ("partition", pa.int32()),
    ("path", pa.string()),
    ("rows", pa.int64()),
    ("sha256", pa.string()),
]
_WRITTEN_SCHEMA = pa.schema(_WRITTEN_FIELDS)
_TALLY_FIELDS: list[tuple[str, pa.DataType]] = [
    ("basis", pa.string()),
    ("reason", pa.string()),
    ("n", pa.int64()),
]
TALLY_SCHEMA = pa.schema(_TALLY_FIELDS)
_EMPTY = pa.RecordBatch.from_pylist([], schema=ENGINE_SCHEMA)


@dataclass(frozen=True, slots=True)
class TaskPlan:
    """What each task needs (pickled to the workers): the compiled SQL and the batch shape."""

    ledgers: tuple[tuple[str, int, tuple[str, ...]], ...]  # name, tag, columns
    prepare: tuple[str, ...]
    decide: str
    tally: str
    eligible: str
    records: str
    with_content: bool
    rows_per_batch: int
    memory_limit: str
    keep_decisions: bool
    # When the tasks make the records (``BuildRequest.output``): their shape and the key of
    # record ids and lineage keys, which travels to the executors with the plan.
    output: PartsOut | None = None


@task
def evaluate_partition(
    batches: Iterator[pa.RecordBatch], *, plan: TaskPlan
) -> Iterator[pa.RecordBatch]:
    """One partition: batches of whole conversations, each decided by the compiled SQL."""
    from pyspark import TaskContext

    context = TaskContext.get()
    partition = context.partitionId() if context is not None else 0
    con = duckdb.connect(":memory:", config={"memory_limit": plan.memory_limit, "threads": 1})
    try:
        index = 0
        for table in regroup(batches, rows_per_batch=plan.rows_per_batch, key="k"):
            out = _evaluate(con, plan, table, partition=partition, index=index)
            if out is not None:
                index += 1
                yield out
    finally:
        con.close()


def _ipc(data: pa.Table | pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write(data)
    return bytes(sink.getvalue().to_pybytes())


def _evaluate(
    con: duckdb.DuckDBPyConnection, plan: TaskPlan, rows: pa.Table, *, partition: int, index: int
) -> pa.RecordBatch | None:
    """One batch of whole conversations with their ledger rows; None when it holds no
    message."""
    messages = rows.filter(pc.equal(rows.column("tag"), pa.scalar(MESSAGE_TAG)))
    n = messages.num_rows
    if n == 0:
        return None
    order = pa.array(range(n), pa.int64())
    con.register("rows", rows)
    con.register("lake", messages.append_column("idx", order))
    try:
        for name, tag, columns in plan.ledgers:
            con.execute(
                f"CREATE OR REPLACE TABLE {name} AS"
                f" SELECT DISTINCT {', '.join(columns)} FROM rows WHERE tag = {tag}"
            )
        for statement in plan.prepare:
            con.execute(statement)
        # A message of a conversation the store gives another account: unknown_account.
        con.execute(
            "CREATE OR REPLACE TABLE batch AS SELECT CASE WHEN o.account_id IS NULL"
            " OR o.account_id = m.account_id THEN m.conversation_id END AS conversation_id,"
            " m.ts, m.idx AS seq, m.idx, m.lake_seq, m.role, m.content,"
            " to_json(m.attachments)::VARCHAR AS attachments"
            " FROM lake m LEFT JOIN l_conversations o USING (conversation_id) ORDER BY m.idx"
        )
        bounds = con.execute("SELECT min(conversation_id), max(conversation_id) FROM batch")
        lo, hi = bounds.fetchone() or (None, None)
        params = {"lo": lo, "hi": hi}
        con.execute(plan.decide, params)
        tally = con.sql(plan.tally).to_arrow_table()
        records = _EMPTY
        if plan.with_content and con.execute(plan.eligible).fetchone() is not None:
            con.execute("CREATE OR REPLACE VIEW content AS SELECT *, seq AS arrival FROM batch")
            records = group_messages(con.sql(plan.records, params=params).to_arrow_table())
        decisions = None
        if plan.keep_decisions:
            picked = ", ".join(
                "b.lake_seq AS seq" if name == "seq" else f"d.{name}"
                for name in DECISION_SCHEMA.names
            )
            decisions = _ipc(
                con.sql(
                    f"SELECT {picked} FROM decided d JOIN batch b ON b.idx = d.idx ORDER BY d.idx"
                )
                .to_arrow_table()
                .cast(DECISION_SCHEMA)
            )
    finally:
        con.unregister("rows")
        con.unregister("lake")
    made = _made(records, plan.output) if plan.output is not None else None
    arrays: list[pa.Array[Any]] = [
        pa.array([partition], pa.int32()),
        pa.array([index], pa.int32()),
        pa.array([n], pa.int64()),
        pa.array([_ipc(records) if made is None else None], pa.binary()),
        pa.array([_ipc(tally.rename_columns(TALLY_SCHEMA.names).cast(TALLY_SCHEMA))]),
        pa.array([decisions], pa.binary()),
        pa.array([None if made is None else made[0]], pa.binary()),
        pa.array([0 if made is None else made[1]], pa.int64()),
        pa.array([None if made is None else made[2]], pa.binary()),
        pa.array([None if made is None else made[3]], pa.string()),
    ]
    return pa.RecordBatch.from_arrays(arrays, names=_OUTPUT_NAMES)


_OUTPUT_NAMES = [column.split()[0] for column in OUTPUT.split(",")]


def _made(records: pa.RecordBatch, output: PartsOut) -> tuple[bytes, int, bytes, str]:
    """The batch's records made in the task, as ``conversation_records`` makes them for the
    builder: the rows of the shape (Arrow IPC) and their count, the lineage items (IPC), and
    a summary (JSON: records and messages by kind and basis, the shape's messages and the
    records it left out)."""
    shape = as_shape(output.shape)
    made, items = conversation_records(records, signing_key=output.signing_key)
    shaped = shape_records(made, shape=shape)
    counts: Counter[tuple[str, str]] = Counter()
    sizes: Counter[tuple[str, str]] = Counter()
    lengths = pc.list_value_length(made.column("messages")).to_pylist()
    for basis, n in zip(made.column("basis").to_pylist(), lengths, strict=True):
        counts[("conversation", str(basis))] += 1
        sizes[("conversation", str(basis))] += int(n or 0)
    summary = Summary(
        counts={key: (counts[key], sizes[key]) for key in counts},
        messages=row_messages(shape, shaped.rows),
        left_out=dict(shaped.left_out),
    )
    rows = shaped.rows.cast(shape_schema(shape))
    return _ipc(rows), rows.num_rows, item_payload(items), summary.to_json()


def item_payload(items: Sequence[LineageItem]) -> bytes:
    """Lineage items as a batch row's ``items`` payload (Arrow IPC of ``ITEM_SCHEMA``)."""
    table = pa.table(
        {
            "item_key": [bytes.fromhex(i.item_key[: 2 * SHORT_HASH]) for i in items],
            "record_id": [bytes.fromhex(i.record_id) for i in items],
            "kind": [i.kind for i in items],
            "messages": [i.messages for i in items],
        },
        schema=ITEM_SCHEMA,
    )
    return _ipc(table)


@dataclass(frozen=True, slots=True)
class Summary:
    """What a batch's records add up to (``Written``'s counts), as it travels in JSON."""

    counts: Mapping[tuple[str, str], tuple[int, int]]
    messages: int
    left_out: Mapping[str, int]

    def to_json(self) -> str:
        return json.dumps(
            {
                "counts": [[k, b, r, m] for (k, b), (r, m) in sorted(self.counts.items())],
                "messages": self.messages,
                "left_out": dict(sorted(self.left_out.items())),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Summary:
        data = json.loads(text)
        return cls(
            counts={(str(k), str(b)): (int(r), int(m)) for k, b, r, m in data["counts"]},
            messages=int(data["messages"]),
            left_out={str(k): int(v) for k, v in data["left_out"].items()},
        )


# -- the second pass: the parts, written where the rows are ------------------------------------


@task
def write_partition(
    batches: Iterator[pa.RecordBatch],
    *,
    output: PartsOut,
    starts: Mapping[int, int],
    fragments: str,
) -> Iterator[pa.RecordBatch]:
    """One partition's rows (the first pass's, in order) written as parts: the parts wholly
    inside its rows directly into ``output.directory``, the pieces of parts it shares with
    its neighbours as Arrow IPC fragment files in ``fragments`` (``assemble_part``). Where its
    rows start in the dataset (``starts``, a prefix sum over the partitions' counts, made by
    the driver) names its parts and fixes their boundaries."""
    schema = shape_schema(as_shape(output.shape))
    partition, rows = _rows(batches, schema)
    start = starts.get(partition, 0)
    count = sum(batch.num_rows for batch in rows)
    if count == 0:
        return
    table = pa.Table.from_batches(rows, schema=schema)
    out: list[tuple[int, str, int, str | None]] = []
    for piece in part_pieces(start=start, count=count, rows_per_file=output.rows_per_file):
        slice_ = table.slice(piece.begin, piece.end - piece.begin)
        if piece.whole:
            path = output.directory / part_name(piece.part, output.format)
            entry = write_part(path, slice_.to_batches(), format=output.format, schema=schema)
            out.append((piece.part, entry.path, entry.rows, entry.sha256))
        else:
            path = Path(fragments) / f"part-{piece.part:05d}.{partition:05d}.arrows"
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
                writer.write_table(slice_)
            out.append((piece.part, str(path), slice_.num_rows, None))
    yield pa.RecordBatch.from_pylist(
        [
            {"part": p, "partition": partition, "path": path, "rows": n, "sha256": sha}
            for p, path, n, sha in out
        ],
        schema=_WRITTEN_SCHEMA,
    )


def _rows(batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> tuple[int, list[pa.RecordBatch]]:
    """The partition (as the first pass numbered it) and the shape's rows of its output rows,
    in batch order."""
    found: list[tuple[int, pa.Table]] = []
    partitions: set[int] = set()
    for batch in batches:
        partitions.update(int(p or 0) for p in batch.column("partition").to_pylist())
        for index, payload in zip(
            batch.column("batch").to_pylist(), batch.column("rows").to_pylist(), strict=True
        ):
            if payload is not None:
                found.append((int(index or 0), _read(payload)))
    if len(partitions) > 1:
        raise ValueError(f"a task of the second pass holds partitions {sorted(partitions)}")
    found.sort(key=lambda pair: pair[0])
    partition = partitions.pop() if partitions else 0
    return partition, [b for _, table in found for b in table.cast(schema).to_batches()]


def assemble_part(
    part: int, fragments: Sequence[str], *, output: PartsOut
) -> tuple[int, str, int, str]:
    """A part whose rows several partitions hold: its fragment files (in partition order)
    written as the part, by ``write_part`` as every other part."""
    schema = shape_schema(as_shape(output.shape))
    path = output.directory / part_name(part, output.format)
    entry = write_part(path, read_fragments(fragments), format=output.format, schema=schema)
    return part, entry.path, entry.rows, entry.sha256


def read_fragments(fragments: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """The rows of fragment files, in order, a batch at a time (read into memory: a batch
    outlives its file's handle)."""
    for fragment in fragments:
        with pa.OSFile(fragment, "rb") as source:
            reader = pa.ipc.open_file(source)
            for index in range(reader.num_record_batches):
                yield reader.get_batch(index)


def file_entry(path: str, rows: int, sha256: str) -> FileEntry:
    return FileEntry(path=path, rows=rows, sha256=sha256)


# -- back on the driver ------------------------------------------------------------------------


def _read(payload: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()


def read_tally(tally: bytes) -> Tally:
    counts: Counter[tuple[str | None, str | None]] = Counter()
    for row in _read(tally).to_pylist():
        basis = row["basis"]
        counts[(basis, None if basis else row["reason"])] += int(row["n"])
    return Tally(counts=dict(counts))


def engine_batch(
    messages: int, records: bytes, tally: bytes, decisions: bytes | None
) -> EngineBatch:
    """One task output row, read back on the driver."""
    record_table = _read(records).cast(ENGINE_SCHEMA)
    batches = record_table.combine_chunks().to_batches()
    return EngineBatch(
        records=batches[0] if batches else _EMPTY,
        tally=read_tally(tally),
        messages_seen=messages,
        decisions=_read(decisions) if decisions is not None else None,
    )
