"""Migrations on both backends: upgrade from empty, re-open, refuse a newer schema."""

from __future__ import annotations

import pytest

from traingate.errors import SchemaError
from traingate.store.db import connect
from traingate.store.schema import MIGRATIONS, current_version, migrate

TABLES = (
    "events",
    "account_plans",
    "account_deletions",
    "consents",
    "conversations",
    "conversation_settings",
    "conversation_deletions",
    "messages",
    "flags",
    "flag_clears",
    "feedback_keys",
    "report_events",
)


def test_upgrade_from_empty_step_by_step(db_url: str) -> None:
    db = connect(db_url)
    try:
        assert current_version(db) == 0
        for migration in MIGRATIONS:
            assert migrate(db, target=migration.version) == [migration.version]
            assert current_version(db) == migration.version
        assert migrate(db) == []
        for table in TABLES:
            assert db.execute(f"SELECT COUNT(*) FROM {table}") == [(0,)]
    finally:
        db.close()


def test_a_newer_schema_is_refused(db_url: str) -> None:
    db = connect(db_url)
    try:
        migrate(db)
        db.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (MIGRATIONS[-1].version + 1, "from the future", 0),
        )
        with pytest.raises(SchemaError, match="newer than this traingate knows"):
            migrate(db)
    finally:
        db.close()
