"""One JSONL line made ready for ingest's checks: a plain, picklable ``Incoming`` or a
``Rejected``.

This is the part of ingest that needs nothing but the line: decoding and validating it
(``traingate._core.events``), its canonical body, and the keyed hashes of its event_id and body. It
runs in the ingesting process or in parse workers (``traingate._ingest.parsing``), so what it
returns is made of plain values: a pydantic event costs more to unpickle than to validate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from traingate._core.events import (
    AnyEvent,
    ConsentUpdated,
    ConversationUpdated,
    FeedbackSubmitted,
    MessageCreated,
    SafetyFlagged,
    canonical_json,
    parse_line,
)
from traingate._errors import EventError
from traingate._keys import ShortHasher

__all__ = ["Declared", "Incoming", "Rejected", "read_chunk", "read_line", "read_numbered"]

_SETTINGS = ("custom_style", "preferences", "title")


class Declared(NamedTuple):
    """What the policies in force declare that a line is checked against on its own: plans
    (name -> class) and consent settings. Plain values: handed to parse workers."""

    plans: dict[str, str]
    settings: tuple[str, ...]

    @classmethod
    def of(cls, plans: Mapping[str, str], settings: Sequence[str]) -> Declared:
        return cls(dict(plans), tuple(settings))


class Incoming(NamedTuple):
    """A valid event, as ingest's checks and rows need it.

    ``values`` holds what only its type has, in this order: ``message.created`` (role,
    content, attachments as canonical JSON); ``account.updated`` (plan, organization_id,
    email); ``consent.updated`` (scope, subject, setting, granted, source);
    ``conversation.updated`` (the mode it gives or None, the field that gave it or None, the
    settings it sets as canonical JSON); ``feedback.submitted``
    (feedback_id,); ``safety.flagged`` (policy, reason); the other types nothing.
    ``event`` is the whole event for the two types used whole after the checks: consent (the
    audit log) and feedback (the vault's snapshot); None for the others.
    """

    line: int
    type: str
    event_id: str
    at: int
    event_key: bytes  # short keyed hash of event_id
    body_hash: bytes  # short keyed hash of the canonical body (the body itself is not kept)
    conversation_id: str | None
    account_id: str | None
    message_id: str | None  # the message created or rated
    flag_id: str | None
    values: tuple[Any, ...]
    event: ConsentUpdated | FeedbackSubmitted | None


class Rejected(NamedTuple):
    """A line refused on its own (not JSON, not a valid event)."""

    line: int
    event_id: str | None
    field: str | None
    message: str

    def error(self) -> EventError:
        return EventError(self.message, field=self.field, event_id=self.event_id, line=self.line)


def _values(event: AnyEvent) -> tuple[Any, ...]:
    if isinstance(event, MessageCreated):
        attachments = (
            canonical_json([a.model_dump() for a in event.attachments])
            if event.attachments
            else "[]"
        )
        return (event.role, event.content, attachments)
    if isinstance(event, ConversationUpdated):
        present = {
            name: getattr(event, name) for name in _SETTINGS if name in event.model_fields_set
        }
        mode, field = event.given_mode or (None, None)
        return (mode, field, canonical_json(present))
    if isinstance(event, ConsentUpdated):
        return (event.scope, event.subject, event.setting, event.granted, event.source)
    if isinstance(event, FeedbackSubmitted):
        return (event.feedback_id,)
    if isinstance(event, SafetyFlagged):
        return (event.policy, event.reason)
    if event.type == "account.updated":
        return (event.plan, event.organization_id, event.email)
    return ()


def read_line(text: str, *, line: int, declared: Declared, short_hash: ShortHasher) -> Incoming:
    """Decode and validate one line. Raises EventError (with the line) when it is refused."""
    parsed = parse_line(text, plans=declared.plans, settings=declared.settings, line=line)
    event = parsed.event
    return Incoming(
        line=line,
        type=event.type,
        event_id=event.event_id,
        at=event.at,
        event_key=short_hash("event", event.event_id),
        body_hash=short_hash("body", parsed.body),
        conversation_id=getattr(event, "conversation_id", None),
        account_id=getattr(event, "account_id", None),
        message_id=getattr(event, "message_id", None),
        flag_id=getattr(event, "flag_id", None),
        values=_values(event),
        event=event if isinstance(event, ConsentUpdated | FeedbackSubmitted) else None,
    )


def read_numbered(
    number: int, text: str, declared: Declared, short_hash: ShortHasher
) -> Incoming | Rejected:
    """``read_line``, with a refusal returned as a ``Rejected``."""
    try:
        return read_line(text, line=number, declared=declared, short_hash=short_hash)
    except EventError as exc:
        return Rejected(number, exc.event_id, exc.field, exc.message)


def read_chunk(
    lines: Sequence[tuple[int, str]], declared: Declared, short_hash: ShortHasher
) -> list[Incoming | Rejected]:
    """``read_numbered`` over numbered lines: a parse worker's task (its arguments and result
    pickle cheaply)."""
    return [read_numbered(number, text, declared, short_hash) for number, text in lines]
