"""The store's read snapshot (``_store/export.py``): one instant for a reader's whole life while
others write, Arrow batches in the caller's schema whatever the driver infers, and batches of
whole keys."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import Events, jsonl
from traingate._errors import StoreError
from traingate._facade import Traingate
from traingate._store.db import connect
from traingate._store.export import open_reader, regroup

T = Events.t
_META = pa.schema([("conversation_id", pa.string()), ("ts", pa.int64())])


def _messages(e: Events, account: str, conversations: range, per: int) -> list[str]:
    events = [e.account(account, T(0)), e.consent(account, T(0), True)]
    for c in conversations:
        for m in range(per):
            events.append(e.message(f"{account}-{c}-{m}", f"{account}-c{c:05d}", account, T(1, m)))
    return jsonl(events)


def _read_all(tg: Traingate) -> tuple[int, int]:
    with open_reader(tg.store.db) as reader:
        rows = sum(
            b.num_rows
            for b in reader.grouped_batches(
                "SELECT conversation_id, at FROM messages ORDER BY conversation_id, at",
                schema=_META,
                rows_per_batch=7,
            )
        )
        return rows, int(reader.scalar("SELECT COUNT(*) FROM messages"))


def test_a_reader_sees_one_snapshot_while_others_write(tg: Traingate, ev: Events) -> None:
    assert tg.events.ingest(_messages(ev, "a", range(3), 4)).rejected == 0
    with open_reader(tg.store.db) as reader:
        before = reader.scalar("SELECT COUNT(*) FROM messages")
        # Committed by the store's own connection after the snapshot: not seen.
        assert tg.events.ingest(_messages(ev, "b", range(5), 4)).rejected == 0
        assert tg.store.count("messages") == 32
        assert reader.scalar("SELECT COUNT(*) FROM messages") == before == 12
        pages = list(
            reader.grouped_batches(
                "SELECT conversation_id, at FROM messages WHERE at <= ?"
                f" ORDER BY {reader.order_text('conversation_id')}, at",
                (10**18,),
                schema=_META,
                rows_per_batch=5,
            )
        )
        assert sum(p.num_rows for p in pages) == 12
        assert {c for p in pages for c in p.column("conversation_id").to_pylist()} == {
            "a-c00000", "a-c00001", "a-c00002"
        }  # fmt: skip
    assert _read_all(tg) == (32, 32)  # a new reader: a new snapshot


def test_a_reader_streams_a_wal_store_being_written(tmp_path: Path, ev: Events) -> None:
    """SQLite in WAL mode: a writer commits batch after batch while a reader streams in small
    pages from its snapshot; the reader neither waits nor sees a row committed after it."""
    from traingate._settings import Settings

    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'traingate.sqlite'}", key_file=tmp_path / "keys.json"
    )
    with Traingate.open(settings) as tg:
        assert tg.store.db.execute("PRAGMA journal_mode")[0][0] == "wal"
        assert tg.events.ingest(_messages(ev, "a", range(200), 5)).rejected == 0
        batches = [_messages(Events(f"w{i}"), f"w{i}", range(20), 5) for i in range(10)]
        with open_reader(tg.store.db, page=50) as reader:
            started = threading.Event()
            failures: list[BaseException] = []

            def write() -> None:
                try:
                    with Traingate.open(settings) as writer:
                        for lines in batches:
                            writer.events.ingest(lines)
                            started.set()
                except BaseException as exc:  # reported by the main thread
                    failures.append(exc)
                    started.set()

            thread = threading.Thread(target=write)
            pages = reader.batches(
                "SELECT conversation_id, at FROM messages ORDER BY conversation_id, at",
                schema=_META,
            )
            first = next(pages)
            thread.start()
            started.wait(30)
            rows = first.num_rows + sum(p.num_rows for p in pages)
            thread.join(60)
            assert not failures, failures
            assert rows == 1000
            assert reader.scalar("SELECT COUNT(*) FROM messages") == 1000
        assert tg.store.count("messages") == 2000


def test_batches_take_the_callers_types(tmp_path: Path) -> None:
    """The ADBC driver guesses a column's type from its first page: a text column whose first
    rows are NULL, integers stored in a column meant as text, text holding digits in an integer
    column all still arrive in the caller's schema, NULLs kept."""
    db = connect(f"sqlite:///{tmp_path / 'types.sqlite'}")
    try:
        db.script(["CREATE TABLE t (k INTEGER, loose, name TEXT, n)"])
        rows = [
            (i, i if i % 3 else f"s{i}", None if i < 250 else f"n{i}", str(i)) for i in range(300)
        ]
        rows.append((300, None, "", None))
        db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
        schema = pa.schema(
            [
                pa.field("k", pa.int64(), nullable=False),
                ("loose", pa.string()),
                ("name", pa.string()),
                ("n", pa.int64()),
            ]
        )
        with open_reader(db, page=100) as reader:
            got = pa.Table.from_batches(
                list(reader.batches("SELECT k, loose, name, n FROM t ORDER BY k", schema=schema)),
                schema=schema,
            )
            one = reader.batch("SELECT k, loose, name, n FROM t ORDER BY k DESC", schema=schema)
            empty = reader.batch("SELECT k, loose, name, n FROM t WHERE k < 0", schema=schema)
        assert got.schema == schema and one.schema == schema and empty.num_rows == 0
        assert got.column("k").to_pylist() == list(range(301))
        assert one.column("k").to_pylist() == list(range(300, -1, -1))  # its ORDER BY kept
        assert got.column("loose").to_pylist()[:4] == ["s0", "1", "2", "s3"]
        assert got.column("name").to_pylist()[248:252] == [None, None, "n250", "n251"]
        assert got.column("name")[300].as_py() == ""  # empty text is not NULL
        assert got.column("loose")[300].as_py() is None
        assert got.column("n").to_pylist()[:3] == [0, 1, 2] and got.column("n")[300].as_py() is None
        with open_reader(db) as reader, pytest.raises(StoreError, match="NULL"):
            reader.batch(
                "SELECT name FROM t",
                schema=pa.schema([pa.field("name", pa.string(), nullable=False)]),
            )
        with open_reader(db) as reader, pytest.raises(StoreError, match="reading the store"):
            reader.batch("SELECT name FROM t", schema=pa.schema([("name", pa.int64())]))
        with open_reader(db) as reader, pytest.raises(StoreError, match="reading the store"):
            reader.batch("SELECT nothing FROM t", schema=pa.schema([("x", pa.int64())]))
    finally:
        db.close()


