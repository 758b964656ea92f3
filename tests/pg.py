"""PostgreSQL for the tests: a database of the test run's own (conftest's ``pg_server``, one per
test process) and in it a fresh schema per test (``pg_schema_url``) or Hypothesis example
(``support.pg_schema``). Light on purpose: conftest imports it on every run."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

__all__ = ["fresh_schema", "run_database"]


@contextlib.contextmanager
def run_database(server: str, *, prefix: str = "tg_run") -> Iterator[str]:
    """A URL of a new database on ``server`` (from ``template0``, with the encoding and locale of
    ``server``'s database), dropped on exit.

    Every schema a test creates and drops leaves dead rows in the database's system catalogs,
    and the PostgreSQL these tests run on has autovacuum off: in the shared ``test`` database
    the catalogs only grow (tens of MB a run), and creating and migrating a schema there took
    ~120 ms instead of ~85 ms after a few runs. A database per test process starts from clean
    catalogs and takes them away. Where the role may not create databases, ``server`` itself serves.
    A run killed before its end leaves its database behind (``DROP DATABASE tg_run_...``)."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(server, autocommit=True) as conn:
            row = conn.execute(
                "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database"
                " WHERE datname = current_database()"
            ).fetchone()
            assert row is not None
            encoding, collate, ctype = row
            conn.execute(
                sql.SQL(
                    "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}"
                ).format(sql.Identifier(name), encoding, collate, ctype)
            )
    except psycopg.errors.InsufficientPrivilege:
        yield server
        return
    try:
        yield urlsplit(server)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def fresh_schema(server: str, *, prefix: str = "tg_test") -> Iterator[str]:
    """A URL of ``server`` whose search_path is a new schema, dropped on exit."""
    import psycopg

    schema = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in server else "?"
    try:
        yield f"{server}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
