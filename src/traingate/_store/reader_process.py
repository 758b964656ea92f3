"""Read snapshots of a SQLite store, held by a child process: ``SnapshotServer``.

Builds read SQLite through the Apache Arrow ADBC SQLite driver (``_store/export.py``), which
links its own copy of SQLite beside the one in Python's ``sqlite3``. SQLite keeps the
connections of one process from disturbing each other's file locks (POSIX locks belong to the
process, and closing any descriptor of a file drops all of the process's locks on it), but two
copies of SQLite in one process do not know each other. The driver's copy, opened beside the
store's own connection, would truncate the WAL index under that connection's mapping on open
(a lock of the same process never conflicts, so it believes itself alone: a concurrent reader
dies of SIGBUS), and on close drop the connection's locks, so that another process could begin
writing while that connection's transaction was still open. So the driver runs here, in a
process of its own (``python -m traingate._store.reader_main``, which runs ``main`` without
NumPy), whose locks are its own.

One such process serves every snapshot of a store (``SqliteDatabase.snapshots``): it starts at
the first and ends with the store's connection, so a build pays for starting an interpreter
with pyarrow once per store, not once per reader. Between snapshots it holds no file open.

The parent sends pickled requests on the child's standard input; the child answers each with
one frame (``traingate._pipes``) on its standard output: a tag byte, then the payload (``O`` a
pickled value, ``B`` an Arrow IPC stream of one record batch, ``E`` the end of a query's
rows, ``X`` an error message). Requests: ``("open", uri, busy_timeout_ms)`` starts a snapshot
(a read transaction, fixed by a first read) and returns its number; ``("execute", snapshot,
sql, params, page)`` returns a cursor number; ``("next", cursor)`` the cursor's next page;
``("close", cursor)``; ``("end", snapshot)`` rolls the snapshot back and closes it. At the end
of its input the child ends every snapshot and exits.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any, Literal, cast

import pyarrow as pa
import pyarrow.compute as pc

from traingate._errors import StoreError
from traingate._pipes import child_output, read_frame, write_frame

__all__ = ["Compression", "Snapshot", "SnapshotServer", "conform", "is_text"]

Compression = Literal["snappy", "none"]  # of a Parquet file the snapshot process writes

_BATCH_ROWS = "adbc.sqlite.query.batch_rows"  # adbc_driver_sqlite.StatementOptions.BATCH_ROWS


class SnapshotServer:
    """The child process holding the read snapshots of one SQLite store. One request at a
    time (a lock); every failure is a ``StoreError`` naming the cause."""

    def __init__(self) -> None:
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "traingate._store.reader_main"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError as exc:
            raise StoreError(f"cannot start the snapshot reader process: {exc}") from exc
        assert self._process.stdin is not None and self._process.stdout is not None
        self._requests: IO[bytes] = self._process.stdin
        self._replies: IO[bytes] = self._process.stdout
        self._lock = threading.Lock()
        self._broken = False

    @property
    def alive(self) -> bool:
        return not self._broken and self._process.poll() is None

    def call(self, *request: Any) -> tuple[int, memoryview]:
        """Send one request; its reply's tag and payload. An error reply is raised."""
        with self._lock:
            try:
                pickle.dump(request, self._requests, pickle.HIGHEST_PROTOCOL)
                self._requests.flush()
                frame = read_frame(self._replies)
                if frame is not None:
                    tag, payload = frame[0], memoryview(frame)[1:]
                    if tag == ord("X"):
                        raise StoreError(bytes(payload).decode("utf-8", "replace"))
                    return tag, payload
            except (OSError, ValueError) as exc:  # a broken pipe, or one already closed
                self._broken = True
                raise StoreError(f"the snapshot reader process is gone: {exc}") from exc
            self._broken = True
        raise StoreError(f"the snapshot reader process ended (exit status {self._process.poll()})")

    def open(self, *, uri: str, busy_timeout_ms: int) -> Snapshot:
        """A new snapshot of the database at ``uri`` (opened read-only)."""
        _, payload = self.call("open", uri, busy_timeout_ms)
        return Snapshot(server=self, number=pickle.loads(payload))

    def close(self) -> None:
        """End the process (and any snapshot still open) at the end of its input."""
        with self._lock:
            with contextlib.suppress(OSError):
                self._requests.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._replies.close()
            self._broken = True


