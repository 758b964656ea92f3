"""A fresh PostgreSQL schema a test (conftest's ``pg_schema_url``) or a Hypothesis example
(``support.pg_schema``) works in. Light on purpose: conftest imports it on every run."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from urllib.parse import quote

__all__ = ["fresh_schema"]


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
