"""PostgreSQL schemas for tests. ``fresh_schema``: a new, empty schema a test or a Hypothesis
example (``support.pg_schema``) works in, dropped on exit. ``SchemaPool``: the schemas behind
conftest's ``pg_schema_url`` (every store test's PostgreSQL side), migrated once and emptied
after each test instead of created, migrated and dropped per test (~0.15 s of a core each).
Light on purpose: conftest imports it on every run."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

__all__ = ["SchemaPool", "fresh_schema", "schema_url"]

# What stays when a pooled schema is emptied: the record of the migrations that made it.
_KEPT = "schema_migrations"


def schema_url(server: str, schema: str) -> str:
    """A URL of ``server`` whose search_path is ``schema``."""
    separator = "&" if "?" in server else "?"
    return f"{server}{separator}options={quote(f'-csearch_path={schema}')}"


@contextlib.contextmanager
def fresh_schema(server: str, *, prefix: str = "tg_test") -> Iterator[str]:
    """A URL of ``server`` whose search_path is a new schema, dropped on exit."""
    import psycopg

    schema = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(server, schema)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


class SchemaPool:
    """Schemas of one test process, each migrated as the store migrates a new one (``migrate``
    opens a store on a URL) and handed to one test at a time (``schema``). After the test the
    schema is emptied (every table but ``schema_migrations`` truncated, sequences restarted)
    and kept, if its tables, columns, indexes, constraints and migrations are still those of a
    migrated schema; a schema a test changed, or could not be emptied, is dropped."""

    def __init__(self, server: str, *, migrate: Callable[[str], None]) -> None:
        self._server = server
        self._migrate = migrate
        self._idle: list[str] = []
        self._made: list[str] = []
        self._shape: tuple[Any, ...] | None = None

    @contextlib.contextmanager
    def schema(self) -> Iterator[str]:
        """A URL whose search_path is a migrated schema holding no rows."""
        name = self._idle.pop() if self._idle else self._new()
        try:
            yield schema_url(self._server, name)
        finally:
            if self._emptied(name):
                self._idle.append(name)
            else:
                self._drop(name)

    def close(self) -> None:
        """Drop every schema the pool made."""
        for name in list(self._made):
            self._drop(name)

    def _new(self) -> str:
        import psycopg

        name = f"tg_pool_{secrets.token_hex(6)}"
        with psycopg.connect(self._server, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        self._made.append(name)
        self._migrate(schema_url(self._server, name))
        shape = self._shape_of(name)
        if self._shape is None:
            self._shape = shape
        elif shape != self._shape:  # migrations are deterministic: never expected
            raise AssertionError(f"two migrated schemas differ: {name}")
        if not self._emptied(name):  # what opening the store wrote, gone
            raise AssertionError(f"a new schema could not be emptied: {name}")
        return name

    def _emptied(self, name: str) -> bool:
        import psycopg

        try:
            if self._shape_of(name) != self._shape:
                return False
            with psycopg.connect(self._server, autocommit=True) as conn:
                conn.execute("SET lock_timeout = '5s'")
                tables = [
                    f'{name}."{table}"'
                    for (table,) in conn.execute(
                        "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> %s",
                        (name, _KEPT),
                    )
                ]
                if tables:
                    conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        except psycopg.Error:  # a table gone, or a lock held past the test: drop it
            return False
        return True

    def _shape_of(self, name: str) -> tuple[Any, ...]:
        import psycopg

        with psycopg.connect(self._server, autocommit=True) as conn:
            columns = conn.execute(
                "SELECT table_name, column_name, data_type, is_nullable, column_default"
                " FROM information_schema.columns WHERE table_schema = %s"
                " ORDER BY table_name, column_name",
                (name,),
            ).fetchall()
            indexes = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s"
                " ORDER BY indexname",
                (name,),
            ).fetchall()
            constraints = conn.execute(
                "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
                " JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %s"
                " ORDER BY c.conname",
                (name,),
            ).fetchall()
            others = conn.execute(
                "SELECT c.relname, c.relkind FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s"
                " AND c.relkind NOT IN ('r', 'i', 'S') ORDER BY c.relname",
                (name,),
            ).fetchall()
            migrations = conn.execute(
                f"SELECT version, name FROM {name}.{_KEPT} ORDER BY version"
            ).fetchall()
        rows = (columns, indexes, constraints, others, migrations)
        # Defaults and definitions name the schema (nextval('<schema>.<sequence>')): left out.
        return tuple(
            tuple(tuple(_unqualified(value, name) for value in row) for row in part)
            for part in rows
        )

    def _drop(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self._server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        if name in self._made:
            self._made.remove(name)


def _unqualified(value: Any, schema: str) -> Any:
    return value.replace(f"{schema}.", "") if isinstance(value, str) else value
