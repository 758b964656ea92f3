"""Database connections behind one small interface: SQLite (embedded default) and PostgreSQL.

SQL throughout traingate is written once with ``?`` placeholders; the PostgreSQL connection
rewrites them to ``%s``. The few real dialect differences (DDL types, write locks, IN lists,
identity columns) are answered here and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

from traingate._errors import ConfigError, StoreError
from traingate._settings import private_dir

if TYPE_CHECKING:
    from traingate._store.reader_process import SnapshotServer

__all__ = [
    "MAX_IN_LIST",
    "Database",
    "PostgresDatabase",
    "SqliteDatabase",
    "chunks",
    "connect",
    "private_dir",
    "private_file",
    "sqlite_path_of",
    "vault_path_of",
]

Row = tuple[Any, ...]
# Values in one IN list (``Database.in_list``): under SQLite's bound-parameter limit on every
# version. The store, the purge and lineage lookups read long lists this many at a time.
MAX_IN_LIST = 900


def chunks(values: Sequence[Any], size: int = MAX_IN_LIST) -> Iterator[Sequence[Any]]:
    """``values`` in consecutive slices of at most ``size`` (an IN list's worth)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


class Database(Protocol):
    """What the store needs from a database connection."""

    dialect: str
    url: str
    vault_prefix: str  # table-name prefix of the vault's tables: "vault." or "vault_"
    bytes_type: str  # the column type of binary values: "BLOB" or "BYTEA"

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def script(self, statements: Sequence[str]) -> None: ...

    def transaction(self) -> contextlib.AbstractContextManager[None]: ...

    def in_list(
        self, column: str, values: Sequence[Any], *, uses: int = 1
    ) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``: the SQL clause and its parameters, for a statement
        that repeats the clause ``uses`` times (then its only parameters)."""
        ...

    def close(self) -> None: ...


class _Transactions:
    """``transaction()`` for both backends: the outermost one is the backend's own write
    transaction (``_outermost``); nested ones join it."""

    _depth = 0

    def _outermost(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction, one writer at a time; nests as a no-op."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._outermost():
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0


class SqliteDatabase(_Transactions):
    """A SQLite file in WAL mode, with the vault's own file attached as schema ``vault``.

    The vault lives in a separate file (``<name>-vault.sqlite`` beside the main one) so that the
    file holding encrypted feedback holds no account, e-mail or conversation id at all.
    """

    dialect = "sqlite"
    vault_prefix = "vault."
    bytes_type = "BLOB"

    def __init__(self, path: Path, *, url: str) -> None:
        self.url = url
        self.path = path
        self.vault_path = vault_path_of(path)
        conn: sqlite3.Connection | None = None
        try:
            private_dir(path.parent)
            for file in (path, self.vault_path):  # SQLite gives its WAL and SHM their mode
                private_file(file)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("ATTACH DATABASE ? AS vault", (str(self.vault_path),))
            for schema in ("main", "vault"):
                conn.execute(f"PRAGMA {schema}.journal_mode=WAL")
                conn.execute(f"PRAGMA {schema}.synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:  # a file in the way, not a database, no access
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot open the SQLite store {path}: {exc}") from exc
        self._conn = conn
        self._conn.execute("PRAGMA busy_timeout=30000")
        # Checkpoint the WAL every ~64 MiB rather than every 4 MiB, so that an index page changed
        # by several batches is written back once. (The page cache stays at its default: a
        # larger one defers all of a transaction's writes to its COMMIT.)
        self._conn.execute("PRAGMA wal_autocheckpoint=16384")
        self._snapshots: SnapshotServer | None = None
        self._snapshots_lock = threading.Lock()

    def snapshots(self) -> SnapshotServer:
        """The child process holding this store's read snapshots (``_store/reader_process.py``: the
        ADBC driver's copy of SQLite must not run in this process), started on first use and
        ended with this connection."""
        from traingate._store.reader_process import SnapshotServer

        with self._snapshots_lock:
            if self._snapshots is None or not self._snapshots.alive:
                if self._snapshots is not None:  # it died: reap it, then start another
                    self._snapshots.close()
                self._snapshots = SnapshotServer()
            return self._snapshots

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite {self.path}: {exc}") from exc

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            try:
                self._conn.executemany(sql, rows)
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite {self.path}: {exc}") from exc

    def script(self, statements: Sequence[str]) -> None:
        for statement in statements:
            self.execute(statement)

    @contextlib.contextmanager
    def _outermost(self) -> Iterator[None]:
        """BEGIN IMMEDIATE: one writer at a time."""
        self.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.rollback()
            raise
        self.execute("COMMIT")

    def in_list(
        self, column: str, values: Sequence[Any], *, uses: int = 1
    ) -> tuple[str, list[Any]]:
        if not values:
            return "1 = 0", []
        if uses == 1:
            return f"{column} IN ({', '.join('?' * len(values))})", list(values)
        # Numbered parameters: every use of the clause binds the same values, bound once.
        marks = ", ".join(f"?{number}" for number in range(1, len(values) + 1))
        return f"{column} IN ({marks})", list(values)

    def close(self) -> None:
        with self._snapshots_lock:
            if self._snapshots is not None:
                self._snapshots.close()
        self._conn.close()


class PostgresDatabase(_Transactions):
    dialect = "postgresql"
    vault_prefix = "vault_"
    bytes_type = "BYTEA"
    # The advisory lock serializing the writers of one store: (traingate, the store's schema).
    # Stores in other schemas of the same database (tenants, test runs) do not wait on it.
    _LOCK_KEY = 7_106_914

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        try:
            self._conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}") from exc
        self._psycopg = psycopg
        schema_key = self.execute("SELECT hashtext(current_schema())")[0][0]
        if schema_key is None:  # the search_path names no schema that exists
            self._conn.close()
            raise StoreError(
                f"PostgreSQL at {_redact(url)}: no schema of its search_path exists; create "
                "the schema first (CREATE SCHEMA name) or name one that exists"
            )
        self._schema_key = int(schema_key)

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            cursor = self._conn.execute(self._sql(sql), tuple(params))
            return cursor.fetchall() if cursor.description is not None else []
        except self._psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: {exc}") from exc

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            try:
                with self._conn.cursor() as cursor:
                    cursor.executemany(self._sql(sql), rows)
            except self._psycopg.Error as exc:
                raise StoreError(f"PostgreSQL: {exc}") from exc

    def script(self, statements: Sequence[str]) -> None:
        for statement in statements:
            self.execute(statement)

    @contextlib.contextmanager
    def _outermost(self) -> Iterator[None]:
        """A transaction holding this schema's advisory write lock."""
        with self._conn.transaction():
            self.execute("SELECT pg_advisory_xact_lock(?, ?)", (self._LOCK_KEY, self._schema_key))
            yield

    def in_list(
        self, column: str, values: Sequence[Any], *, uses: int = 1
    ) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)] * uses

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Bulk-load rows with COPY (the fast path for large ingests)."""
        if not rows:
            return
        try:
            with (
                self._conn.cursor() as cursor,
                cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        except self._psycopg.Error as exc:
            raise StoreError(f"PostgreSQL COPY into {table}: {exc}") from exc

    def close(self) -> None:
        self._conn.close()


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


def private_file(path: Path) -> None:
    """Make ``path`` (created empty when missing) and its SQLite companions (``-wal``,
    ``-shm``, ``-journal``) readable by the owner alone: 0600, whatever the umask, and
    tightened when an older version left them group- or world-readable."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    for file in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        try:
            if file.stat().st_mode & 0o077:
                os.chmod(file, 0o600)
        except FileNotFoundError:
            pass


def vault_path_of(path: Path) -> Path:
    """The vault file beside a main SQLite file: ``x.sqlite`` -> ``x-vault.sqlite``."""
    return path.with_name(f"{path.stem}-vault{path.suffix or '.sqlite'}")


def sqlite_path_of(url: str) -> Path | None:
    """The file of a SQLite URL (``sqlite:///rel.db``, ``sqlite:////abs.db``, or a bare path)."""
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"SQLite URL {url!r} must look like sqlite:///path/to/file.sqlite")
        return Path(unquote(rest[1:]))
    if "://" in url:
        return None
    return Path(url)


def connect(url: str) -> Database:
    """Open a database by URL: ``sqlite:///…``, a file path, or ``postgresql://…``."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    path = sqlite_path_of(url)
    if path is None:
        raise ConfigError(
            f"unsupported database URL {_redact(url)!r}: use sqlite:///PATH or postgresql://…"
        )
    return SqliteDatabase(path, url=url)
