"""Stream store tables out as Arrow record batches, from SQLite and PostgreSQL alike.

Builds read the store through a ``StoreReader``: a second, read-only connection to the same
database holding one snapshot for its whole life (a read transaction on SQLite in WAL mode,
REPEATABLE READ on PostgreSQL), so every table a build reads shows the same instant even while
ingest goes on. Rows come in pages (``fetchmany``; a server-side cursor on PostgreSQL) and leave
as ``pyarrow.RecordBatch`` of a schema the caller gives, so memory stays bounded by the page.

DuckDB's sqlite and postgres extensions are not used: the batches are handed to DuckDB (or
anything else that reads Arrow) by the caller.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote

import pyarrow as pa

from traingate.errors import StoreError
from traingate.store.db import Database, sqlite_path_of

__all__ = ["StoreReader", "open_reader", "rows_to_batch"]

_PAGE = 20_000


class _Cursor(Protocol):
    def fetchmany(self, size: int) -> Sequence[Sequence[Any]]: ...


def rows_to_batch(rows: Sequence[Sequence[Any]], schema: pa.Schema) -> pa.RecordBatch:
    """Rows (tuples in schema order) as one record batch of ``schema``."""
    if not rows:
        return pa.RecordBatch.from_pylist([], schema=schema)
    columns = list(zip(*rows, strict=True))
    arrays = [
        pa.array(column, type=field.type) for column, field in zip(columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class StoreReader:
    """A read-only snapshot of the store. Open with ``open_reader(db)``; use as a context."""

    def __init__(self, *, dialect: str, connection: Any, page: int = _PAGE) -> None:
        self.dialect = dialect
        self._conn = connection
        self._page = page
        self._names = itertools.count(1)

    # -- dialect -----------------------------------------------------------------------------

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def order_text(self, column: str) -> str:
        """``column`` ordered by its UTF-8 bytes on both backends (Python's ``str`` order)."""
        return f'{column} COLLATE "C"' if self.dialect == "postgresql" else column

    def in_values(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        """A condition ``column`` is one of ``values``, with its one parameter, for a list of
        any length (a JSON array read by json_each on SQLite, an array on PostgreSQL)."""
        if self.dialect == "postgresql":
            return f"{column} = ANY(?)", list(values)
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(list(values))

    # -- reads -------------------------------------------------------------------------------

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.fetchall(sql, params)
        return rows[0][0] if rows else None

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cursor = self._conn.execute(self._sql(sql), tuple(params))
            return [tuple(row) for row in cursor.fetchall()]
        except (sqlite3.Error, self._pg_error()) as exc:
            raise StoreError(f"reading the store: {exc}") from exc

    @contextlib.contextmanager
    def _cursor(self, sql: str, params: Sequence[Any]) -> Iterator[_Cursor]:
        try:
            if self.dialect == "postgresql":
                name = f"traingate_export_{next(self._names)}"
                with self._conn.cursor(name=name) as cursor:
                    cursor.itersize = self._page
                    cursor.execute(self._sql(sql), tuple(params))
                    yield cursor
            else:
                cursor = self._conn.execute(sql, tuple(params))
                try:
                    yield cursor
                finally:
                    cursor.close()
        except (sqlite3.Error, self._pg_error()) as exc:
            raise StoreError(f"reading the store: {exc}") from exc

    def _pg_error(self) -> type[Exception]:
        if self.dialect != "postgresql":
            return sqlite3.Error
        import psycopg

        return psycopg.Error

    def rows(
        self, sql: str, params: Sequence[Any] = (), *, page: int | None = None
    ) -> Iterator[Sequence[Sequence[Any]]]:
        """The rows of a query, one page (a list of tuples) at a time."""
        size = page or self._page
        with self._cursor(sql, params) as cursor:
            while True:
                try:
                    chunk = cursor.fetchmany(size)
                except (sqlite3.Error, self._pg_error()) as exc:
                    raise StoreError(f"reading the store: {exc}") from exc
                if not chunk:
                    return
                yield chunk

    def batches(
        self, sql: str, params: Sequence[Any] = (), *, schema: pa.Schema, page: int | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The query's rows as record batches of ``schema`` (columns in select order)."""
        for chunk in self.rows(sql, params, page=page):
            yield rows_to_batch(chunk, schema)

    def batch(self, sql: str, params: Sequence[Any] = (), *, schema: pa.Schema) -> pa.RecordBatch:
        """All rows of a query as one record batch."""
        batches = list(self.batches(sql, params, schema=schema))
        if not batches:
            return pa.RecordBatch.from_pylist([], schema=schema)
        if len(batches) == 1:
            return batches[0]
        return pa.Table.from_batches(batches, schema=schema).combine_chunks().to_batches()[0]

    def reader(
        self, sql: str, params: Sequence[Any] = (), *, schema: pa.Schema, page: int | None = None
    ) -> pa.RecordBatchReader:
        """The same as ``batches``, as a RecordBatchReader (what DuckDB scans lazily)."""
        return pa.RecordBatchReader.from_batches(
            schema, self.batches(sql, params, schema=schema, page=page)
        )

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
        index is ``key``). A batch ends at the first key change after ``rows_per_batch`` rows,
        so one key larger than that makes one larger batch.
        """
        pending: list[Sequence[Any]] = []
        for chunk in self.rows(sql, params, page=min(self._page, rows_per_batch)):
            pending.extend(chunk)
            if len(pending) < rows_per_batch:
                continue
            last = pending[-1][key]
            cut = len(pending)
            while cut > 0 and pending[cut - 1][key] == last:
                cut -= 1
            if cut == 0:  # one key so far: wait for it to end
                continue
            yield rows_to_batch(pending[:cut], schema)
            pending = pending[cut:]
        if pending:
            yield rows_to_batch(pending, schema)

    # -- life --------------------------------------------------------------------------------

    def close(self) -> None:
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


def _open_sqlite(path: Path, page: int) -> StoreReader:
    if not path.exists():
        raise StoreError(f"SQLite store {path} does not exist")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("BEGIN")  # deferred: the first read fixes the snapshot
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"SQLite {path}: cannot open a read snapshot: {exc}") from exc
    return StoreReader(dialect="sqlite", connection=conn, page=page)


def _open_postgres(url: str, page: int) -> StoreReader:
    import psycopg

    try:
        conn = psycopg.connect(url, autocommit=False)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        conn.execute("SELECT 1").fetchall()  # starts the transaction: the snapshot
        # Builds look rows up by key in batches (``in_values``): with the default costs the
        # planner scans the whole table for each batch instead of using the index, and JIT
        # compiles every such query for longer than it runs. This session only reads.
        conn.execute("SET random_page_cost = 1.1")
        conn.execute("SET jit = off")
    except psycopg.Error as exc:
        raise StoreError(f"PostgreSQL: cannot open a read snapshot: {exc}") from exc
    return StoreReader(dialect="postgresql", connection=conn, page=page)


def open_reader(db: Database, *, page: int = _PAGE) -> StoreReader:
    """A read-only snapshot connection to the same store as ``db``."""
    if db.dialect == "postgresql":
        return _open_postgres(db.url, page)
    path = sqlite_path_of(db.url)
    if path is None:
        raise StoreError(f"not a SQLite URL: {db.url}")
    return _open_sqlite(path, page)
