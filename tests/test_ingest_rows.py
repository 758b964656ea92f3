"""Typed ingest rows: one dataclass per event type, its rows made from one declared column list
per table (``schema.INGEST_TABLES``), which is the migrated schema's."""

from __future__ import annotations

import dataclasses
import pickle

from traingate._core.events import EVENT_TYPES, ConsentUpdated, FeedbackSubmitted
from traingate._ingest.incoming import (
    AccountDeletedIn,
    AccountUpdatedIn,
    ConsentUpdatedIn,
    ConversationDeletedIn,
    ConversationUpdatedIn,
    FeedbackSubmittedIn,
    Incoming,
    MessageCreatedIn,
    SafetyClearedIn,
    SafetyFlaggedIn,
)
from traingate._store.db import connect
from traingate._store.schema import INGEST_TABLES, migrate

CONSENT = ConsentUpdated(
    type="consent.updated",
    event_id="e",
    at="2024-01-01T00:00:00Z",
    scope="account",
    account_id="a",
    setting="model_training",
    granted=True,
    source="settings",
)
REPORT = FeedbackSubmitted(
    type="feedback.submitted",
    event_id="e",
    at="2024-01-01T00:00:00Z",
    feedback_id="f",
    account_id="a",
    conversation_id="c",
    message_id="m",
    rating="up",
)
HEAD = (3, "e", 5, b"k" * 16, b"b" * 16)
ONE_OF_EACH: tuple[Incoming, ...] = (
    MessageCreatedIn(*HEAD, "c", "a", "m", "user", "hi", "[]"),
    AccountUpdatedIn(*HEAD, "a", "free", None, "a@example.org"),
    AccountDeletedIn(*HEAD, "a"),
    ConsentUpdatedIn(*HEAD, "account", "a", "model_training", True, "settings", CONSENT),
    ConversationUpdatedIn(*HEAD, "c", "a", "incognito", "mode", '{"title":"t"}'),
    ConversationDeletedIn(*HEAD, "c", "a"),
    FeedbackSubmittedIn(*HEAD, "c", "a", "m", "f", REPORT),
    SafetyFlaggedIn(*HEAD, "g", "c", "usage_policy", None),
    SafetyClearedIn(*HEAD, "g"),
)


def test_the_declared_columns_are_the_migrated_tables(db_url: str) -> None:
    db = connect(db_url)
    try:
        migrate(db)
        for table in INGEST_TABLES:
            if db.dialect == "sqlite":
                found = {row[1] for row in db.execute(f"PRAGMA table_info({table.name})")}
            else:
                found = {
                    row[0]
                    for row in db.execute(
                        "SELECT column_name FROM information_schema.columns"
                        " WHERE table_schema = current_schema() AND table_name = ?",
                        (table.name,),
                    )
                }
            assert found == set(table.columns), table.name
    finally:
        db.close()


def test_one_class_per_event_type_and_its_rows_follow_the_columns() -> None:
    assert sorted(type(event).type for event in ONE_OF_EACH) == sorted(EVENT_TYPES)
    columns = {table.name: table.columns for table in INGEST_TABLES}
    for event in ONE_OF_EACH:
        rows = event.rows(7)
        for table, row in rows:
            assert len(row) == len(columns[table]), (event.type, table)
            named = dict(zip(columns[table], row, strict=True))
            for column, value in named.items():
                if column in ("seq", "event_seq"):
                    assert value == 7
                else:
                    assert value == getattr(event, column), (event.type, table, column)
        tables = [table for table, _ in rows]
        if isinstance(event, FeedbackSubmittedIn):  # no seq, no time: report_events alone
            assert tables == ["report_events"]
        else:
            assert tables[-1] == "events" and len(tables) == 2


def test_the_classes_are_frozen_slotted_and_pickle_whole() -> None:
    for event in ONE_OF_EACH:
        assert not hasattr(event, "__dict__")
        assert dataclasses.fields(event)
        assert pickle.loads(pickle.dumps(event, pickle.HIGHEST_PROTOCOL)) == event
