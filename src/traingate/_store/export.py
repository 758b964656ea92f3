"""Stream store tables out as Arrow record batches, from SQLite and PostgreSQL alike.

Builds read the store through a ``StoreReader``: a second, read-only connection to the same
database holding one snapshot for its whole life (a read transaction on SQLite in WAL mode,
REPEATABLE READ on PostgreSQL), so every table a build reads shows the same instant even while
ingest goes on. Rows leave as ``pyarrow.RecordBatch`` of a schema the caller gives, a page at a
time, so memory stays bounded by the page.

On SQLite the connection is the Apache Arrow ADBC SQLite driver, which steps the statement in
C and fills Arrow arrays directly (no Python object per value), run in a child process of its
own (``_store/reader_process.py`` says why: the driver's copy of SQLite would drop the file locks of
this process's connection) that sends the pages back as Arrow IPC. The driver infers each
column's Arrow type from the first page it reads and refuses later values of an incompatible
type, so queries are wrapped to leave it nothing to guess (``_typed_query``): text columns are
cast to TEXT and, when nullable, read as text plus a null flag; every page is then cast to the
caller's schema. On PostgreSQL rows come from a server-side cursor (psycopg) and are turned
into Arrow here; whole tables can also be read by ``COPY`` parsed by Arrow, on one or several
connections of the snapshot (``stage_parquet``, ``staged``), each reading one range of the
table's heap blocks (``BlockRange``), so that the server reads the table once however many
connections share it.

DuckDB's sqlite and postgres extensions are not used: the batches are handed to DuckDB (or
anything else that reads Arrow) by the caller.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from traingate._errors import StoreError
from traingate._store.db import Database, SqliteDatabase
from traingate._store.reader_process import Compression, Snapshot, conform, is_text

__all__ = [
    "BLOCK_SCAN_SETTINGS",
    "BlockRange",
    "StoreReader",
    "block_ranges",
    "open_reader",
    "regroup",
    "rows_to_batch",
    "stage_parquet",
    "stage_stream",
    "table_blocks",
]

_PAGE = 20_000
_BUSY_TIMEOUT_MS = 30_000


def rows_to_batch(rows: Sequence[Sequence[Any]], schema: pa.Schema) -> pa.RecordBatch:
    """Rows (tuples in schema order) as one record batch of ``schema``."""
    if not rows:
        return _empty(schema)
    columns = list(zip(*rows, strict=True))
    arrays = [
        pa.array(column, type=field.type) for column, field in zip(columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)


def _typed_query(sql: str, schema: pa.Schema) -> str:
    """``sql`` (whose columns are ``schema``'s, in order) wrapped so that the ADBC driver's
    type inference cannot go wrong: a text column is cast to TEXT (an integer stored in it
    reads as its digits), and a nullable one is read as text that is never NULL plus a flag
    saying it was (the driver types a column whose first page is all NULL as INT64, and would
    then refuse the first text). The query's own ORDER BY carries through (SQLite flattens the
    CTE into the outer SELECT)."""
    names = [f"c{i}" for i in range(len(schema))]
    columns: list[str] = []
    for name, field in zip(names, schema, strict=True):
        if not is_text(field.type):
            columns.append(name)
        elif field.nullable:
            columns.append(f"coalesce(CAST({name} AS TEXT), '')")
            columns.append(f"{name} IS NULL")
        else:
            columns.append(f"CAST({name} AS TEXT)")
    return (
        f"WITH traingate_q({', '.join(names)}) AS ({sql})"
        f" SELECT {', '.join(columns)} FROM traingate_q"
    )


def regroup(
    batches: Iterable[pa.RecordBatch], *, rows_per_batch: int, key: str = "conversation_id"
) -> Iterator[pa.Table]:
    """Batches ordered by ``key`` as tables of about ``rows_per_batch`` rows, never splitting
    the rows of one key (one larger key makes one larger table)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        rows += batch.num_rows
        if rows < rows_per_batch:
            continue
        table = pa.Table.from_batches(pending)
        keys = table.column(key)
        cut = table.num_rows - _trailing(keys)
        if cut == 0:  # one key so far: wait for it to end
            continue
        yield table.slice(0, cut)
        rest = table.slice(cut)
        pending = rest.to_batches()
        rows = rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending)


