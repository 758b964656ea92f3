"""Staging store tables as Parquet (``_store/export.stage_parquet``): on PostgreSQL, several
connections of one exported snapshot, each a range of the table's heap blocks read by a TID
Range Scan, stage exactly the rows one connection stages: none twice, none lost, none written,
changed or deleted after the snapshot."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.factories import Events, jsonl
from traingate._core.policy.compile import LEDGERS
from traingate._core.timeutil import parse_instant
from traingate._datasets.restrict import restricted_ledger
from traingate._errors import StoreError
from traingate._facade import Traingate
from traingate._settings import Settings
from traingate._store.export import (
    BLOCK_SCAN_SETTINGS,
    BlockRange,
    block_ranges,
    open_reader,
    stage_parquet,
    stage_stream,
    table_blocks,
)
from traingate._vault.vault import reports_table, usable_reports_query

T = Events.t
_AS_OF = 10**18


def _history(e: Events, accounts: range) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for a in accounts:
        organization = f"org{a % 3}" if a % 2 else None
        plan = "team" if organization else "free"
        events.append(e.account(f"a{a}", T(0), plan=plan, organization_id=organization))
        events.append(e.consent(f"a{a}", T(0, a % 50), a % 3 != 0))
        for c in range(3):
            conversation = f"a{a}-c{c}"
            style = {"tone": "brief"}
            events.append(e.conversation(conversation, f"a{a}", T(1), custom_style=style))
            for m in range(2):
                message = f"{conversation}-m{m}"
                events.append(e.message(message, conversation, f"a{a}", T(1, m)))
                if (a + c + m) % 5 == 0:
                    feedback = e.feedback(f"fb-{message}", f"a{a}", conversation, message, T(2))
                    events.append(feedback)
            if (a + c) % 7 == 0:
                events.append(e.flag(f"f{a}-{c}", conversation, T(2)))
                if a % 2:
                    events.append(e.clear(f"f{a}-{c}", T(3)))
        if a % 11 == 0:
            events.append(e.conversation_deleted(f"a{a}-c0", f"a{a}", T(4)))
        if a % 13 == 0:
            events.append(e.account_deleted(f"a{a}", T(5)))
    return events


def _rows(paths: list[Path]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for path in paths:
        table = pq.read_table(path)
        rows += list(zip(*(c.to_pylist() for c in table.columns), strict=True))
    return sorted(rows, key=repr)


def _read(batch: pa.RecordBatch) -> list[tuple[Any, ...]]:
    return sorted(zip(*(c.to_pylist() for c in batch.columns), strict=True), key=repr)


@pytest.fixture
def pg(pg_schema_url: str, tmp_path: Path) -> Any:
    settings = Settings(db_url=pg_schema_url, key_file=tmp_path / "keys.json")
    with Traingate.open(settings) as tg:
        assert tg.events.ingest(jsonl(_history(Events(), range(120)))).rejected == 0
        yield tg


def _queries(tg: Traingate) -> list[tuple[str, str, tuple[Any, ...], pa.Schema]]:
    """Every ledger's query and the vault's, as a build stages them: (table, sql, params,
    schema)."""
    from traingate._datasets.engines.spark_feedback import STORED_SCHEMA

    queries = [
        (ledger.table, ledger.query, (_AS_OF,) * ledger.query.count("?"), ledger.schema)
        for ledger in LEDGERS
    ]
    sql, params = usable_reports_query(tg.store.db.vault_prefix, parse_instant(T(5)))
    queries.append((reports_table(tg.store.db.vault_prefix), sql, params, STORED_SCHEMA))
    return queries


def _change_after_the_snapshot(url: str, prefix: str) -> None:
    """Rows updated and deleted, then the tables vacuumed, on a connection of its own:
    nothing of it is seen by a snapshot taken before."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE conversations SET mode = 'changed' WHERE conversation_id LIKE 'a1%'")
        conn.execute("DELETE FROM conversations WHERE conversation_id LIKE 'a2%'")
        conn.execute("UPDATE account_plans SET plan = 'changed' WHERE account_id LIKE 'a3%'")
        conn.execute("DELETE FROM flags WHERE flag_id LIKE 'f4%'")
        conn.execute(f"DELETE FROM {reports_table(prefix)} WHERE report_id IN"
                     f" (SELECT report_id FROM {reports_table(prefix)} LIMIT 5)")  # fmt: skip
        conn.execute("VACUUM conversations, account_plans, flags")


