"""The DuckDB engine: the policy compiled to SQL (``build.compile``), run over the store's rows.

The ledgers (plans, consents, deletions, flags, settings) are loaded once from the store's
read snapshot into a DuckDB database in the build's scratch directory. Messages then stream
through in batches of whole conversations (``StoreReader.grouped_batches``), first without
their content: each batch is decided and tallied; then only the conversations holding an
eligible message have their content read from the store, and their eligible messages are
aggregated into de-identified records. Content that no basis grants is never read. Memory is
bounded by DuckDB's ``memory_limit`` (it spills to the scratch directory) and the batch size.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from traingate.build.compile import (
    LEDGERS,
    CompiledPurpose,
    compile_purpose,
    content_query,
    message_query,
)
from traingate.build.engine import DECISION_SCHEMA, BuildRequest, EngineBatch, Tally
from traingate.build.records import ENGINE_SCHEMA, group_messages
from traingate.errors import BuildError
from traingate.store.export import StoreReader
from traingate.store.store import Store

__all__ = ["DuckDBEngine"]

_EMPTY = pa.RecordBatch.from_pylist([], schema=ENGINE_SCHEMA)


class DuckDBEngine:
    """Bulk evaluation in DuckDB. ``batch_messages`` bounds the messages decided at once."""

    name = "duckdb"

    def __init__(
        self,
        *,
        batch_messages: int = 50_000,
        memory_limit: str = "768MB",
        threads: int | None = None,
    ) -> None:
        self.batch_messages = batch_messages
        self.memory_limit = memory_limit
        self.threads = threads

    @contextlib.contextmanager
    def _connect(self, workdir: Path | None) -> Iterator[duckdb.DuckDBPyConnection]:
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": self.memory_limit
        }
        if self.threads is not None:
            config["threads"] = self.threads
        if workdir is not None:
            config["temp_directory"] = str(workdir / "duckdb-spill")
            database = str(workdir / "engine.duckdb")
        else:
            database = ":memory:"
        try:
            con = duckdb.connect(database, config=config)
        except duckdb.Error as exc:
            raise BuildError(f"DuckDB cannot start: {exc}") from exc
        try:
            yield con
        finally:
            con.close()

    def _load(
        self, con: duckdb.DuckDBPyConnection, source: StoreReader, *, as_of: int, content: bool
    ) -> None:
        for ledger in LEDGERS:
            if ledger.content and not content:
                continue
            params = (as_of,) * ledger.query.count("?")
            reader = source.reader(ledger.query, params, schema=ledger.schema)
            con.register("ledger_source", reader)
            try:
                con.execute(f"CREATE OR REPLACE TABLE {ledger.name} AS FROM ledger_source")
            finally:
                con.unregister("ledger_source")

    def run(
        self, *, request: BuildRequest, source: StoreReader, store: Store
    ) -> Iterator[EngineBatch]:
        compiled = compile_purpose(
            policy=request.policy, purpose=request.purpose, as_of=request.as_of
        )
        sql, schema = message_query(order_text=source.order_text("conversation_id"))
        with self._connect(request.workdir) as con:
            try:
                self._load(con, source, as_of=request.as_of, content=compiled.with_content)
                for statement in compiled.prepare:
                    con.execute(statement)
            except duckdb.Error as exc:
                raise BuildError(f"DuckDB could not prepare the ledgers: {exc}") from exc
            batches = (
                source.grouped_batches(
                    sql, (request.as_of,), schema=schema, rows_per_batch=self.batch_messages
                )
                if request.messages is None
                else request.messages.batches(  # a lake: its batches carry the content
                    reader=source,
                    as_of=request.as_of,
                    rows_per_batch=self.batch_messages,
                    workdir=request.workdir,
                )
            )
            for batch in batches:
                try:
                    yield self._decide(
                        con, compiled, batch, source=source, as_of=request.as_of,
                        keep=request.keep_decisions,
                    )  # fmt: skip
                except duckdb.Error as exc:
                    raise BuildError(f"DuckDB failed on a batch of messages: {exc}") from exc

    def _decide(
        self,
        con: duckdb.DuckDBPyConnection,
        compiled: CompiledPurpose,
        batch: pa.RecordBatch,
        *,
        source: StoreReader,
        as_of: int,
        keep: bool,
    ) -> EngineBatch:
        n = batch.num_rows
        table = pa.Table.from_batches([batch]).append_column(
            "idx", pa.array(range(n), type=pa.int64())
        )
        bounds = pc.min_max(batch.column("conversation_id"))
        params = {"lo": bounds["min"].as_py(), "hi": bounds["max"].as_py()}
        con.register("batch", table)
        if "content" in batch.schema.names:
            con.register("content", table)
        try:
            con.execute(compiled.decide, params)
            tally = Tally(
                counts=Counter(
                    {(basis, None if basis else reason): int(count)
                     for basis, reason, count in con.execute(compiled.tally).fetchall()}
                )
            )  # fmt: skip
            records = None
            if compiled.with_content:
                eligible = [row[0] for row in con.execute(compiled.eligible).fetchall()]
                if eligible and "content" in batch.schema.names:
                    records = con.sql(compiled.records, params=params).to_arrow_table()
                elif eligible:
                    records = self._records(con, compiled, source, eligible, as_of, params)
            decisions = (
                con.sql(
                    "SELECT conversation_id, seq, basis, reason, policy FROM decided ORDER BY idx"
                )
                .to_arrow_table()
                .cast(DECISION_SCHEMA)
                if keep
                else None
            )
        finally:
            con.unregister("batch")
            if "content" in batch.schema.names:
                con.unregister("content")
        return EngineBatch(
            records=group_messages(records) if records is not None else _EMPTY,
            tally=tally,
            messages_seen=n,
            decisions=decisions,
        )

    def _records(
        self,
        con: duckdb.DuckDBPyConnection,
        compiled: CompiledPurpose,
        source: StoreReader,
        conversations: list[str],
        as_of: int,
        params: dict[str, str],
    ) -> pa.Table:
        """Read the content of ``conversations`` (those holding an eligible message) and
        aggregate the eligible messages into records."""
        condition, values = source.in_values("conversation_id", conversations)
        sql, schema = content_query(conversations=condition)
        content = source.batch(sql, (values, as_of), schema=schema)
        con.register("content", content)
        try:
            table: pa.Table = con.sql(compiled.records, params=params).to_arrow_table()
        finally:
            con.unregister("content")
        return table
