"""One JSONL line made ready for ingest's checks: a plain, picklable ``Incoming`` or a
``Rejected``.

This is the part of ingest that needs nothing but the line: decoding and validating it
(``traingate._core.events``), its canonical body, and the keyed hashes of its event_id and body. It
runs in the ingesting process or in parse workers (``traingate._ingest.parsing``), so what it
returns is made of plain values: a pydantic event costs more to unpickle than to validate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, ClassVar, NamedTuple

from traingate._core.events import (
    AccountDeleted,
    AccountUpdated,
    AnyEvent,
    ConsentUpdated,
    ConversationDeleted,
    ConversationUpdated,
    FeedbackSubmitted,
    MessageCreated,
    SafetyCleared,
    SafetyFlagged,
    canonical_json,
    parse_line,
)
from traingate._errors import EventError
from traingate._keys import ShortHasher
from traingate._store.schema import (
    ACCOUNT_DELETIONS,
    ACCOUNT_PLANS,
    CONSENTS,
    CONVERSATION_DELETIONS,
    CONVERSATION_SETTINGS,
    EVENTS,
    FLAG_CLEARS,
    FLAGS,
    INGEST_TABLES,
    MESSAGES,
    REPORT_EVENTS,
    Table,
)

__all__ = [
    "AccountDeletedIn",
    "AccountUpdatedIn",
    "ConsentUpdatedIn",
    "ConversationDeletedIn",
    "ConversationUpdatedIn",
    "Declared",
    "FeedbackSubmittedIn",
    "Incoming",
    "MessageCreatedIn",
    "Rejected",
    "SafetyClearedIn",
    "SafetyFlaggedIn",
    "read_chunk",
    "read_line",
    "read_numbered",
    "row_of",
]

_SETTINGS = ("custom_style", "preferences", "title")


class Declared(NamedTuple):
    """What the policies in force declare that a line is checked against on its own: plans
    (name -> class) and consent settings. Plain values: handed to parse workers."""

    plans: dict[str, str]
    settings: tuple[str, ...]

    @classmethod
    def of(cls, plans: Mapping[str, str], settings: Sequence[str]) -> Declared:
        return cls(dict(plans), tuple(settings))


RowOf = Callable[[Any, int], tuple[Any, ...]]


def _getter(names: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    """The named attributes of an object, as a tuple (of one or none too)."""
    if not names:
        return lambda _: ()
    if len(names) == 1:
        name = names[0]
        return lambda item: (getattr(item, name),)
    return attrgetter(*names)


def row_of(table: Table) -> RowOf:
    """How an event gives its row of ``table``: each column is the event's attribute of that
    name, but ``seq`` or ``event_seq``, the event's seq (given when the row is made)."""
    seq = next((column for column in ("seq", "event_seq") if column in table.columns), None)
    if seq is None:
        every = _getter(table.columns)
        return lambda event, _: every(event)
    place = table.columns.index(seq)
    before, after = _getter(table.columns[:place]), _getter(table.columns[place + 1 :])
    return lambda event, number: (*before(event), number, *after(event))


_ROW = {table.name: row_of(table) for table in INGEST_TABLES}
_EVENT_ROW = _ROW[EVENTS.name]


@dataclass(frozen=True, slots=True)
class Incoming:
    """A valid event, as ingest's checks and rows need it: one subclass per event type, each
    with what its type has and the table its row goes to (``LEDGER``; the row's columns are
    read off the event by name, ``row_of``). Plain values (pickled by parse workers), but the whole
    event for the two types used whole after the checks: consent (the audit log) and feedback
    (the vault's snapshot)."""

    type: ClassVar[str]
    LEDGER: ClassVar[Table]

    line: int
    event_id: str
    at: int
    event_key: bytes  # short keyed hash of event_id
    body_hash: bytes  # short keyed hash of the canonical body (the body itself is not kept)

    def rows(self, seq: int) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        """(table, row) of what the event writes once accepted as ``seq``: its ledger's row
        and its ``events`` row."""
        ledger = self.LEDGER.name
        return (ledger, _ROW[ledger](self, seq)), (EVENTS.name, _EVENT_ROW(self, seq))

    def __reduce__(self) -> tuple[Any, ...]:
        # the fields in order, for the constructor: cheaper to unpickle than a state dict
        return type(self), tuple(getattr(self, name) for name in self.__match_args__)


@dataclass(frozen=True, slots=True)
class MessageCreatedIn(Incoming):
    type: ClassVar[str] = "message.created"
    LEDGER: ClassVar[Table] = MESSAGES

    conversation_id: str
    account_id: str
    message_id: str
    role: str
    content: str
    attachments: str  # canonical JSON


@dataclass(frozen=True, slots=True)
class AccountUpdatedIn(Incoming):
    type: ClassVar[str] = "account.updated"
    LEDGER: ClassVar[Table] = ACCOUNT_PLANS

    account_id: str
    plan: str
    organization_id: str | None
    email: str


@dataclass(frozen=True, slots=True)
class AccountDeletedIn(Incoming):
    type: ClassVar[str] = "account.deleted"
    LEDGER: ClassVar[Table] = ACCOUNT_DELETIONS

    account_id: str


