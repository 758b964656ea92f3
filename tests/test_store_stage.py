"""Staging store tables as Parquet (``store/export.stage_parquet``): on PostgreSQL, several
connections of one exported snapshot, each a range of key hashes, stage exactly the rows one
connection stages, and none written after the snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.factories import Events, jsonl
from traingate.app import Traingate
from traingate.build.compile import LEDGERS
from traingate.errors import StoreError
from traingate.settings import Settings
from traingate.store.export import open_reader, stage_parquet
from traingate.timeutil import parse_instant

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
                events.append(e.message(f"{conversation}-m{m}", conversation, f"a{a}", T(1, m)))
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


@pytest.fixture
def pg(pg_schema_url: str, tmp_path: Path) -> Any:
    settings = Settings(db_url=pg_schema_url, key_file=tmp_path / "keys.json")
    with Traingate.open(settings) as tg:
        assert tg.ingest(jsonl(_history(Events(), range(120)))).rejected == 0
        yield tg


@pytest.mark.parametrize("streams", [2, 3, 8])
def test_several_connections_of_one_snapshot_stage_what_one_stages(
    pg: Traingate, tmp_path: Path, streams: int
) -> None:
    """Every ledger: the same rows from ``streams`` connections as from one, each connection
    holding a part of them, and nothing ingested after the snapshot was taken."""
    with open_reader(pg.store.db) as reader:
        later = jsonl(_history(Events(prefix="late"), range(1_000, 1_040)))
        assert pg.ingest(later).rejected == 0  # committed after the snapshot: not staged
        for ledger in LEDGERS:
            params = (_AS_OF,) * ledger.query.count("?")
            one, many = tmp_path / f"{ledger.name}-1", tmp_path / f"{ledger.name}-{streams}"
            one.mkdir()
            many.mkdir()
            single = stage_parquet(
                reader, ledger.query, params, schema=ledger.schema, directory=one
            )
            split = stage_parquet(
                reader,
                ledger.query,
                params,
                schema=ledger.schema,
                directory=many,
                streams=streams,
            )
            assert len(single) == 1 and len(split) == streams
            expected = _rows(single)
            assert expected and _rows(split) == expected, ledger.name
            assert not any("a1000" in repr(row) for row in expected)
            today = reader.batch(ledger.query, params, schema=ledger.schema)
            assert _rows(single) == sorted(
                zip(*(c.to_pylist() for c in today.columns), strict=True), key=repr
            )
            if len(expected) >= 100:  # a split that splits: every connection had rows
                assert all(pq.read_metadata(path).num_rows for path in split), ledger.name
    with open_reader(pg.store.db) as reader:  # a new snapshot sees the later rows
        (count,) = reader.fetchall("SELECT COUNT(*) FROM conversations")[0]
        assert count == 3 * 160


def test_rows_whose_key_is_null_are_staged_once(pg: Traingate, tmp_path: Path) -> None:
    schema = pa.schema([("organization_id", pa.string()), ("account_id", pa.string())])
    sql = "SELECT organization_id, account_id FROM account_plans"
    with open_reader(pg.store.db) as reader:
        one = stage_parquet(reader, sql, schema=schema, directory=tmp_path)
        (tmp_path / "split").mkdir()
        split = stage_parquet(reader, sql, schema=schema, directory=tmp_path / "split", streams=4)
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
        assert tg.ingest(jsonl(_history(Events(), range(10)))).rejected == 0
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
    sql = (
        "SELECT 'a', '', 1 UNION ALL SELECT 'b', NULL, NULL UNION ALL"
        " SELECT 'c', 'x,\"y\"' || chr(10) || 'z', -5 UNION ALL SELECT 'd', ' ', 0"
    )
    with open_reader(pg.store.db) as reader:
        paths = stage_parquet(reader, sql, schema=schema, directory=tmp_path, streams=streams)
        assert _rows(paths) == [
            ("a", "", 1),
            ("b", None, None),
            ("c", 'x,"y"\nz', -5),
            ("d", " ", 0),
        ]


@pytest.mark.parametrize("streams", [2, 3])
def test_staged_rows_are_the_rows_read(pg: Traingate, streams: int) -> None:
    """``StoreReader.staged`` (COPY on several connections) gives every ledger's rows as
    ``reader`` does, and removes what it staged once they are read."""
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("traingate-stage-*"))
    with open_reader(pg.store.db) as reader:
        for ledger in LEDGERS:
            params = (_AS_OF,) * ledger.query.count("?")
            staged = reader.staged(ledger.query, params, schema=ledger.schema, streams=streams)
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

    from traingate.build.builder import build_dataset
    from traingate.build.engine import BuildRequest
    from traingate.build.engines.duckdb import DuckDBEngine
    from traingate.build.engines.scalar import ScalarEngine

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
