"""One SQLite store per property test, emptied for each Hypothesis example (the ``stores``
fixture of conftest): an example starts from a store holding nothing but its schema and key
ring, as a new one would, without paying per example for a new store's migrations and for its
snapshot reader, a child process that imports pyarrow (~0.25 s of a core each).

Emptying deletes every row of every table of the store and of its vault, in one transaction, but
``schema_migrations`` (no table is AUTOINCREMENT: test_stores would see a
``sqlite_sequence`` left with rows). The stores open lazily, one per policy
specification, under the test's temporary directory, and close with the test."""

from __future__ import annotations

import contextlib
from pathlib import Path

from traingate._facade import Traingate
from traingate._settings import Settings

__all__ = ["Stores"]

_KEPT = "schema_migrations"


class Stores:
    """``empty(spec)``: the test's store under ``spec`` (None: the default policy), emptied."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._open: dict[str | None, Traingate] = {}
        self._stack = contextlib.ExitStack()

    def empty(self, spec: str | None = None) -> Traingate:
        tg = self._open.get(spec)
        if tg is None:
            path = self._root / f"store-{len(self._open)}"
            settings = Settings(
                db_url=f"sqlite:///{path / 'db.sqlite'}", key_file=path / "k.json", policy=spec
            )
            tg = self._open[spec] = self._stack.enter_context(Traingate.open(settings))
            return tg
        db = tg.store.db
        with db.transaction():
            for schema in ("main", "vault"):
                tables = db.execute(
                    f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table'"
                    " AND name <> ? AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
                    (_KEPT,),
                )
                for (name,) in tables:
                    db.execute(f'DELETE FROM {schema}."{name}"')
        return tg

    def close(self) -> None:
        self._stack.close()