@dataclass(frozen=True, slots=True)
class ConsentUpdatedIn(Incoming):
    type: ClassVar[str] = "consent.updated"
    LEDGER: ClassVar[Table] = CONSENTS

    scope: str
    subject: str  # the account or organization
    setting: str
    granted: bool
    source: str
    event: ConsentUpdated  # for the audit log


@dataclass(frozen=True, slots=True)
class ConversationUpdatedIn(Incoming):
    type: ClassVar[str] = "conversation.updated"
    LEDGER: ClassVar[Table] = CONVERSATION_SETTINGS

    conversation_id: str
    account_id: str
    mode: str | None  # the mode it gives, or None
    mode_field: str | None  # the field that gave it
    fields: str  # the settings it sets, as canonical JSON


@dataclass(frozen=True, slots=True)
class ConversationDeletedIn(Incoming):
    type: ClassVar[str] = "conversation.deleted"
    LEDGER: ClassVar[Table] = CONVERSATION_DELETIONS

    conversation_id: str
    account_id: str


@dataclass(frozen=True, slots=True)
class FeedbackSubmittedIn(Incoming):
    """A report takes no seq and leaves only its ``report_events`` row (no order, no time:
    docs/architecture.md); the keyed hash of its feedback_id is the batch's to make."""

    type: ClassVar[str] = "feedback.submitted"
    LEDGER: ClassVar[Table] = REPORT_EVENTS

    conversation_id: str
    account_id: str
    message_id: str  # the rated message
    feedback_id: str
    event: FeedbackSubmitted  # for the vault's snapshot

    def rows(self, seq: int) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        return ((REPORT_EVENTS.name, _ROW[REPORT_EVENTS.name](self, seq)),)


@dataclass(frozen=True, slots=True)
class SafetyFlaggedIn(Incoming):
    type: ClassVar[str] = "safety.flagged"
    LEDGER: ClassVar[Table] = FLAGS

    flag_id: str
    conversation_id: str
    policy: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class SafetyClearedIn(Incoming):
    type: ClassVar[str] = "safety.cleared"
    LEDGER: ClassVar[Table] = FLAG_CLEARS

    flag_id: str


class Rejected(NamedTuple):
    """A line refused on its own (not JSON, not a valid event)."""

    line: int
    event_id: str | None
    field: str | None
    message: str

    def error(self) -> EventError:
        return EventError(self.message, field=self.field, event_id=self.event_id, line=self.line)


def _incoming(event: AnyEvent, head: tuple[int, str, int, bytes, bytes]) -> Incoming:
    """The event as ingest takes it, after ``head`` (line, event_id, at, the two hashes)."""
    if isinstance(event, MessageCreated):
        attachments = (
            canonical_json([a.model_dump() for a in event.attachments])
            if event.attachments
            else "[]"
        )
        return MessageCreatedIn(
            *head,
            conversation_id=event.conversation_id,
            account_id=event.account_id,
            message_id=event.message_id,
            role=event.role,
            content=event.content,
            attachments=attachments,
        )
    if isinstance(event, ConversationUpdated):
        present = {
            name: getattr(event, name) for name in _SETTINGS if name in event.model_fields_set
        }
        mode, field = event.given_mode or (None, None)
        return ConversationUpdatedIn(
            *head,
            conversation_id=event.conversation_id,
            account_id=event.account_id,
            mode=mode,
            mode_field=field,
            fields=canonical_json(present),
        )
    if isinstance(event, ConsentUpdated):
        return ConsentUpdatedIn(
            *head,
            scope=event.scope,
            subject=event.subject,
            setting=event.setting,
            granted=event.granted,
            source=event.source,
            event=event,
        )
    if isinstance(event, FeedbackSubmitted):
        return FeedbackSubmittedIn(
            *head,
            conversation_id=event.conversation_id,
            account_id=event.account_id,
            message_id=event.message_id,
            feedback_id=event.feedback_id,
            event=event,
        )
    if isinstance(event, SafetyFlagged):
        return SafetyFlaggedIn(
            *head,
            flag_id=event.flag_id,
            conversation_id=event.conversation_id,
            policy=event.policy,
            reason=event.reason,
        )
    if isinstance(event, AccountUpdated):
        return AccountUpdatedIn(
            *head,
            account_id=event.account_id,
            plan=event.plan,
            organization_id=event.organization_id,
            email=event.email,
        )
    if isinstance(event, AccountDeleted):
        return AccountDeletedIn(*head, account_id=event.account_id)
    if isinstance(event, ConversationDeleted):
        return ConversationDeletedIn(
            *head, conversation_id=event.conversation_id, account_id=event.account_id
        )
    assert isinstance(event, SafetyCleared)
    return SafetyClearedIn(*head, flag_id=event.flag_id)


def read_line(text: str, *, line: int, declared: Declared, short_hash: ShortHasher) -> Incoming:
    """Decode and validate one line. Raises EventError (with the line) when it is refused."""
    parsed = parse_line(text, plans=declared.plans, settings=declared.settings, line=line)
    event = parsed.event
    head = (
        line,
        event.event_id,
        event.at,
        short_hash("event", event.event_id),
        short_hash("body", parsed.body),
    )
    return _incoming(event, head)


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
