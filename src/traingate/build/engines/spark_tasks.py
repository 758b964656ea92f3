"""What a Spark task of the Spark engine runs (``engines/spark.py``), and how the driver reads
what it returns. Imported by the Python workers: no Spark here, only DuckDB and Arrow.

A task receives its partition as Arrow batches of keyed rows (``k``: the conversation, ``tag``:
the ledger, or ``MESSAGE_TAG`` for a message), sorted by conversation with each conversation's
ledger rows first. It cuts them into batches of whole conversations (``store.export.regroup``); for
each, the batch's ledger rows become the ``l_*`` tables of the compiled SQL and its messages the
``batch`` and ``content`` tables, and the compiled statements run as in the DuckDB engine. A
batch leaves as one row (``OUTPUT``): how many messages it decided and Arrow IPC payloads of its
records (``ENGINE_SCHEMA``), its tally and, when asked, its decisions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from traingate.build.engine import DECISION_SCHEMA, EngineBatch, Tally
from traingate.build.records import ENGINE_SCHEMA, group_messages
from traingate.store.export import regroup

__all__ = ["MESSAGE_TAG", "OUTPUT", "TaskPlan", "engine_batch", "evaluate_partition"]

MESSAGE_TAG = 1_000  # after every ledger's tag: a conversation's ledger rows sort first
OUTPUT = "messages BIGINT, records BINARY, tally BINARY, decisions BINARY"
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


def evaluate_partition(
    batches: Iterator[pa.RecordBatch], *, plan: TaskPlan
) -> Iterator[pa.RecordBatch]:
    """One partition: batches of whole conversations, each decided by the compiled SQL."""
    con = duckdb.connect(":memory:", config={"memory_limit": plan.memory_limit, "threads": 1})
    try:
        for table in regroup(batches, rows_per_batch=plan.rows_per_batch, key="k"):
            out = _evaluate(con, plan, table)
            if out is not None:
                yield out
    finally:
        con.close()


def _ipc(data: pa.Table | pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write(data)
    return bytes(sink.getvalue().to_pybytes())


def _evaluate(
    con: duckdb.DuckDBPyConnection, plan: TaskPlan, rows: pa.Table
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
    arrays: list[pa.Array[Any]] = [
        pa.array([n], pa.int64()),
        pa.array([_ipc(records)], pa.binary()),
        pa.array([_ipc(tally.rename_columns(TALLY_SCHEMA.names).cast(TALLY_SCHEMA))]),
        pa.array([decisions], pa.binary()),
    ]
    return pa.RecordBatch.from_arrays(arrays, names=["messages", "records", "tally", "decisions"])


# -- back on the driver ------------------------------------------------------------------------


def _read(payload: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()


def engine_batch(
    messages: int, records: bytes, tally: bytes, decisions: bytes | None
) -> EngineBatch:
    """One task output row, read back on the driver."""
    counts: Counter[tuple[str | None, str | None]] = Counter()
    for row in _read(tally).to_pylist():
        basis = row["basis"]
        counts[(basis, None if basis else row["reason"])] += int(row["n"])
    record_table = _read(records).cast(ENGINE_SCHEMA)
    batches = record_table.combine_chunks().to_batches()
    return EngineBatch(
        records=batches[0] if batches else _EMPTY,
        tally=Tally(counts=dict(counts)),
        messages_seen=messages,
        decisions=_read(decisions) if decisions is not None else None,
    )