@pytest.mark.parametrize("streams", [1, 2, 5])
def test_block_ranges_of_one_snapshot_stage_its_rows_once(
    pg: Traingate, tmp_path: Path, streams: int
) -> None:
    """Every ledger and the vault's rows: ``streams`` connections of one exported snapshot,
    each a range of the table's blocks counted in the snapshot's transaction, stage the rows
    the snapshot holds, each once, though rows were updated, deleted and inserted (and the
    tables vacuumed) after the snapshot was exported and before the streams ran."""
    db = pg.store.db
    with open_reader(db) as reader:
        expected: dict[str, list[tuple[Any, ...]]] = {}
        ranges: dict[str, list[BlockRange]] = {}
        for table, sql, params, schema in _queries(pg):
            expected[table] = _read(reader.batch(sql, params, schema=schema))
            count = table_blocks(reader, table)
            ranges[table] = block_ranges(table, blocks=count, streams=streams)
        url, snapshot = reader.export_snapshot()
        _change_after_the_snapshot(db.url, db.vault_prefix)
        later = jsonl(_history(Events(prefix="late"), range(1_000, 1_040)))
        assert pg.events.ingest(later).rejected == 0  # inserted after the snapshot
        for table, sql, params, schema in _queries(pg):
            paths = [tmp_path / f"{table}-{i}.parquet" for i in range(streams)]
            for blocks, path in zip(ranges[table], paths, strict=True):
                stage_stream(url, snapshot, sql, params, schema=schema, blocks=blocks, path=path)
            assert expected[table] and _rows(paths) == expected[table], table
    with open_reader(db) as reader:  # a new snapshot sees the changes
        for table, sql, params, schema in _queries(pg)[:1]:
            assert _read(reader.batch(sql, params, schema=schema)) != expected[table]


@pytest.mark.parametrize("streams", [2, 5])
def test_every_stream_reads_its_own_blocks(
    pg_schema_url: str, tmp_path: Path, streams: int
) -> None:
    """A table of many blocks: each stream stages a part of it in the heap's order, together
    every row once (none of those inserted, updated or deleted after the snapshot)."""
    schema = pa.schema([("k", pa.int64()), ("v", pa.string())])
    with psycopg.connect(pg_schema_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE wide AS SELECT g AS k, md5(g::text) AS v"
                     " FROM generate_series(1, 20000) g")  # fmt: skip
    db_settings = Settings(db_url=pg_schema_url, key_file=tmp_path / "keys.json")
    with Traingate.open(db_settings) as tg, open_reader(tg.store.db) as reader:
        split = tmp_path / "split"
        split.mkdir()
        url, _ = reader.export_snapshot()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE wide SET v = 'changed' WHERE k % 7 = 0")
            conn.execute("DELETE FROM wide WHERE k % 11 = 0")
            conn.execute("INSERT INTO wide SELECT -k, v FROM wide WHERE k < 5000")
        paths = stage_parquet(
            reader, "SELECT k, v FROM wide", schema=schema, directory=split, streams=streams,
            table="wide",
        )  # fmt: skip
        parts = [pq.read_table(path).column("k").to_pylist() for path in paths]
    # The blocks were counted after the changes: the last range may hold only what the table
    # grew by since the snapshot, all of it invisible to it.
    assert all(parts[:-1]) and sorted(k for part in parts for k in part) == list(range(1, 20001))
    assert all(max(a) < min(b) for a, b in itertools.pairwise(filter(None, parts)))
    assert not any(v == "changed" for v in pq.read_table(paths[0]).column("v").to_pylist())


