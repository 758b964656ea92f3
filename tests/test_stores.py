"""``tests/stores.py``: an emptied store is a new store to a property test. It holds no row in
any table of the store or the vault but its migrations, and the same history ingested into it
is decided as in a new store, message by message, for every purpose. ``tests/pg.py``: a pooled
PostgreSQL schema comes back to the next test empty, or not at all if a test changed it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import psycopg

from tests.factories import jsonl
from tests.pg import SchemaPool
from tests.stores import Stores
from tests.support import PURPOSES, history, run_engine
from traingate._core.timeutil import parse_instant
from traingate._facade import Traingate
from traingate._settings import Settings

AS_OF = parse_instant("2024-03-01T00:00:00Z")


def test_an_emptied_store_is_a_new_store(stores: Stores, tmp_path: Path) -> None:
    used = stores.empty()
    assert used.events.ingest(jsonl(history(seed=5))).accepted > 0
    assert run_engine(used, purpose="model_training", as_of=AS_OF).decisions
    emptied = stores.empty()
    assert emptied is used
    db = emptied.store.db
    for schema in ("main", "vault"):
        for (name,) in db.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'"):
            (count,) = db.execute(f'SELECT COUNT(*) FROM {schema}."{name}"')[0]
            assert (count > 0) == (name == "schema_migrations"), (schema, name, count)

    events = jsonl(history(seed=9))
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'new.sqlite'}", key_file=tmp_path / "k")
    with Traingate.open(settings) as new:
        assert emptied.events.ingest(events) == new.events.ingest(events)
        for purpose in PURPOSES:
            got = run_engine(emptied, purpose=purpose, as_of=AS_OF)
            expected = run_engine(new, purpose=purpose, as_of=AS_OF)
            assert got.decisions == expected.decisions, purpose
            assert got.messages == expected.messages, purpose
            assert got.reports == expected.reports, purpose
            assert len(got.records) == len(expected.records), purpose


def _schema(url: str) -> str:
    return unquote(url).rpartition("search_path=")[2]


def _rows(url: str) -> dict[str, int]:
    schema = _schema(url)
    with psycopg.connect(url.partition("?")[0], autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchall()
        return {
            table: conn.execute(f'SELECT COUNT(*) FROM {schema}."{table}"').fetchone()[0]
            for (table,) in tables
        }


def test_a_pooled_schema_comes_back_empty_or_not_at_all(
    pg_pool: SchemaPool, tmp_path: Path
) -> None:
    """``tests/pg.py``: after a test its schema holds no row but its migrations, and is the
    next test's; a schema the test changed is dropped, and the next test has another."""
    with pg_pool.schema() as url:
        settings = Settings(db_url=url, key_file=tmp_path / "k")
        with Traingate.open(settings) as tg:
            assert tg.events.ingest(jsonl(history(seed=5))).accepted > 0
        assert _rows(url)["messages"] > 0
        used = _schema(url)
    with pg_pool.schema() as url:
        assert _schema(url) == used
        counts = _rows(url)
        assert counts.pop("schema_migrations") > 0
        assert counts and set(counts.values()) == {0}, counts
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE messages ADD COLUMN extra TEXT")
    with pg_pool.schema() as url:
        assert _schema(url) != used
    with psycopg.connect(url.partition("?")[0]) as conn:
        assert not conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (used,)).fetchall()