def test_a_reader_is_read_only(tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'ro.sqlite'}")
    try:
        db.script(["CREATE TABLE t (k INTEGER)"])
        with open_reader(db) as reader, pytest.raises(StoreError, match="readonly"):
            reader.fetchall("INSERT INTO t VALUES (1)")
    finally:
        db.close()


def _can_write(path: Path) -> bool:
    """Whether another process can take the write lock of the SQLite store at ``path`` now."""
    probe = (
        "import sqlite3, sys; sqlite3.connect(sys.argv[1], timeout=0).execute('BEGIN IMMEDIATE')"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 or "database is locked" in done.stderr, done.stderr
    return done.returncode == 0


def test_a_reader_leaves_the_stores_locks_alone(tmp_path: Path) -> None:
    """The driver's own copy of SQLite, opening and closing the store's files in this process,
    dropped the locks of the store's connection (POSIX locks belong to the process): another
    process could then write in the middle of this one's transaction. The snapshot lives in a
    process of its own."""
    path = tmp_path / "locks.sqlite"
    db = connect(f"sqlite:///{path}")
    try:
        db.script(["CREATE TABLE t (k INTEGER)"])
        with db.transaction():
            db.execute("INSERT INTO t VALUES (1)")
            assert not _can_write(path)
            for _ in range(2):
                with open_reader(db) as reader:
                    assert reader.scalar("SELECT COUNT(*) FROM t") == 0  # not committed
                assert not _can_write(path)
        assert _can_write(path)
    finally:
        db.close()


def test_parameters_of_every_type_reach_the_snapshot(tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'params.sqlite'}")
    try:
        with open_reader(db) as reader:
            row = reader.fetchall(
                "SELECT ?, ?, ?, ?, ?, ?, typeof(?)",
                (-(2**62), "é ✓", b"\x00\xff", 1.5, True, "", None),
            )
        assert row == [(-(2**62), "é ✓", b"\x00\xff", 1.5, 1, "", "null")]
    finally:
        db.close()


def test_a_snapshot_process_that_died_is_reported_and_replaced(tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'died.sqlite'}")
    try:
        db.script(["CREATE TABLE t (k INTEGER)", "INSERT INTO t VALUES (7)"])
        with open_reader(db) as reader:
            assert reader.scalar("SELECT k FROM t") == 7
            # One handle on the process: once it has died, db.snapshots() starts another,
            # which a second lookup would kill or wait for instead (a hang, seen in CI).
            process = db.snapshots()._process
            process.kill()
            process.wait()
            with pytest.raises(StoreError, match="snapshot reader process"):
                reader.scalar("SELECT k FROM t")
        with open_reader(db) as reader:  # a new process
            assert reader.scalar("SELECT k FROM t") == 7
    finally:
        db.close()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps")
def test_the_snapshot_process_reads_without_numpy(tmp_path: Path) -> None:
    """The child is started without NumPy (``_store/reader_main.py``), and still makes pages of
    every kind: text with NULLs (``conform``: pyarrow.compute), numbers and bytes."""
    db = connect(f"sqlite:///{tmp_path / 'lean.sqlite'}")
    try:
        db.script(
            [
                "CREATE TABLE t (k INTEGER, s TEXT, b BLOB)",
                "INSERT INTO t VALUES (1, 'a', x'00'), (2, NULL, NULL), (3, '', x'ff')",
            ]
        )
        with open_reader(db) as reader:
            assert reader.fetchall("SELECT k, s, b FROM t ORDER BY k") == [
                (1, "a", b"\x00"),
                (2, None, None),
                (3, "", b"\xff"),
            ]
            maps = Path(f"/proc/{db.snapshots()._process.pid}/maps").read_text()
        assert "pyarrow" in maps  # the child's own libraries: the check reads the right process
        assert "numpy" not in maps
    finally:
        db.close()


def test_a_missing_store_is_refused(tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'gone.sqlite'}")
    db.close()
    (tmp_path / "gone.sqlite").unlink()
    with pytest.raises(StoreError, match="does not exist"):
        open_reader(db)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=9), min_size=0, max_size=30),
    page=st.integers(min_value=1, max_value=12),
    rows_per_batch=st.integers(min_value=1, max_value=20),
)
def test_regroup_never_splits_a_key(sizes: list[int], page: int, rows_per_batch: int) -> None:
    keys = [f"k{i:03d}" for i, size in enumerate(sizes) for _ in range(size)]
    table = pa.table({"conversation_id": keys, "ts": list(range(len(keys)))}, schema=_META)
    out = list(
        regroup(
            table.to_batches(max_chunksize=page),
            key="conversation_id",
            rows_per_batch=rows_per_batch,
        )
    )
    assert all(t.schema == _META and t.num_rows for t in out)
    assert pa.concat_tables([table.slice(0, 0), *out]).equals(table)  # all rows, in order
    seen: set[str] = set()
    for batch in out:
        here = set(batch.column("conversation_id").to_pylist())
        assert not here & seen  # no key in two batches
        seen |= here
        assert batch.num_rows < rows_per_batch + page + max(sizes)  # bounded
