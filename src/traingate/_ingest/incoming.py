"""One JSONL line made ready for ingest's checks: a plain, picklable ``Incoming`` or a
``Rejected``.

This is the part of ingest that needs nothing but the line: decoding and validating it
(``traingate._core.events``), its canonical body, and the keyed hashes of its event_id and body. It
runs in the ingesting process or in parse workers (``traingate._ingest.parsing``), so what it
returns is made of plain values: a pydantic event costs more to unpickle than to validate.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any, ClassVar, NamedTuple, dataclass_transform

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


# How an ``Incoming`` type gives those of its fields that are not its event's attribute of the
# same name: field name -> the function of the event that gives it.
Derived = Mapping[str, Callable[[Any], object]]
EventClass = type[AnyEvent]


@dataclass_transform(frozen_default=True)
class _Record(type):
    """The metaclass of ``Incoming``: each subclass is a tuple of its fields, ``Incoming``'s
    then its own, as annotated (a ``ClassVar`` is not a field), made by
    ``collections.namedtuple``. So it is immutable and slotted, made by one call, and pickled as
    its values for that call: the ingesting process unpickles a worker's event for about 0.7 µs
    more than a plain tuple of the same values, where a frozen dataclass, which sets each field
    through ``object.__setattr__``, cost 2.2 µs more (``benchmarks/incoming.py``). Type
    checkers read each subclass as the frozen dataclass of those fields
    (``dataclass_transform``)."""

    def __new__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> _Record:
        annotations: dict[str, Any] = namespace.get("__annotations__", {})
        own = tuple(
            field
            for field, kind in annotations.items()
            if "ClassVar" not in str(kind).split("[")[0]
        )
        inherited = tuple(field for base in bases for field in getattr(base, "_fields", ()))
        namespace["__slots__"] = ()
        if inherited:  # an event type: its values are a tuple's, in order
            bases = (namedtuple(f"{name}Fields", (*inherited, *own)), *bases)
        else:
            namespace["_fields"] = own
        return super().__new__(cls, name, bases, namespace)


class Incoming(metaclass=_Record):
    """A valid event, as ingest's checks and rows need it: one subclass per event type, each
    with what its type has, the table its row goes to (``LEDGER``; the row's columns are read
    off the event by name, ``row_of``) and the event class it is made from (``EVENT``: each of
    its fields is the event's attribute of that name, or what ``DERIVED`` derives from the
    event). Plain values (pickled by parse workers), but the whole event for the two types
    used whole after the checks: consent (the audit log) and feedback (the vault's snapshot).
    Never made itself: only its subclasses are."""

    type: ClassVar[str]
    LEDGER: ClassVar[Table]
    EVENT: ClassVar[EventClass]
    DERIVED: ClassVar[Derived] = {}
    _fields: ClassVar[tuple[str, ...]]  # every field, in order (``collections.namedtuple``)

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


def _attachments(event: MessageCreated) -> str:
    """A message's attachments, as canonical JSON."""
    if not event.attachments:
        return "[]"
    return canonical_json([attachment.model_dump() for attachment in event.attachments])


def _settings(event: ConversationUpdated) -> str:
    """The conversation settings an update sets (those present in it), as canonical JSON."""
    return canonical_json(
        {name: getattr(event, name) for name in _SETTINGS if name in event.model_fields_set}
    )


def _mode(event: ConversationUpdated) -> str | None:
    given = event.given_mode
    return None if given is None else given[0]


def _mode_field(event: ConversationUpdated) -> str | None:
    given = event.given_mode
    return None if given is None else given[1]


def _whole(event: AnyEvent) -> AnyEvent:
    return event


class MessageCreatedIn(Incoming):
    type = "message.created"
    LEDGER = MESSAGES
    EVENT = MessageCreated
    DERIVED: ClassVar[Derived] = {"attachments": _attachments}

    conversation_id: str
    account_id: str
    message_id: str
    role: str
    content: str
    attachments: str  # canonical JSON


class AccountUpdatedIn(Incoming):
    type = "account.updated"
    LEDGER = ACCOUNT_PLANS
    EVENT = AccountUpdated

    account_id: str
    plan: str
    organization_id: str | None
    email: str


class AccountDeletedIn(Incoming):
    type = "account.deleted"
    LEDGER = ACCOUNT_DELETIONS
    EVENT = AccountDeleted

    account_id: str


class ConsentUpdatedIn(Incoming):
    type = "consent.updated"
    LEDGER = CONSENTS
    EVENT = ConsentUpdated
    DERIVED: ClassVar[Derived] = {"event": _whole}

    scope: str
    subject: str  # the account or organization
    setting: str
    granted: bool
    source: str
    event: ConsentUpdated  # for the audit log


class ConversationUpdatedIn(Incoming):
    type = "conversation.updated"
    LEDGER = CONVERSATION_SETTINGS
    EVENT = ConversationUpdated
    DERIVED: ClassVar[Derived] = {
        "mode": _mode,
        "mode_field": _mode_field,
        "fields": _settings,
    }

    conversation_id: str
    account_id: str
    mode: str | None  # the mode it gives, or None
    mode_field: str | None  # the field that gave it
    fields: str  # the settings it sets, as canonical JSON


class ConversationDeletedIn(Incoming):
    type = "conversation.deleted"
    LEDGER = CONVERSATION_DELETIONS
    EVENT = ConversationDeleted

    conversation_id: str
    account_id: str


class FeedbackSubmittedIn(Incoming):
    """A report takes no seq and leaves only its ``report_events`` row (no order, no time:
    docs/architecture.md); the keyed hash of its feedback_id is the batch's to make."""

    type = "feedback.submitted"
    LEDGER = REPORT_EVENTS
    EVENT = FeedbackSubmitted
    DERIVED: ClassVar[Derived] = {"event": _whole}

    conversation_id: str
    account_id: str
    message_id: str  # the rated message
    feedback_id: str
    event: FeedbackSubmitted  # for the vault's snapshot

    def rows(self, seq: int) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        return ((REPORT_EVENTS.name, _ROW[REPORT_EVENTS.name](self, seq)),)


class SafetyFlaggedIn(Incoming):
    type = "safety.flagged"
    LEDGER = FLAGS
    EVENT = SafetyFlagged

    flag_id: str
    conversation_id: str
    policy: str
    reason: str | None


class SafetyClearedIn(Incoming):
    type = "safety.cleared"
    LEDGER = FLAG_CLEARS
    EVENT = SafetyCleared

    flag_id: str


class Rejected(NamedTuple):
    """A line refused on its own (not JSON, not a valid event)."""

    line: int
    event_id: str | None
    field: str | None
    message: str

    def error(self) -> EventError:
        return EventError(self.message, field=self.field, event_id=self.event_id, line=self.line)


Head = tuple[int, str, int, bytes, bytes]  # line, event_id, at, the two keyed hashes
Maker = tuple[type[Incoming], tuple[Callable[[Any], object], ...]]


def _maker(kind: type[Incoming]) -> Maker:
    """The class and, for each of its own fields in order, how the event gives it: derived,
    or the event's attribute of that name."""
    own = kind._fields[len(Incoming._fields) :]
    return kind, tuple(kind.DERIVED.get(field) or attrgetter(field) for field in own)


# The one Incoming type made of each event class.
_MAKERS: dict[EventClass, Maker] = {
    kind.EVENT: _maker(kind)
    for kind in (
        MessageCreatedIn,
        AccountUpdatedIn,
        AccountDeletedIn,
        ConsentUpdatedIn,
        ConversationUpdatedIn,
        ConversationDeletedIn,
        FeedbackSubmittedIn,
        SafetyFlaggedIn,
        SafetyClearedIn,
    )
}


def _incoming(event: AnyEvent, head: Head) -> Incoming:
    """The event as ingest takes it, after ``head`` (line, event_id, at, the two hashes)."""
    kind, getters = _MAKERS[type(event)]
    return kind(*head, *[get(event) for get in getters])


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