def _plan(url: str, sql: str, params: tuple[Any, ...]) -> str:
    """The plan of ``sql`` in a session set as a staging stream's."""
    with psycopg.connect(url) as conn:
        for setting in ("SET random_page_cost = 1.1", *BLOCK_SCAN_SETTINGS):
            conn.execute(setting)
        rows = conn.execute("EXPLAIN " + sql.replace("?", "%s"), params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_a_block_range_is_a_tid_range_scan(pg: Traingate) -> None:
    """Every ledger's query and the vault's, and the restricted queries of an incremental
    build, read a range of blocks by a TID Range Scan, not by scanning the table."""
    db = pg.store.db
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("ANALYZE")  # the planner knows how many rows the watermark keeps
    with open_reader(db) as reader:
        for table, sql, params, _ in _queries(pg):
            for blocks in block_ranges(table, blocks=10, streams=3):
                plan = _plan(db.url, blocks.query(sql), params)
                assert "Tid Range Scan" in plan and "Seq Scan" not in plan, (table, plan)
        for ledger in LEDGERS:
            query, params = restricted_ledger(
                ledger.query, (_AS_OF,) * ledger.query.count("?"), source=reader,
                conversations=None, watermark=10**6,
            )  # fmt: skip
            plan = _plan(db.url, BlockRange(ledger.table, 2, None).query(query), params)
            assert "Tid Range Scan" in plan and "Seq Scan" not in plan, (ledger.name, plan)


def test_restricted_ledgers_are_split_too(pg: Traingate, tmp_path: Path) -> None:
    """An incremental build's ledgers (some conversations, a watermark) staged on three
    connections: the rows one connection stages."""
    with open_reader(pg.store.db) as reader:
        for ledger in LEDGERS:
            query, params = restricted_ledger(
                ledger.query, (_AS_OF,) * ledger.query.count("?"), source=reader,
                conversations=[f"a{a}-c{c}" for a in range(0, 120, 3) for c in range(3)],
                watermark=10**6,
            )  # fmt: skip
            one, many = tmp_path / f"{ledger.name}-1", tmp_path / f"{ledger.name}-3"
            one.mkdir()
            many.mkdir()
            single = stage_parquet(reader, query, params, schema=ledger.schema, directory=one)
            split = stage_parquet(
                reader, query, params, schema=ledger.schema, directory=many, streams=3,
                table=ledger.table,
            )  # fmt: skip
            assert _rows(split) == _rows(single), ledger.name


def test_a_range_names_its_table_once() -> None:
    blocks = BlockRange("flags", 4, 9)
    assert blocks.query("SELECT flag_id FROM flags WHERE at <= ?") == (
        "SELECT flag_id FROM (SELECT * FROM flags WHERE ctid >= '(4,0)'::tid"
        " AND ctid < '(9,0)'::tid) AS flags WHERE at <= ?"
    )
    vault = BlockRange("vault.reports", 0, None).query("SELECT a FROM vault.reports")
    assert (
        vault == "SELECT a FROM (SELECT * FROM vault.reports WHERE ctid >= '(0,0)'::tid) AS reports"
    )
    for sql in (
        "SELECT 1",
        "SELECT a FROM flag_clears",
        "SELECT a FROM flags JOIN (SELECT 1 FROM flags) AS f ON TRUE",
    ):
        with pytest.raises(StoreError, match="cannot split the staging of flags"):
            blocks.query(sql)
    assert block_ranges("t", blocks=10, streams=3) == [
        BlockRange("t", 0, 3),
        BlockRange("t", 3, 6),
        BlockRange("t", 6, None),
    ]
    assert block_ranges("t", blocks=0, streams=2) == [
        BlockRange("t", 0, 0),
        BlockRange("t", 0, None),
    ]


def test_rows_whose_key_is_null_are_staged_once(pg: Traingate, tmp_path: Path) -> None:
    schema = pa.schema([("organization_id", pa.string()), ("account_id", pa.string())])
    sql = "SELECT organization_id, account_id FROM account_plans"
    with open_reader(pg.store.db) as reader:
        one = stage_parquet(reader, sql, schema=schema, directory=tmp_path)
        (tmp_path / "split").mkdir()
        split = stage_parquet(
            reader, sql, schema=schema, directory=tmp_path / "split", streams=4,
            table="account_plans",
        )  # fmt: skip
        with pytest.raises(StoreError, match="needs the table"):
            stage_parquet(reader, sql, schema=schema, directory=tmp_path / "split", streams=2)
    rows = _rows(one)
    assert any(organization is None for organization, _ in rows)
    assert _rows(split) == rows and len(rows) == 120


def test_sqlite_stages_on_its_one_connection(tmp_path: Path) -> None:
    """SQLite has no snapshot to share: one file, whatever ``streams`` says."""
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'data' / 'traingate.sqlite'}",
        key_file=tmp_path / "keys.json",
    )
    ledger = LEDGERS[0]
    with Traingate.open(settings) as tg:
        assert tg.events.ingest(jsonl(_history(Events(), range(10)))).rejected == 0
        with open_reader(tg.store.db) as reader:
            paths = stage_parquet(
                reader, ledger.query, schema=ledger.schema, directory=tmp_path, streams=4
            )
            assert [p.name for p in paths] == ["part-0.parquet"]
            assert len(_rows(paths)) == 30
            with pytest.raises(StoreError, match="only a PostgreSQL snapshot"):
                reader.export_snapshot()


