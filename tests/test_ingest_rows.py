"""Typed ingest rows: one record per event type (a tuple of named fields), its rows made from one
declared column list per table (``schema.INGEST_TABLES``), which is the migrated schema's."""

from __future__ import annotations

import pickle
import typing
from typing import Any

import pytest

from tests.factories import Events
from traingate._core.events import (
    EVENT_TYPES,
    ConsentUpdated,
    FeedbackSubmitted,
    canonical_json,
    parse_event,
)
from traingate._ingest.incoming import (
    _MAKERS,
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
    _incoming,
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


def test_the_classes_are_immutable_slotted_and_pickle_whole() -> None:
    for event in ONE_OF_EACH:
        assert not hasattr(event, "__dict__")
        assert type(event)._fields[:5] == ("line", "event_id", "at", "event_key", "body_hash")
        with pytest.raises(AttributeError):
            event.line = 4  # type: ignore[misc]
        again = pickle.loads(pickle.dumps(event, pickle.HIGHEST_PROTOCOL))
        assert again == event and type(again) is type(event)


def test_each_event_class_is_made_into_its_own_type() -> None:
    assert sorted(kind.EVENT.__name__ for kind, _ in _MAKERS.values()) == sorted(
        event_class.__name__ for event_class in _MAKERS
    )
    assert sorted(kind.type for kind, _ in _MAKERS.values()) == sorted(EVENT_TYPES)
    for kind, _ in _MAKERS.values():  # each names its event class's type
        assert typing.get_args(kind.EVENT.model_fields["type"].annotation) == (kind.type,)
    assert {type(event) for event in ONE_OF_EACH} == {kind for kind, _ in _MAKERS.values()}


def _made(event: dict[str, Any]) -> Incoming:
    parsed = parse_event(event, plans={"free": "consumer"}).event
    return _incoming(parsed, HEAD)


def test_fields_read_off_the_event_or_derived() -> None:
    make, at = Events(), Events.t(1)
    attachment = {"attachment_id": "x", "source": "upload", "name": "n"}
    message = _made(make.message("m", "c", "a", at, content="hi", attachments=[attachment]))
    assert message == MessageCreatedIn(
        *HEAD, "c", "a", "m", "user", "hi", canonical_json([{**attachment, "content": None}])
    )
    bare = _made(make.message("m", "c", "a", at))
    assert isinstance(bare, MessageCreatedIn) and bare.attachments == "[]"
    settings = {"mode": "incognito", "incognito": True, "title": "t"}
    for given, expected in (
        ({"incognito": True, "title": "t"}, ("incognito", "incognito", '{"title":"t"}')),
        (settings, ("incognito", "mode", '{"title":"t"}')),
        ({"preferences": {"b": 1, "a": None}}, (None, None, '{"preferences":{"a":null,"b":1}}')),
    ):
        update = _made(make.conversation("c", "a", at, **given))
        assert update == ConversationUpdatedIn(*HEAD, "c", "a", *expected)
    consent = _made(make.consent("o", at, granted=False, scope="organization"))
    assert isinstance(consent, ConsentUpdatedIn)
    assert (consent.scope, consent.subject, consent.granted) == ("organization", "o", False)
    assert isinstance(consent.event, ConsentUpdated) and consent.event.organization_id == "o"
    report = _made(make.feedback("f", "a", "c", "m", at))
    assert isinstance(report, FeedbackSubmittedIn)
    assert report == FeedbackSubmittedIn(*HEAD, "c", "a", "m", "f", report.event)
    assert isinstance(report.event, FeedbackSubmitted) and report.event.rating == "down"
