"""Migrations on both backends: upgrade from empty, re-open, refuse a newer schema."""

from __future__ import annotations

import json

import pytest

from traingate._core.events import canonical_json
from traingate._core.policy import default_policy
from traingate._errors import SchemaError, StoreError
from traingate._facade import Traingate
from traingate._keys import load_or_create_keys
from traingate._settings import Settings
from traingate._store.db import connect
from traingate._store.schema import MIGRATIONS, current_version, migrate

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


def test_a_search_path_without_a_schema_is_refused_clearly(pg_server: str) -> None:
    separator = "&" if "?" in pg_server else "?"
    url = f"{pg_server}{separator}options=-csearch_path%3Dtg_no_such_schema"
    with pytest.raises(StoreError, match="no schema of its search_path exists"):
        connect(url)


def test_compacting_event_keys_keeps_what_was_accepted(settings: Settings) -> None:
    """Migration 7 turns the 64-hex-character keys of events and reports into the 16-byte
    short hashes, and migration 10 drops the events' bodies: events accepted before them are
    still duplicates, or conflicts, after them."""
    account = {
        "type": "account.updated",
        "event_id": "ev-acct",
        "at": "2025-01-01T00:00:00Z",
        "account_id": "acct-1",
        "email": "a@example.org",
        "plan": "free",
        "organization_id": None,
    }
    report = {"event_id": "ev-report", "type": "feedback.submitted", "rating": "up"}
    keys = load_or_create_keys(settings.key_file)
    db = connect(settings.db_url)
    try:
        migrate(db, target=6)
        body = canonical_json(account)
        db.execute(
            "INSERT INTO events (seq, event_key, body_hash, type, at, body)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (1, keys.id_hash("event", "ev-acct"), keys.id_hash("body", body), "x", 0, body),
        )
        db.execute(
            "INSERT INTO report_events (event_key, body_hash) VALUES (?, ?)",
            (keys.id_hash("event", "ev-report"), keys.id_hash("body", canonical_json(report))),
        )
        assert migrate(db) == [m.version for m in MIGRATIONS if m.version > 6]
        assert db.execute("SELECT event_key FROM events") == [
            (keys.short_hash("event", "ev-acct"),)
        ]
        with pytest.raises(StoreError, match="body"):
            db.execute("SELECT body FROM events")
    finally:
        db.close()
    changed = {**account, "plan": "pro"}
    with Traingate.open(settings) as tg:
        summary = tg.events.ingest([json.dumps(account), json.dumps(changed)])
        assert (summary.accepted, summary.duplicates, summary.rejected) == (0, 1, 1)
        assert summary.errors[0].error.endswith(
            "event_id was already accepted with a different body"
        )
        assert tg.store.known_events([keys.short_hash("event", "ev-report")]) == {
            keys.short_hash("event", "ev-report"): keys.short_hash("body", canonical_json(report))
        }


def test_modes_and_consent_settings_keep_what_was_stored(settings: Settings) -> None:
    """Migration 12: an incognito conversation becomes mode incognito, the others standard;
    consents stored before settings were declared are of the one setting there was; the
    ledger is read by (scope, subject, setting, at) through its index."""
    db = connect(settings.db_url)
    try:
        migrate(db, target=11)
        db.executemany(
            "INSERT INTO conversations (conversation_id, account_id, first_seq, incognito)"
            " VALUES (?, ?, ?, ?)",
            [("c-inc", "a", 1, True), ("c-std", "a", 2, False)],
        )
        db.execute(
            "INSERT INTO consents (event_seq, scope, subject, at, granted, source)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (3, "account", "a", 5, True, "privacy_settings"),
        )
        assert migrate(db, target=12) == [12]
        assert sorted(db.execute("SELECT conversation_id, mode FROM conversations")) == [
            ("c-inc", "incognito"),
            ("c-std", "standard"),
        ]
        with pytest.raises(StoreError, match="incognito"):
            db.execute("SELECT incognito FROM conversations")
        assert db.execute("SELECT setting FROM consents") == [(default_policy().account_setting(),)]
        if db.dialect == "sqlite":
            plan = db.execute(
                "EXPLAIN QUERY PLAN SELECT at FROM consents"
                " WHERE scope = ? AND subject = ? AND setting = ? ORDER BY at",
                ("account", "a", "x"),
            )
            assert "consents_ledger" in " ".join(str(row) for row in plan)
        else:
            names = db.execute(  # this test's schema only: other workers migrate theirs
                "SELECT indexname FROM pg_indexes"
                " WHERE schemaname = current_schema() AND tablename = 'consents'"
            )
            assert ("consents_ledger",) in names and ("consents_subject",) not in names
    finally:
        db.close()