@pytest.mark.parametrize("streams", [1, 2])
def test_copy_keeps_empty_text_null_quotes_and_newlines_apart(
    pg: Traingate, tmp_path: Path, streams: int
) -> None:
    schema = pa.schema([("k", pa.string()), ("text", pa.string()), ("n", pa.int64())])
    rows = (
        "SELECT 'a', '', 1 UNION ALL SELECT 'b', NULL, NULL UNION ALL"
        " SELECT 'c', 'x,\"y\"' || chr(10) || 'z', -5 UNION ALL SELECT 'd', ' ', 0"
    )
    with psycopg.connect(pg.store.db.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE quoting (k, text, n) AS {rows}")
    with open_reader(pg.store.db) as reader:
        paths = stage_parquet(
            reader, "SELECT k, text, n FROM quoting", schema=schema, directory=tmp_path,
            streams=streams, table="quoting",
        )  # fmt: skip
        assert _rows(paths) == [
            ("a", "", 1),
            ("b", None, None),
            ("c", 'x,"y"\nz', -5),
            ("d", " ", 0),
        ]


@pytest.mark.parametrize("streams", [2, 3])
def test_staged_rows_are_the_rows_read(
    pg: Traingate, streams: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``StoreReader.staged`` (COPY on several connections) gives every ledger's rows as
    ``reader`` does, and removes what it staged once they are read."""
    import tempfile

    # a temporary directory of this test's own: other xdist workers stage in the shared one
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = set(Path(tempfile.gettempdir()).glob("traingate-stage-*"))
    with open_reader(pg.store.db) as reader:
        for ledger in LEDGERS:
            params = (_AS_OF,) * ledger.query.count("?")
            staged = reader.staged(
                ledger.query, params, schema=ledger.schema, streams=streams, table=ledger.table
            )
            table = staged.read_all()
            assert table.schema == ledger.schema
            read = reader.batch(ledger.query, params, schema=ledger.schema)
            rows = sorted(zip(*(c.to_pylist() for c in table.columns), strict=True), key=repr)
            expected = sorted(zip(*(c.to_pylist() for c in read.columns), strict=True), key=repr)
            assert rows == expected and rows, ledger.name
    assert set(Path(tempfile.gettempdir()).glob("traingate-stage-*")) == before


def test_duckdb_builds_staged_on_several_connections_are_the_same(
    pg: Traingate, tmp_path: Path
) -> None:
    """The DuckDB engine on PostgreSQL loads its ledgers through the snapshot's cursor, or
    by COPY on ``stage_streams`` connections of it: the same parts, byte for byte, and the
    same manifest on 1 and 3 connections as the scalar engine's."""
    import json

    from traingate._datasets.builder import build_dataset
    from traingate._datasets.engines.base import BuildRequest
    from traingate._datasets.engines.duckdb import DuckDBEngine
    from traingate._datasets.engines.scalar import ScalarEngine

    request = BuildRequest(policy=pg.policies, purpose="model_training", as_of=parse_instant(T(30)))
    engines = {
        "scalar": ScalarEngine(),
        "duckdb-1": DuckDBEngine(stage_streams=1),
        "duckdb-3": DuckDBEngine(stage_streams=3),
    }
    manifests = {}
    for name, engine in engines.items():
        result = build_dataset(
            store=pg.store, vault=pg.vault, keys=pg.keys, request=request, engine=engine,
            out=tmp_path / name, rows_per_file=25,
        )  # fmt: skip
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        for varies in ("engine", "signature", "documents"):
            manifest.pop(varies, None)
        manifests[name] = manifest
        assert result.manifest["counts"]["records"] > 25
    assert manifests["duckdb-1"] == manifests["scalar"] == manifests["duckdb-3"]
    for entry in manifests["scalar"]["files"]:
        expected = (tmp_path / "scalar" / entry["path"]).read_bytes()
        for name in ("duckdb-1", "duckdb-3"):
            assert (tmp_path / name / entry["path"]).read_bytes() == expected, name