class Snapshot:
    """One read snapshot held by a ``SnapshotServer``: queries over one instant."""

    def __init__(self, *, server: SnapshotServer, number: int) -> None:
        self._server, self._number = server, number

    def execute(self, sql: str, params: Sequence[Any], *, page: int) -> int:
        """Run a query on the snapshot; the cursor to read its pages from."""
        _, payload = self._server.call("execute", self._number, sql, tuple(params), page)
        cursor: int = pickle.loads(payload)
        return cursor

    def next_batch(self, cursor: int) -> pa.RecordBatch | None:
        """The cursor's next page, as the driver typed it; None after the last."""
        tag, payload = self._server.call("next", cursor)
        if tag == ord("E"):
            return None
        return pa.ipc.open_stream(pa.py_buffer(payload)).read_next_batch()

    def close_cursor(self, cursor: int) -> None:
        self._server.call("close", cursor)

    def write_parquet(
        self,
        sql: str,
        params: Sequence[Any],
        *,
        page: int,
        schema: pa.Schema,
        path: str,
        compression: Compression,
    ) -> int:
        """Write the rows of ``sql`` (``export._typed_query``'s columns, conformed to
        ``schema``) as the Parquet file ``path``, in the child: the rows never cross the
        pipe, and the caller's process spends nothing on them. The number of rows."""
        _, payload = self._server.call(
            "parquet", self._number, sql, tuple(params), page, schema, path, compression
        )
        rows: int = pickle.loads(payload)
        return rows

    def close(self) -> None:
        """End the snapshot (its read transaction and connection)."""
        if self._server.alive:
            self._server.call("end", self._number)


def is_text(kind: pa.DataType) -> bool:
    """Whether a column of this type is read as text (``export._typed_query``)."""
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def conform(raw: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A page of ``export._typed_query``'s columns as a batch of ``schema`` (explicit
    casts)."""
    arrays: list[pa.Array[Any]] = []
    position = 0
    for field in schema:
        column = raw.column(position)
        position += 1
        if is_text(field.type) and field.nullable:
            null = cast(pa.BooleanArray, raw.column(position).cast(pa.bool_()))
            position += 1
            if pc.any(null).as_py():
                column = pc.if_else(null, pa.scalar(None, field.type), column.cast(field.type))
        if column.type != field.type:
            column = column.cast(field.type)
        if not field.nullable and column.null_count:
            raise StoreError(f"reading the store: column {field.name} holds NULL")
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# -- the child ---------------------------------------------------------------------------------


def _reply(out: IO[bytes], tag: str, payload: bytes | pa.Buffer = b"") -> None:
    write_frame(out, tag.encode(), payload)


def _ipc(batch: pa.RecordBatch) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def _parameter(value: Any) -> pa.Array[Any]:
    """One bound value as an array of one, made from its bytes: ``pa.array`` would import
    pandas to ask whether the value is one of its types (half a second, in every child)."""
    if value is None:
        return pa.nulls(1)
    if isinstance(value, bool | int):
        data = int(value).to_bytes(8, "little", signed=True)
        return pa.Array.from_buffers(pa.int64(), 1, [None, pa.py_buffer(data)])
    if isinstance(value, float):
        return pa.Array.from_buffers(
            pa.float64(), 1, [None, pa.py_buffer(struct.pack("<d", value))]
        )
    if isinstance(value, str | bytes):
        data = value.encode() if isinstance(value, str) else value
        kind = pa.string() if isinstance(value, str) else pa.binary()
        offsets = pa.py_buffer(struct.pack("<ii", 0, len(data)))
        return pa.Array.from_buffers(kind, 1, [None, offsets, pa.py_buffer(data)])
    raise TypeError(f"cannot bind a parameter of type {type(value).__name__}")


class _Snapshot:
    """The child's side of one snapshot: a connection of the driver's, in a read transaction.
    The driver's low-level API (its DB-API module would import pandas: half a second)."""

    def __init__(self, uri: str, busy_timeout_ms: int) -> None:
        import adbc_driver_manager
        import adbc_driver_sqlite

        self.database = adbc_driver_sqlite.connect(uri)
        try:
            self.conn = adbc_driver_manager.AdbcConnection(self.database)
        except BaseException:
            self.database.close()
            raise
        self.cursors: set[int] = set()
        try:
            # Autocommit off: the driver opens a deferred transaction (BEGIN), so the first
            # read fixes the snapshot that every later read sees.
            self.conn.set_autocommit(False)
            for sql in (
                f"PRAGMA busy_timeout={int(busy_timeout_ms)}",
                "SELECT 1 FROM sqlite_master",
            ):
                statement, reader = self.execute(sql, (), 1)
                reader.read_all()
                reader.close()
                statement.close()
        except BaseException:
            self.close()
            raise

    def execute(
        self, sql: str, params: tuple[Any, ...], page: int
    ) -> tuple[Any, pa.RecordBatchReader]:
        import adbc_driver_manager

        statement = adbc_driver_manager.AdbcStatement(self.conn)
        try:
            statement.set_sql_query(sql)
            statement.set_options(**{_BATCH_ROWS: str(page)})
            if params:
                statement.bind(
                    pa.RecordBatch.from_arrays(
                        [_parameter(value) for value in params],
                        names=[str(i) for i in range(len(params))],
                    )
                )
            stream, _ = statement.execute_query()
            return statement, pa.RecordBatchReader.from_stream(stream)
        except BaseException:
            statement.close()
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.rollback()
        self.conn.close()
        self.database.close()


