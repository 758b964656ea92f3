"""``tests/stores.py``: an emptied store is a new store to a property test. It holds no row in
any table of the store or the vault but its migrations, and the same history ingested into it
is decided as in a new store, message by message, for every purpose."""

from __future__ import annotations

from pathlib import Path

from tests.factories import jsonl
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
