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
import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from traingate._core.policy.compile import (
    LEDGERS,
    CompiledPurpose,
    compile_purpose,
    content_query,
    message_query,
)
from traingate._datasets.engines.base import DECISION_SCHEMA, BuildRequest, EngineBatch, Tally
from traingate._datasets.prefetch import Prefetch
from traingate._datasets.records import ENGINE_SCHEMA, group_messages
from traingate._datasets.restrict import restricted_ledger, restricted_messages
from traingate._datasets.writer import default_write_threads
from traingate._errors import BuildError
from traingate._store.export import StoreReader
from traingate._store.store import Store

__all__ = ["DuckDBEngine"]

_EMPTY = pa.RecordBatch.from_pylist([], schema=ENGINE_SCHEMA)
# The eligible messages of a decided batch: what ``compiled.records`` reads of ``decided``.
_ELIGIBLE = (
    "SELECT conversation_id, seq, basis FROM decided"
    " WHERE basis IS NOT NULL ORDER BY conversation_id, seq"
)


@dataclass(frozen=True, slots=True)
class _Decided:
    """A batch after stage one: its tally (and decisions), its eligible messages (None: none),
    the ``$lo``/``$hi`` of its conversations, and its content when the batch carried it (a
    lake)."""

    tally: Tally
    messages_seen: int
    decisions: pa.Table | None
    eligible: pa.Table | None
    params: dict[str, str]
    content: pa.Table | None