class _Server:
    """The child's snapshots and their open cursors."""

    def __init__(self) -> None:
        self.snapshots: dict[int, _Snapshot] = {}
        self.cursors: dict[int, tuple[int, Any, pa.RecordBatchReader]] = {}
        self.numbers = itertools.count(1)

    def open(self, uri: str, busy_timeout_ms: int) -> int:
        number = next(self.numbers)
        self.snapshots[number] = _Snapshot(uri, busy_timeout_ms)
        return number

    def execute(self, snapshot: int, sql: str, params: tuple[Any, ...], page: int) -> int:
        statement, reader = self.snapshots[snapshot].execute(sql, params, page)
        number = next(self.numbers)
        self.cursors[number] = (snapshot, statement, reader)
        return number

    def next(self, cursor: int) -> pa.RecordBatch | None:
        try:
            return self.cursors[cursor][2].read_next_batch()
        except StopIteration:
            return None

    def parquet(
        self,
        snapshot: int,
        sql: str,
        params: tuple[Any, ...],
        page: int,
        schema: pa.Schema,
        path: str,
        compression: Compression,
    ) -> int:
        import pyarrow.parquet as pq

        statement, reader = self.snapshots[snapshot].execute(sql, params, page)
        rows = 0
        try:
            with pq.ParquetWriter(path, schema, compression=compression) as writer:
                for raw in reader:
                    batch = conform(raw, schema)
                    writer.write_batch(batch)
                    rows += batch.num_rows
        finally:
            reader.close()
            statement.close()
        return rows

    def close(self, cursor: int) -> None:
        _, statement, reader = self.cursors.pop(cursor)
        reader.close()
        statement.close()

    def end(self, snapshot: int) -> None:
        for cursor in [c for c, (owner, _, _) in self.cursors.items() if owner == snapshot]:
            with contextlib.suppress(Exception):
                self.close(cursor)
        self.snapshots.pop(snapshot).close()

    def end_all(self) -> None:
        for snapshot in list(self.snapshots):
            with contextlib.suppress(Exception):
                self.end(snapshot)


def _serve(requests: IO[bytes], out: IO[bytes]) -> None:
    server = _Server()
    try:
        while True:
            try:
                kind, *args = pickle.load(requests)
            except EOFError:
                return
            try:
                if kind == "next":
                    batch = server.next(*args)
                    if batch is None:
                        _reply(out, "E")
                    else:
                        _reply(out, "B", _ipc(batch))
                elif kind in ("open", "execute", "parquet", "close", "end"):
                    _reply(out, "O", pickle.dumps(getattr(server, kind)(*args)))
                else:
                    _reply(out, "X", f"unknown request {kind!r}".encode())
            except Exception as exc:  # the driver's errors, as a message the parent raises
                _reply(out, "X", str(exc).encode("utf-8", "replace"))
    finally:
        server.end_all()


def main() -> None:
    """The child: serve requests on standard input until it ends. SIGINT is ignored (the
    parent decides when it stops); anything else that would print goes to standard error."""
    _serve(sys.stdin.buffer, child_output())
    # The snapshots are closed; the interpreter's teardown (a sixth of a second with pyarrow
    # loaded) would only keep the parent waiting.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
