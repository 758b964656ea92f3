"""SPEC §2: one test per rejection kind, idempotency, and nothing accepted is ever lost."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.factories import Events, jsonl
from traingate._facade import Traingate

T = Events.t
Ev = dict[str, Any]


def base(e: Events) -> list[Ev]:
    """A valid small history: account a (free) with conversation c and message m1."""
    return [
        e.account("a", T(0)),
        e.account("b", T(0)),
        e.conversation("c", "a", T(1)),
        e.message("m1", "c", "a", T(2), role="user"),
        e.message("m2", "c", "a", T(3), role="assistant"),
    ]


def with_field(event: Ev, **changes: Any) -> Ev:
    return {**event, **changes}


def without(event: Ev, key: str) -> Ev:
    return {k: v for k, v in event.items() if k != key}


# name -> (events after `base`, field the error must name)
REJECTIONS: dict[str, tuple[Callable[[Events], list[Ev]], str]] = {
    "unknown type": (lambda e: [{"type": "account.renamed", "event_id": "x1", "at": T(5)}], "type"),
    "missing type": (lambda e: [{"event_id": "x1", "at": T(5)}], "type"),
    "missing required field": (
        lambda e: [without(e.message("m9", "c", "a", T(5)), "content")],
        "content",
    ),
    "unknown field": (
        lambda e: [with_field(e.message("m9", "c", "a", T(5)), colour="red")],
        "colour",
    ),
    "unknown plan": (lambda e: [e.account("z", T(5), plan="gold")], "plan"),
    "unknown role": (lambda e: [e.message("m9", "c", "a", T(5), role="system")], "role"),
    "consumer plan with an organization": (
        lambda e: [e.account("z", T(5), plan="pro", organization_id="org1")],
        "organization_id",
    ),
    "commercial plan without organization": (
        lambda e: [e.account("z", T(5), plan="team")],
        "organization_id",
    ),
    "organization scope without organization_id": (
        lambda e: [without(e.consent("org1", T(5), True, scope="organization"), "organization_id")],
        "organization_id",
    ),
    "string for a boolean": (
        lambda e: [with_field(e.consent("a", T(5), True), granted="true")],
        "granted",
    ),
    "number for a boolean": (
        lambda e: [with_field(e.consent("a", T(5), True), granted=1)],
        "granted",
    ),
    "number for a string": (
        lambda e: [with_field(e.message("m9", "c", "a", T(5)), content=42)],
        "content",
    ),
    "wrong attachment type": (
        lambda e: [
            e.message(
                "m9",
                "c",
                "a",
                T(5),
                attachments=[{"attachment_id": "x", "source": "upload", "name": "n", "content": 7}],
            )
        ],
        "attachments[0].content",
    ),
    "time without offset": (lambda e: [e.account("z", "2024-03-01T10:00:00")], "at"),
    "time without seconds": (lambda e: [e.account("z", "2024-03-01T10:00Z")], "at"),
    "date alone": (lambda e: [e.account("z", "2024-03-01")], "at"),
    "basic format": (lambda e: [e.account("z", "20240301T100000Z")], "at"),
    "impossible date": (lambda e: [e.account("z", "2023-02-29T10:00:00Z")], "at"),
    "time as a number": (lambda e: [with_field(e.account("z", T(5)), at=1709287200)], "at"),
    "conversation of another account (message)": (
        lambda e: [e.message("m9", "c", "b", T(5))],
        "account_id",
    ),
    "conversation of another account (update)": (
        lambda e: [e.conversation("c", "b", T(5), title="mine")],
        "account_id",
    ),
    "conversation of another account (feedback)": (
        lambda e: [e.feedback("f1", "b", "c", "m2", T(5))],
        "account_id",
    ),
    "conversation of another account (deletion)": (
        lambda e: [e.conversation_deleted("c", "b", T(5))],
        "account_id",
    ),
    "message to a deleted conversation": (
        lambda e: [e.conversation_deleted("c", "a", T(5)), e.message("m9", "c", "a", T(4))],
        "conversation_id",
    ),
    "update of a deleted conversation": (
        lambda e: [e.conversation_deleted("c", "a", T(5)), e.conversation("c", "a", T(6))],
        "conversation_id",
    ),
    "feedback on a deleted conversation": (
        lambda e: [e.conversation_deleted("c", "a", T(5)), e.feedback("f1", "a", "c", "m2", T(6))],
        "conversation_id",
    ),
    "message of a deleted account": (
        lambda e: [e.account_deleted("a", T(5)), e.message("m9", "c2", "a", T(6))],
        "account_id",
    ),
    "feedback of a deleted account": (
        lambda e: [e.account_deleted("a", T(5)), e.feedback("f1", "a", "c", "m2", T(6))],
        "account_id",
    ),
    "reused message_id": (lambda e: [e.message("m1", "c", "a", T(5))], "message_id"),
    "reused message_id across conversations": (
        lambda e: [e.message("m1", "c3", "b", T(5))],
        "message_id",
    ),
    "reused feedback_id": (
        lambda e: [e.feedback("f1", "a", "c", "m2", T(5)), e.feedback("f1", "a", "c", "m1", T(6))],
        "feedback_id",
    ),
    "reused flag_id": (lambda e: [e.flag("g1", "c", T(5)), e.flag("g1", "c", T(6))], "flag_id"),
    "feedback on an unknown message": (
        lambda e: [e.feedback("f1", "a", "c", "nope", T(5))],
        "message_id",
    ),
    "feedback on a message of another conversation": (
        lambda e: [
            e.conversation("c2", "a", T(4)),
            e.message("m9", "c2", "a", T(4)),
            e.feedback("f1", "a", "c", "m9", T(5)),
        ],
        "message_id",
    ),
    "feedback on a message later than the report": (
        lambda e: [e.message("m9", "c", "a", T(9)), e.feedback("f1", "a", "c", "m9", T(8))],
        "message_id",
    ),
    "incognito set after the first event": (
        lambda e: [e.conversation("c", "a", T(5), incognito=True)],
        "incognito",
    ),
    "another mode after the first event": (
        lambda e: [e.conversation("c", "a", T(5), mode="temporary")],
        "mode",
    ),
    "a mode on a conversation first named by a message": (
        lambda e: [
            e.message("m9", "c7", "a", T(5)),
            e.conversation("c7", "a", T(6), mode="incognito"),
        ],
        "mode",
    ),
    "a mode on a conversation first named by a flag": (
        lambda e: [e.flag("g9", "c8", T(5)), e.conversation("c8", "a", T(6), mode="temporary")],
        "mode",
    ),
    "incognito on a conversation first named by a message": (
        lambda e: [
            e.message("m9", "c6", "a", T(5)),
            e.conversation("c6", "a", T(6), incognito=True),
        ],
        "incognito",
    ),
    "mode and incognito disagreeing": (
        lambda e: [e.conversation("c9", "a", T(5), mode="standard", incognito=True)],
        "mode",
    ),
    "incognito false with mode temporary": (
        lambda e: [e.conversation("c9", "a", T(5), mode="temporary", incognito=False)],
        "mode",
    ),
    "unknown mode": (lambda e: [e.conversation("c9", "a", T(5), mode="private")], "mode"),
    "string for the incognito boolean": (
        lambda e: [e.conversation("c9", "a", T(5), incognito="true")],
        "incognito",
    ),
    "setting no configured policy declares": (
        lambda e: [e.consent("a", T(5), True, setting="personalized_ads")],
        "setting",
    ),
    "time before 1970": (lambda e: [e.account("z", "1969-12-31T23:59:59.999999Z")], "at"),
    "time from 9000 on": (lambda e: [e.account("z", "9000-01-01T00:00:00Z")], "at"),
    "offset taking year 1 before 1970": (
        lambda e: [e.account("z", "0001-01-01T00:00:00+23:59")],
        "at",
    ),
    "clear of an unknown flag": (lambda e: [e.clear("nope", T(5))], "flag_id"),
    "event_id reused with another body": (
        lambda e: [with_field(e.account("z", T(5)), event_id="e1")],
        "event_id",
    ),
}


@pytest.mark.parametrize("name", list(REJECTIONS))
def test_each_rejection_kind(tg: Traingate, name: str) -> None:
    e = Events()
    make, field = REJECTIONS[name]
    good = base(e)
    extra = make(e)
    summary = tg.events.ingest(jsonl([*good, *extra]))
    assert summary.rejected == 1, summary.errors
    assert summary.accepted == len(good) + len(extra) - 1
    error = summary.errors[0]
    bad_line = next(
        i
        for i, ev in enumerate([*good, *extra], start=1)
        if error.event_id == ev.get("event_id") and i > len(good)
    )
    assert error.line == bad_line
    assert f"line {bad_line}" in error.error
    assert repr(error.event_id) in error.error
    assert f"field {field!r}" in error.error


def test_malformed_lines_name_their_line(tg: Traingate) -> None:
    e = Events()
    lines = [*jsonl(base(e)), "{not json", "[1, 2]", "", json.dumps(e.account("z", T(9)))]
    summary = tg.events.ingest(lines)
    assert (summary.accepted, summary.rejected) == (6, 2)
    assert [err.line for err in summary.errors] == [6, 7]
    assert summary.errors[0].event_id is None
    assert "not valid JSON" in summary.errors[0].error


def test_mixed_file_summary_and_duplicates(tg: Traingate) -> None:
    e = Events()
    good = base(e)
    lines = jsonl(good)
    lines.insert(2, json.dumps(e.account("z", T(5), plan="gold")))
    lines.append(json.dumps(e.message("m1", "c", "a", T(9))))
    first = tg.events.ingest(lines)
    assert first.to_dict() == {
        "accepted": 5,
        "duplicates": 0,
        "rejected": 2,
        "errors": [e.to_dict() for e in first.errors],
    }
    assert [err.line for err in first.errors] == [3, 7]
    counts = {t: tg.store.count(t) for t in ("events", "messages", "account_plans")}
    again = tg.events.ingest(lines)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 5, 2)
    assert {t: tg.store.count(t) for t in counts} == counts


def test_duplicate_within_one_file_and_across_batches(tg: Traingate) -> None:
    e = Events()
    events = base(e)
    lines = jsonl(events) + jsonl(events)
    summary = tg.events.ingest(lines, batch_size=2)
    assert (summary.accepted, summary.duplicates, summary.rejected) == (5, 5, 0)


def test_equal_as_parsed_json_is_a_duplicate(tg: Traingate) -> None:
    e = Events()
    event = e.account("a", T(0))
    reordered = json.dumps(dict(reversed(list(event.items()))), indent=1).replace("\n", " ")
    summary = tg.events.ingest([json.dumps(event), reordered])
    assert (summary.accepted, summary.duplicates) == (1, 1)


def test_valid_events_around_a_bad_one_are_kept_across_batches(tg: Traingate) -> None:
    e = Events()
    events = base(e)
    lines = jsonl(events)
    lines.insert(3, '{"type": "message.created"}')
    summary = tg.events.ingest(lines, batch_size=2)
    assert (summary.accepted, summary.rejected) == (5, 1)
    assert tg.store.count("messages") == 2


def test_offsets_are_stored_as_utc(tg: Traingate) -> None:
    e = Events()
    tg.events.ingest(
        jsonl(
            [
                e.account("a", "2024-03-01T00:30:00+02:00"),
                e.message("m1", "c", "a", "2024-02-29T22:30:00.5Z"),
            ]
        )
    )
    result = tg.privacy.explain(conversation_id="c", purpose="model_training")
    assert result.to_dict()["messages"][0]["at"] == "2024-02-29T22:30:00.5Z"
    facts = tg.store.conversation_facts("c")
    assert facts.plans[0].at == facts.messages[0].at - 500_000


def test_incognito_is_set_by_the_first_event_only(tg: Traingate) -> None:
    e = Events()
    summary = tg.events.ingest(
        jsonl(
            [
                e.account("a", T(0)),
                e.conversation("c", "a", T(1), incognito=True),
                e.message("m1", "c", "a", T(2)),
                e.conversation("c", "a", T(3), title="t"),
                e.conversation("c", "a", T(4), mode="incognito"),
                e.conversation("c", "a", T(5), incognito=True),
            ]
        )
    )
    assert summary.rejected == 0, summary.errors
    assert tg.store.conversation_facts("c").mode == "incognito"
    assert tg.store.conversation_mode("c") == "incognito"


def test_the_time_range_at_its_edges(tg: Traingate) -> None:
    """SPEC §2: instants outside [1970-01-01T00:00:00Z, 9000-01-01T00:00:00Z) in UTC are
    rejected, each line alone; the edges inside are kept, feedback included."""
    e = Events()
    events = [
        e.account("a", "1970-01-01T00:00:00Z"),
        e.account("b", "1969-12-31T23:59:59.999999Z"),
        e.message("m1", "c", "a", "1970-01-01T00:00:00Z"),
        e.message("m2", "c", "a", "8999-12-31T23:59:59.999999Z"),
        e.message("m3", "c", "a", "9000-01-01T00:00:00Z"),
        e.account("d", "0001-01-01T00:00:00+23:59"),
        e.feedback("f1", "a", "c", "m1", "9990-01-01T00:00:00Z", comment="late"),
        e.feedback("f2", "a", "c", "m2", "8999-12-31T23:59:59.999999Z", comment="edge"),
        e.account("z", "9000-01-01T00:00:00.000000+00:01"),
    ]
    summary = tg.events.ingest(jsonl(events))
    assert (summary.accepted, summary.rejected) == (5, 4), summary.errors
    assert [err.line for err in summary.errors] == [2, 5, 6, 7]
    for error in summary.errors:
        assert "field 'at'" in error.error
        assert "1970-01-01T00:00:00Z" in error.error and "9000-01-01T00:00:00Z" in error.error
    assert tg.store.count("messages") == 2
    assert [receipt[0] for receipt in summary.receipts] == [8]
    assert tg.feedback.show(summary.receipts[0][2])[1].comment == "edge"