class DuckDBEngine:
    """Bulk evaluation in DuckDB. ``batch_messages`` bounds the messages decided at once.
    ``threads`` is DuckDB's own per query (None: its default, one per core): one by default,
    since the engine's stages already run their queries side by side, and splitting a batch's
    query over threads cost more processor time than it saved (on 2 cores, 200,000
    conversations: 14.7-16.5 s of CPU against 18.4 s, the build about 1 s shorter).
    ``write_threads``: the threads that write the parts, each a whole part at a time
    (``PartWriter``; None: ``default_write_threads``, one per core up to four); the parts are
    the same bytes for any number. ``stage_streams``: on PostgreSQL, more than one reads the
    ledgers by ``COPY`` on that many connections of the build's snapshot, each a range of
    the table's blocks (``StoreReader.staged``); one, the default, through the snapshot's own
    cursor, which cost this client less (benchmarks/stage.py: psycopg reads ``COPY`` a row at
    a time, holding the GIL, so more connections added no speed on 2 cores)."""

    name = "duckdb"
    writes_parts = False

    def __init__(
        self,
        *,
        batch_messages: int = 50_000,
        memory_limit: str = "768MB",
        threads: int | None = 1,
        write_threads: int | None = None,
        stage_streams: int = 1,
    ) -> None:
        self.batch_messages = batch_messages
        self.memory_limit = memory_limit
        self.threads = threads
        self.write_threads = default_write_threads() if write_threads is None else write_threads
        self.stage_streams = stage_streams

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
        self,
        con: duckdb.DuckDBPyConnection,
        source: StoreReader,
        *,
        as_of: int,
        content: bool,
        request: BuildRequest | None = None,
    ) -> None:
        """Load the ledgers that decisions read (``content``: those that only records read);
        of the request's conversations alone, as the store was at its watermark, when it
        says so (``BuildRequest.conversations``, ``watermark``)."""
        for ledger in LEDGERS:
            if ledger.content != content:
                continue
            query, params = restricted_ledger(
                ledger.query,
                (as_of,) * ledger.query.count("?"),
                source=source,
                conversations=None if request is None else request.conversations,
                watermark=None if request is None else request.watermark,
            )
            reader = source.staged(
                query, params, schema=ledger.schema, streams=self.stage_streams,
                table=ledger.table,
            )  # fmt: skip
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
        if request.tally_only:  # decisions alone: no content read, no records made
            compiled = dataclasses.replace(compiled, with_content=False)
        sql, schema = message_query(
            order_text=source.order_text("conversation_id"), key=source.message_key
        )
        sql, params = restricted_messages(
            sql,
            (request.as_of,),
            source=source,
            conversations=request.conversations,
            watermark=request.watermark,
        )
        with self._connect(request.workdir) as con:
            try:
                self._load(con, source, as_of=request.as_of, content=False, request=request)
                for statement in compiled.prepare[: -len(compiled.content_prepare) or None]:
                    con.execute(statement)
            except duckdb.Error as exc:
                raise BuildError(f"DuckDB could not prepare the ledgers: {exc}") from exc
            batches = (
                source.grouped_batches(
                    sql, params, schema=schema, rows_per_batch=self.batch_messages
                )
                if request.messages is None
                else request.messages.batches(  # a lake: its batches carry the content
                    reader=source,
                    as_of=request.as_of,
                    rows_per_batch=self.batch_messages,
                    workdir=request.workdir,
                )
            )
            # Three stages, each on its own thread, a batch or two ahead of the next: batches
            # are listed and decided (``_decided``), then the eligible messages' content is
            # read and made into de-identified rows (``_made``), then the rows are cut into
            # records on this thread (``group_messages``: Python, which the other stages
            # mostly leave free, running in DuckDB, SQLite and Arrow). The DuckDB stages have
            # a connection each and share the ledgers (tables of the database); both read the
            # store's snapshot (``StoreReader`` serializes its driver calls).
            deciding, making = con.cursor(), con.cursor()
            try:
                decided = self._decided(
                    deciding, compiled, batches, source=source, as_of=request.as_of,
                    keep=request.keep_decisions,
                )  # fmt: skip
                with Prefetch(decided) as ahead:
                    made = self._made(making, compiled, source, ahead, request)
                    with Prefetch(made, depth=1) as rows:
                        for step, table in rows:
                            yield EngineBatch(
                                records=_EMPTY if table is None else group_messages(table),
                                tally=step.tally,
                                messages_seen=step.messages_seen,
                                decisions=step.decisions,
                            )
            finally:
                deciding.close()
                making.close()

    def _decided(
        self,
        con: duckdb.DuckDBPyConnection,
        compiled: CompiledPurpose,
        batches: Iterator[pa.RecordBatch],
        *,
        source: StoreReader,
        as_of: int,
        keep: bool,
    ) -> Iterator[_Decided]:
        """Stage one: each batch decided and tallied, with its eligible messages."""
        for batch in batches:
            try:
                yield self._decide(con, compiled, batch, source=source, keep=keep)
            except duckdb.Error as exc:
                raise BuildError(f"DuckDB failed on a batch of messages: {exc}") from exc

    def _decide(
        self,
        con: duckdb.DuckDBPyConnection,
        compiled: CompiledPurpose,
        batch: pa.RecordBatch,
        *,
        source: StoreReader,
        keep: bool,
    ) -> _Decided:
        n = batch.num_rows
        table = pa.Table.from_batches([batch]).append_column(
            "idx", pa.array(range(n), type=pa.int64())
        )
        bounds = pc.min_max(batch.column("conversation_id"))
        params = {"lo": bounds["min"].as_py(), "hi": bounds["max"].as_py()}
        con.register("batch", table)
        lake = "content" in batch.schema.names  # a lake's batches carry their content
        try:
            con.execute(compiled.decide, params)
            tally = Tally(
                counts=Counter(
                    {(basis, None if basis else reason): int(count)
                     for basis, reason, count in con.execute(compiled.tally).fetchall()}
                )
            )  # fmt: skip
            eligible = None
            if compiled.with_content:
                eligible = con.sql(_ELIGIBLE).to_arrow_table()
            decisions = self._decisions(con, source, arrival=not lake) if keep else None
        finally:
            con.unregister("batch")
        return _Decided(
            tally=tally,
            messages_seen=n,
            decisions=decisions,
            eligible=eligible if eligible is not None and eligible.num_rows else None,
            params=params,
            content=table.append_column("arrival", table.column("seq")) if lake else None,
        )

    def _made(
        self,
        con: duckdb.DuckDBPyConnection,
        compiled: CompiledPurpose,
        source: StoreReader,
        steps: Iterable[_Decided],
        request: BuildRequest,
    ) -> Iterator[tuple[_Decided, pa.Table | None]]:
        """Stage two: each decided batch with its eligible messages' rows, in record order
        (their content read and de-identified; None: no eligible message). What only records
        read (settings) is loaded first, while stage one decides the first batch."""
        as_of = request.as_of
        if compiled.with_content:
            try:
                self._load(con, source, as_of=as_of, content=True, request=request)
                for statement in compiled.content_prepare:
                    con.execute(statement)
            except duckdb.Error as exc:
                raise BuildError(f"DuckDB could not prepare the ledgers: {exc}") from exc
        for step in steps:
            if step.eligible is None:
                yield step, None
                continue
            content = (
                step.content
                if step.content is not None
                else self._content(source, step.eligible, as_of)
            )
            # ``compiled.records`` reads ``decided``: here, the eligible messages alone (this
            # connection has no temp table of that name; the other stage's is its own).
            con.register("decided", step.eligible)
            con.register("content", content)
            try:
                rows = con.sql(compiled.records, params=step.params).to_arrow_table()
            except duckdb.Error as exc:
                raise BuildError(f"DuckDB failed on a batch of messages: {exc}") from exc
            finally:
                con.unregister("decided")
                con.unregister("content")
            yield step, rows

    def _content(self, source: StoreReader, eligible: pa.Table, as_of: int) -> pa.Table:
        """The content of the ``eligible`` messages (conversation id, row key and basis). On
        SQLite the rows are looked up by key, in key order; on PostgreSQL by conversation (its
        row key has no index), the eligible ones picked by the join in ``compiled.records``."""
        key = source.message_key
        if source.lookup_by_key:
            keys = pc.unique(eligible.column("seq"))
            keys = keys.take(pc.sort_indices(keys))
            condition, values = source.in_values(key, keys.to_pylist())
        else:
            conversations = pc.unique(eligible.column("conversation_id")).to_pylist()
            condition, values = source.in_values("conversation_id", conversations)
        sql, schema = content_query(rows=condition, key=key)
        # The driver's pages as they come (DuckDB scans them in place: no copy into one).
        return pa.Table.from_batches(
            list(source.batches(sql, (values, as_of), schema=schema)), schema=schema
        )

    def _decisions(
        self, con: duckdb.DuckDBPyConnection, source: StoreReader, *, arrival: bool
    ) -> pa.Table:
        """Every message's decision (``DECISION_SCHEMA``), in batch order. ``seq`` names the
        message by its arrival (event_seq) when it comes from the store, whatever row key the
        batch used (one lookup of the batch's keys)."""
        decided: pa.Table = con.sql(
            "SELECT conversation_id, seq, basis, reason, policy FROM decided ORDER BY idx"
        ).to_arrow_table()
        if arrival and source.message_key != "event_seq":
            condition, values = source.in_values(
                source.message_key, decided.column("seq").to_pylist()
            )
            arrivals = source.batch(
                f"SELECT {source.message_key}, event_seq FROM messages WHERE {condition}",
                (values,),
                schema=pa.schema([("seq", pa.int64()), ("event_seq", pa.int64())]),
            )
            con.register("arrivals", arrivals)
            try:
                decided = con.sql(
                    "SELECT d.conversation_id, a.event_seq AS seq, d.basis, d.reason, d.policy"
                    " FROM decided d JOIN arrivals a ON a.seq = d.seq ORDER BY d.idx"
                ).to_arrow_table()
            finally:
                con.unregister("arrivals")
        return decided.cast(DECISION_SCHEMA)