def _trailing(keys: pa.ChunkedArray[Any]) -> int:
    """How many rows at the end hold the last key (the keys are sorted)."""
    last = keys[len(keys) - 1]
    if not last.is_valid:
        return int(pc.sum(pc.cast(pc.is_null(keys), pa.int64())).as_py() or 0)
    same = pc.equal(keys, last)  # null where a key is null: not counted
    return int(pc.sum(pc.cast(same, pa.int64())).as_py() or 0)


def _one_batch(table: pa.Table, schema: pa.Schema) -> pa.RecordBatch:
    """A table as one record batch (its columns made contiguous)."""
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else _empty(schema)


class StoreReader:
    """A read-only snapshot of the store. Open with ``open_reader(db)``; use as a context."""

    def __init__(
        self, *, dialect: str, connection: Any, page: int = _PAGE, url: str | None = None
    ) -> None:
        self.dialect = dialect
        self._conn = connection
        self._page = page
        self._url = url  # PostgreSQL: what ``export_snapshot`` names to other connections
        self._names = itertools.count(1)
        # Calls into the connection, one at a time: a build reads the store from two threads
        # (listing and deciding on one, reading content on the other), over one snapshot.
        # The lock is held per call, never while a caller holds a page. (The SQLite snapshot
        # process takes its own.)
        self._lock = threading.RLock()

    # -- dialect -----------------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def order_text(self, column: str) -> str:
        """``column`` ordered by its UTF-8 bytes on both backends (Python's ``str`` order)."""
        return f'{column} COLLATE "C"' if self.dialect == "postgresql" else column

    @property
    def message_key(self) -> str:
        """The column naming one message row within this snapshot, cheapest to read: SQLite's
        rowid (every index entry holds it, so a listing of messages by conversation and time
        reads the index alone, and a lookup by it is one B-tree descent), PostgreSQL's
        event_seq. Not an order of arrival."""
        return "event_seq" if self.dialect == "postgresql" else "rowid"

    @property
    def lookup_by_key(self) -> bool:
        """Whether rows are best looked up by ``message_key`` (SQLite) rather than by
        conversation (PostgreSQL, where event_seq has no index)."""
        return self.dialect != "postgresql"

    def in_values(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        """A condition ``column`` is one of ``values``, with its one parameter, for a list of
        any length (a JSON array read by json_each on SQLite, an array on PostgreSQL)."""
        if self.dialect == "postgresql":
            return f"{column} = ANY(?)", list(values)
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(list(values))

    def _errors(self) -> tuple[type[Exception], ...]:
        if self.dialect == "postgresql":
            import psycopg

            return (psycopg.Error,)
        # The snapshot process reports the driver's errors as StoreError; casting a page to
        # the caller's schema may raise ArrowInvalid.
        return (pa.ArrowInvalid,)

    # -- reads -------------------------------------------------------------------------------

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.fetchall(sql, params)
        return rows[0][0] if rows else None

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for page in self.rows(sql, params) for row in page]

    @contextlib.contextmanager
    def _sqlite_stream(
        self, sql: str, params: Sequence[Any], page: int
    ) -> Iterator[Iterator[pa.RecordBatch]]:
        """The pages of a query as the driver makes them (types as it inferred them)."""
        snapshot: Snapshot = self._conn
        try:
            cursor = snapshot.execute(sql, params, page=page)
        except StoreError as exc:
            raise StoreError(f"reading the store: {exc}") from exc
        try:

            def pages() -> Iterator[pa.RecordBatch]:
                while True:
                    try:
                        batch = snapshot.next_batch(cursor)
                    except StoreError as exc:
                        raise StoreError(f"reading the store: {exc}") from exc
                    if batch is None:
                        return
                    yield batch

            yield pages()
        finally:
            with contextlib.suppress(StoreError):
                snapshot.close_cursor(cursor)

    def rows(
        self, sql: str, params: Sequence[Any] = (), *, page: int | None = None
    ) -> Iterator[Sequence[Sequence[Any]]]:
        """The rows of a query, one page (a list of tuples) at a time."""
        size = page or self._page
        if self.dialect == "postgresql":
            yield from self._pg_rows(sql, params, size)
            return
        with self._sqlite_stream(sql, params, size) as pages:
            for batch in pages:
                columns = [column.to_pylist() for column in batch.columns]
                yield list(zip(*columns, strict=True))

    def _pg_rows(self, sql: str, params: Sequence[Any], size: int) -> Iterator[list[Any]]:
        errors = self._errors()
        name = f"traingate_export_{next(self._names)}"
        try:
            with self._conn.cursor(name=name) as cursor:
                cursor.itersize = size
                with self._lock:
                    cursor.execute(self._sql(sql), tuple(params))
                while True:
                    with self._lock:
                        chunk = cursor.fetchmany(size)
                    if not chunk:
                        break
                    yield chunk
        except errors as exc:
            raise StoreError(f"reading the store: {exc}") from exc

    def batches(
        self, sql: str, params: Sequence[Any] = (), *, schema: pa.Schema, page: int | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The query's rows as record batches of ``schema`` (columns in select order)."""
        size = page or self._page
        if self.dialect == "postgresql":
            for chunk in self._pg_rows(sql, params, size):
                yield rows_to_batch(chunk, schema)
            return
        errors = self._errors()
        with self._sqlite_stream(_typed_query(sql, schema), params, size) as pages:
            for raw in pages:
                try:
                    batch = conform(raw, schema)
                except errors as exc:
                    raise StoreError(f"reading the store: {exc}") from exc
                yield batch

    def batch(self, sql: str, params: Sequence[Any] = (), *, schema: pa.Schema) -> pa.RecordBatch:
        """All rows of a query as one record batch."""
        batches = list(self.batches(sql, params, schema=schema))
        return _one_batch(pa.Table.from_batches(batches, schema=schema), schema)

    def reader(
        self, sql: str, params: Sequence[Any] = (), *, schema: pa.Schema, page: int | None = None
    ) -> pa.RecordBatchReader:
        """The same as ``batches``, as a RecordBatchReader (what DuckDB scans lazily)."""
        return pa.RecordBatchReader.from_batches(
            schema, self.batches(sql, params, schema=schema, page=page)
        )

    def staged(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        schema: pa.Schema,
        streams: int = 1,
        table: str | None = None,
    ) -> pa.RecordBatchReader:
        """The query's rows as a RecordBatchReader (what DuckDB scans lazily). On PostgreSQL
        with ``streams`` > 1, staged first as Parquet by ``stage_parquet`` (``COPY`` parsed by
        Arrow, on that many connections of this snapshot, each a range of the blocks of
        ``table``, the one table the query reads from) in a temporary directory removed
        once the rows are read; else ``reader``: one connection's server-side cursor, whose
        binary rows cost this client less than ``COPY``'s (psycopg handles ``COPY`` a row at
        a time, holding the GIL: 3.1-3.5 s of client CPU per million rows against 2.6 s,
        benchmarks/stage.py). The same rows either way, in another order."""
        if self.dialect != "postgresql" or streams <= 1:
            return self.reader(sql, params, schema=schema)

        def rows() -> Iterator[pa.RecordBatch]:
            with tempfile.TemporaryDirectory(prefix="traingate-stage-") as directory:
                paths = stage_parquet(
                    self, sql, params, schema=schema, directory=Path(directory),
                    streams=streams, table=table,
                )  # fmt: skip
                for path in paths:
                    yield from pq.ParquetFile(path).iter_batches()

        return pa.RecordBatchReader.from_batches(schema, rows())

    def grouped_batches(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        schema: pa.Schema,
        key: int = 0,
        rows_per_batch: int,
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of about ``rows_per_batch`` rows, never splitting the rows of one key.

        The query must return the rows of each key together (ordered by the key column, whose
        index is ``key``). A batch ends at the last key change before ``rows_per_batch`` rows
        are pending, so one key larger than that makes one larger batch (``regroup``).
        """
        batches = self.batches(sql, params, schema=schema, page=min(self._page, rows_per_batch))
        for table in regroup(batches, rows_per_batch=rows_per_batch, key=schema.names[key]):
            yield _one_batch(table, schema)

    def write_parquet(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        schema: pa.Schema,
        path: Path,
        compression: Compression = "snappy",
    ) -> None:
        """The query's rows (columns ``schema``'s, in order) as the Parquet file ``path``,
        written where the rows are read: on SQLite by the snapshot process itself
        (``Snapshot.write_parquet``: the rows never reach this process), on PostgreSQL by
        ``copy_parquet``."""
        if self.dialect == "postgresql":
            self.copy_parquet(sql, params, schema=schema, path=path)
            return
        snapshot: Snapshot = self._conn
        try:
            snapshot.write_parquet(
                _typed_query(sql, schema), params, page=self._page, schema=schema,
                path=str(path), compression=compression,
            )  # fmt: skip
        except StoreError as exc:
            raise StoreError(f"reading the store: {exc}") from exc

    def copy_parquet(
        self, sql: str, params: Sequence[Any] = (), *, schema: pa.Schema, path: Path
    ) -> None:
        """PostgreSQL: the query's rows (columns ``schema``'s, in order) written to the
        Parquet file ``path`` through ``COPY (sql) TO STDOUT (FORMAT csv)``, spooled beside
        it and parsed by Arrow's CSV reader (which, like the network reads, runs without the
        GIL). CSV keeps NULL (unquoted, empty) apart from the empty text (quoted)."""
        from pyarrow import csv

        spool = path.with_name(path.name + ".csv")
        errors: tuple[type[Exception], ...] = (*self._errors(), pa.ArrowInvalid)
        try:
            with self._lock, self._conn.cursor() as cursor, spool.open("wb") as out:
                statement = f"COPY ({self._sql(sql)}) TO STDOUT (FORMAT csv)"
                with cursor.copy(statement, tuple(params)) as copy:
                    for data in copy:
                        out.write(data)
            if spool.stat().st_size == 0:  # no row: Arrow's reader refuses an empty file
                _write_parquet([], schema, path)
                return
            rows = csv.open_csv(
                spool,
                read_options=csv.ReadOptions(column_names=schema.names, block_size=1 << 22),
                parse_options=csv.ParseOptions(newlines_in_values=True),
                convert_options=csv.ConvertOptions(
                    column_types=schema,
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                ),
            )
            with pq.ParquetWriter(path, schema) as writer:
                for batch in rows:
                    writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
        except errors as exc:
            raise StoreError(f"reading the store: {exc}") from exc
        finally:
            spool.unlink(missing_ok=True)

    def export_snapshot(self) -> tuple[str, str]:
        """PostgreSQL: the store's URL and the id of this reader's exported snapshot
        (``pg_export_snapshot``), with which another connection, in this process or another
        (``stage_stream`` in a Spark task), reads the very same rows. Valid while this reader
        stays open. Raises StoreError on SQLite, whose snapshot one process holds."""
        if self.dialect != "postgresql" or self._url is None:
            raise StoreError("only a PostgreSQL snapshot can be shared by connections")
        import psycopg

        try:
            with self._lock:
                (snapshot,) = self._conn.execute("SELECT pg_export_snapshot()").fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: cannot export the read snapshot: {exc}") from exc
        return self._url, str(snapshot)

    # -- life --------------------------------------------------------------------------------

    def close(self) -> None:
        if self.dialect == "postgresql":
            with contextlib.suppress(Exception):
                self._conn.rollback()
        self._conn.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _open_sqlite(db: SqliteDatabase, page: int) -> StoreReader:
    path = db.path
    if not path.exists():
        raise StoreError(f"SQLite store {path} does not exist")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        snapshot = db.snapshots().open(uri=uri, busy_timeout_ms=_BUSY_TIMEOUT_MS)
    except StoreError as exc:
        raise StoreError(f"SQLite {path}: cannot open a read snapshot: {exc}") from exc
    return StoreReader(dialect="sqlite", connection=snapshot, page=page)


def _open_postgres(
    url: str, page: int, *, snapshot: str | None = None, settings: Sequence[str] = ()
) -> StoreReader:
    import psycopg
    from psycopg import sql

    try:
        conn = psycopg.connect(url, autocommit=False)
    except psycopg.Error as exc:
        raise StoreError(f"PostgreSQL: cannot open a read snapshot: {exc}") from exc
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        if snapshot is not None:  # the transaction's first statement: another's snapshot
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        conn.execute("SELECT 1").fetchall()  # starts the transaction: the snapshot
        # Builds look rows up by key in batches (``in_values``): with the default costs the
        # planner scans the whole table for each batch instead of using the index, and JIT
        # compiles every such query for longer than it runs. This session only reads.
        conn.execute("SET random_page_cost = 1.1")
        conn.execute("SET jit = off")
        for setting in settings:
            conn.execute(setting)
    except psycopg.Error as exc:
        conn.close()
        raise StoreError(f"PostgreSQL: cannot open a read snapshot: {exc}") from exc
    return StoreReader(dialect="postgresql", connection=conn, page=page, url=url)


def open_reader(db: Database, *, page: int = _PAGE) -> StoreReader:
    """A read-only snapshot connection to the same store as ``db``."""
    if db.dialect == "postgresql":
        return _open_postgres(db.url, page)
    if not isinstance(db, SqliteDatabase):
        raise StoreError(f"not a SQLite store: {db.url}")
    return _open_sqlite(db, page)


# What a stream's session sets before it reads a range of blocks: the planner would read a
# small table, or a range of most of its blocks, by scanning the whole table (its cost
# estimates differ little there), and then every stream would read the table.
BLOCK_SCAN_SETTINGS = ("SET enable_seqscan = off",)


@dataclass(frozen=True, slots=True)
class BlockRange:
    """The heap blocks ``start`` .. ``stop`` (excluded; None: to the end, blocks added after
    the count included) of one PostgreSQL table: what one staging stream reads of it, by a TID
    Range Scan (PostgreSQL 14+) that reads those blocks alone. Under one snapshot the ranges
    of ``block_ranges`` hold each row version once, so each visible row once."""

    table: str
    start: int
    stop: int | None

    def condition(self) -> str:
        """The range as a condition on ``ctid``."""
        conditions = [f"ctid >= '({self.start},0)'::tid"]
        if self.stop is not None:
            conditions.append(f"ctid < '({self.stop},0)'::tid")
        return " AND ".join(conditions)

    def query(self, sql: str) -> str:
        """``sql`` reading only this range of its table: the one ``FROM <table>`` in it (the
        table named as here, without an alias) made ``FROM (SELECT * FROM <table> WHERE
        <range>) AS <table's name>``, which the planner flattens into its scan. Raises
        StoreError when ``sql`` does not name the table once so."""
        found = list(re.finditer(rf"\bFROM {re.escape(self.table)}(?![\w.])", sql))
        if len(found) != 1:
            raise StoreError(
                f"cannot split the staging of {self.table}: the query names it"
                f" {len(found)} times after FROM, not once: {sql!r}"
            )
        name = self.table.rsplit(".", 1)[-1]
        rows = f"FROM (SELECT * FROM {self.table} WHERE {self.condition()}) AS {name}"
        return sql[: found[0].start()] + rows + sql[found[0].end() :]


def table_blocks(source: StoreReader, table: str) -> int:
    """PostgreSQL: how many heap blocks ``table`` has, read in ``source``'s transaction (after
    its snapshot was taken, so every row version the snapshot sees is in one of them)."""
    return int(
        source.scalar(
            "SELECT pg_relation_size(CAST(? AS regclass))"
            " / CAST(current_setting('block_size') AS bigint)",
            (table,),
        )
    )


def block_ranges(table: str, *, blocks: int, streams: int) -> list[BlockRange]:
    """``streams`` ranges of about equal numbers of ``table``'s ``blocks`` blocks, together
    every block once; the last open-ended (what the table grew by is in it, invisible to the
    snapshot that counted the blocks)."""
    bounds = [i * blocks // streams for i in range(streams)]
    stops: list[int | None] = [*bounds[1:], None]
    return [
        BlockRange(table=table, start=start, stop=stop)
        for start, stop in zip(bounds, stops, strict=True)
    ]


def stage_stream(
    url: str,
    snapshot: str,
    sql: str,
    params: Sequence[Any] = (),
    *,
    schema: pa.Schema,
    blocks: BlockRange | None,
    path: Path,
) -> None:
    """One stream of ``stage_parquet``, on a connection of its own that imports the exported
    ``snapshot`` (``StoreReader.export_snapshot``): the rows of ``sql`` in the range of blocks
    ``blocks`` of its table (None: all its rows), written as the Parquet file ``path``
    through ``COPY``. The server reads those blocks alone, so the streams of a table read it
    once together. Runs wherever the store is reachable: a thread of the builder or a Spark
    task (``engines/spark_stage.py``), where the rows are parsed by a process of their own."""
    query = sql if blocks is None else blocks.query(sql)
    settings = () if blocks is None else BLOCK_SCAN_SETTINGS
    reader = _open_postgres(url, _PAGE, snapshot=snapshot, settings=settings)
    try:
        reader.copy_parquet(query, params, schema=schema, path=path)
    finally:
        reader.close()


def stage_parquet(
    source: StoreReader,
    sql: str,
    params: Sequence[Any] = (),
    *,
    schema: pa.Schema,
    directory: Path,
    streams: int = 1,
    table: str | None = None,
) -> list[Path]:
    """The query's rows written as Parquet files ``part-N.parquet`` of ``directory`` (which
    must exist). On PostgreSQL through ``COPY ... TO STDOUT (FORMAT csv)`` parsed by Arrow
    (``StoreReader.copy_parquet``: no Python object per value) and, with ``streams`` > 1, on
    that many connections of the reader's exported snapshot, each a range of the blocks of
    ``table`` (the one table ``sql`` reads from: ``BlockRange.query``), on a thread of its
    own; on SQLite one file, written by the snapshot process (``write_parquet``). The same
    rows either way (in another order, and spread over the files). Raises StoreError when
    ``streams`` > 1 on PostgreSQL names no table."""
    if source.dialect != "postgresql" or streams <= 1:
        path = directory / "part-0.parquet"
        source.write_parquet(sql, params, schema=schema, path=path)
        return [path]
    if table is None:
        raise StoreError("staging on several connections needs the table the query reads")
    ranges = block_ranges(table, blocks=table_blocks(source, table), streams=streams)
    url, snapshot = source.export_snapshot()
    paths = [directory / f"part-{i}.parquet" for i in range(streams)]
    with ThreadPoolExecutor(streams) as pool:
        futures = [
            pool.submit(
                stage_stream, url, snapshot, sql, params, schema=schema, blocks=blocks, path=path
            )
            for blocks, path in zip(ranges, paths, strict=True)
        ]
        for future in futures:
            future.result()
    return paths


def _write_parquet(batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: Path) -> None:
    with pq.ParquetWriter(path, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
