"""Ingest: validate events line by line, check them against what is stored, append in batches.

Lines stream in; every ``batch_size`` valid events are checked and written in one transaction,
so a file of any size runs in bounded memory and a crash loses no committed batch (a re-run
counts those events as duplicates). Order of checks for one event: its own shape
(``traingate.events``), then its event_id (duplicate or conflict), then its meaning against the
store and the events before it (ownership, deletions, reused ids, the rated message).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from traingate.errors import EventError
from traingate.events import (
    AccountDeleted,
    AccountUpdated,
    ConsentUpdated,
    ConversationDeleted,
    ConversationUpdated,
    FeedbackSubmitted,
    MessageCreated,
    ParsedEvent,
    SafetyCleared,
    SafetyFlagged,
    canonical_json,
    parse_line,
)
from traingate.policy import Policy
from traingate.store.store import Store
from traingate.vault.snapshot import Snapshot, take_snapshot

__all__ = [
    "DEFAULT_BATCH",
    "AcceptedBatch",
    "BatchObserver",
    "IngestError",
    "IngestSummary",
    "ReportSink",
    "ingest_lines",
]

_SETTINGS = ("custom_style", "preferences", "title")

# Events checked and written per transaction. Larger batches amortize what every commit
# rewrites (the pages of the unique index on random event keys) at some memory: about 120 MB
# peak for a file ingest at 20,000.
DEFAULT_BATCH = 20_000


class ReportSink(Protocol):
    """Where accepted feedback snapshots go (the vault). Runs inside the ingest transaction."""

    def put(self, *, snapshot: Snapshot, submitted_at: int, dedupe_key: str) -> str:
        """Store the snapshot; return the receipt for its holder."""
        ...


@dataclass(frozen=True, slots=True)
class AcceptedBatch:
    """What one ingest transaction accepted: counts by event type, the duplicates and the
    events its checks rejected, and the consent changes it accepted (for the audit log)."""

    accepted: Mapping[str, int]
    duplicates: int
    rejected: int
    consents: tuple[ConsentUpdated, ...]


class BatchObserver(Protocol):
    """Told of every batch that accepted something (the audit log)."""

    def accepted(self, batch: AcceptedBatch) -> None:
        """Runs inside the batch's transaction, after its rows are written: what it writes
        commits or rolls back with the batch."""
        ...


@dataclass(frozen=True, slots=True)
class IngestError:
    line: int
    event_id: str | None
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "event_id": self.event_id, "error": self.error}


@dataclass(slots=True)
class IngestSummary:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[IngestError] = field(default_factory=list)
    receipts: list[tuple[int, str, str]] = field(default_factory=list)  # line, event_id, receipt

    def to_dict(self) -> dict[str, Any]:
        """The SPEC §4 summary object."""
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "errors": [e.to_dict() for e in self.errors],
        }

    def reject(self, exc: EventError) -> None:
        self.rejected += 1
        self.errors.append(IngestError(line=exc.line or 0, event_id=exc.event_id, error=str(exc)))


_TABLES: dict[str, tuple[str, ...]] = {
    "events": ("seq", "event_key", "body_hash", "type", "at", "body"),
    "account_plans": ("event_seq", "account_id", "at", "plan", "organization_id", "email"),
    "account_deletions": ("event_seq", "account_id", "at"),
    "consents": ("event_seq", "scope", "subject", "at", "granted", "source"),
    "conversations": ("conversation_id", "account_id", "first_seq", "incognito"),
    "conversation_settings": ("event_seq", "conversation_id", "at", "fields"),
    "conversation_deletions": ("event_seq", "conversation_id", "account_id", "at"),
    "messages": (
        "message_id",
        "event_seq",
        "conversation_id",
        "account_id",
        "role",
        "at",
        "content",
        "attachments",
    ),
    "flags": ("flag_id", "event_seq", "conversation_id", "policy", "at", "reason"),
    "flag_clears": ("event_seq", "flag_id", "at"),
    "feedback_keys": ("feedback_key",),
    "report_events": ("event_key", "body_hash"),
}


class _Batch:
    """One transaction's worth of events: what the store knows about them, plus what earlier
    events of the batch added, and the rows waiting to be written."""

    def __init__(self, store: Store, events: list[tuple[int, ParsedEvent]]) -> None:
        self.store = store
        keys = store.keys
        convs: set[str] = set()
        accounts: set[str] = set()
        message_ids: set[str] = set()
        flag_ids: set[str] = set()
        feedback_keys: set[str] = set()
        for _, parsed in events:
            event = parsed.event
            if isinstance(event, (ConversationUpdated, ConversationDeleted, MessageCreated)):
                convs.add(event.conversation_id)
                accounts.add(event.account_id)
            if isinstance(event, FeedbackSubmitted):
                convs.add(event.conversation_id)
                accounts.add(event.account_id)
                feedback_keys.add(keys.id_hash("feedback", event.feedback_id))
            if isinstance(event, (MessageCreated, FeedbackSubmitted)):
                message_ids.add(event.message_id)
            if isinstance(event, (SafetyFlagged, SafetyCleared)):
                flag_ids.add(event.flag_id)
        self.event_keys = [keys.short_hash("event", parsed.event.event_id) for _, parsed in events]
        self.event_hashes = store.known_events(self.event_keys)
        self.owners = store.conversation_owners(convs)
        self.deleted_convs = store.deleted_conversations(convs)
        self.deleted_accounts = store.deleted_accounts(accounts)
        self.message_places = store.message_places(message_ids)
        self.flags = store.known_flags(flag_ids)
        self.feedback = store.known_feedback(feedback_keys)
        self.seq = store.next_seq()
        self.rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _TABLES}
        self.reports: list[tuple[int, int, FeedbackSubmitted]] = []  # line, seq, report

    def flush(self) -> None:
        for table, rows in self.rows.items():
            self.store.insert(table, _TABLES[table], rows)
            rows.clear()


def _fail(parsed: ParsedEvent, field_name: str, message: str) -> EventError:
    return EventError(message, field=field_name, event_id=parsed.event.event_id)


def _check_conversation(
    batch: _Batch, parsed: ParsedEvent, conversation_id: str, account_id: str
) -> None:
    """Refuse additions to a deleted conversation or account, or to another's conversation."""
    if conversation_id in batch.deleted_convs:
        raise _fail(
            parsed,
            "conversation_id",
            f"conversation {conversation_id!r} was deleted; nothing may be added to it",
        )
    if account_id in batch.deleted_accounts:
        raise _fail(
            parsed, "account_id", f"account {account_id!r} was deleted; nothing may be added to it"
        )
    owner = batch.owners.get(conversation_id)
    if owner is not None and owner != account_id:
        raise _fail(
            parsed,
            "account_id",
            f"conversation {conversation_id!r} belongs to another account",
        )


def _claim(
    batch: _Batch, conversation_id: str, account_id: str, seq: int, *, incognito: bool = False
) -> None:
    if conversation_id not in batch.owners:
        batch.owners[conversation_id] = account_id
        batch.rows["conversations"].append((conversation_id, account_id, seq, incognito))


def _apply(batch: _Batch, parsed: ParsedEvent, line: int, seq: int) -> None:
    """Check one event against the batch state and queue its rows (a report is queued for
    the vault). Raises EventError to reject."""
    event = parsed.event
    rows = batch.rows
    if isinstance(event, MessageCreated):  # the most common event first
        _check_conversation(batch, parsed, event.conversation_id, event.account_id)
        if event.message_id in batch.message_places:
            raise _fail(parsed, "message_id", f"message_id {event.message_id!r} is already used")
        _claim(batch, event.conversation_id, event.account_id, seq)
        attachments = (
            canonical_json([a.model_dump() for a in event.attachments])
            if event.attachments
            else "[]"
        )
        rows["messages"].append(
            (
                event.message_id,
                seq,
                event.conversation_id,
                event.account_id,
                event.role,
                event.at,
                event.content,
                attachments,
            )
        )
        batch.message_places[event.message_id] = (event.conversation_id, event.at)
    elif isinstance(event, AccountUpdated):
        rows["account_plans"].append(
            (seq, event.account_id, event.at, event.plan, event.organization_id, event.email)
        )
    elif isinstance(event, AccountDeleted):
        rows["account_deletions"].append((seq, event.account_id, event.at))
        batch.deleted_accounts.add(event.account_id)
    elif isinstance(event, ConsentUpdated):
        rows["consents"].append(
            (seq, event.scope, event.subject, event.at, event.granted, event.source)
        )
    elif isinstance(event, ConversationUpdated):
        _check_conversation(batch, parsed, event.conversation_id, event.account_id)
        if event.incognito is not None and event.conversation_id in batch.owners:
            raise _fail(parsed, "incognito", "can only be set by the conversation's first event")
        _claim(batch, event.conversation_id, event.account_id, seq, incognito=bool(event.incognito))
        present = {
            name: getattr(event, name) for name in _SETTINGS if name in event.model_fields_set
        }
        rows["conversation_settings"].append(
            (seq, event.conversation_id, event.at, canonical_json(present))
        )
    elif isinstance(event, ConversationDeleted):
        owner = batch.owners.get(event.conversation_id)
        if owner is not None and owner != event.account_id:
            raise _fail(
                parsed,
                "account_id",
                f"conversation {event.conversation_id!r} belongs to another account",
            )
        _claim(batch, event.conversation_id, event.account_id, seq)
        rows["conversation_deletions"].append(
            (seq, event.conversation_id, event.account_id, event.at)
        )
        batch.deleted_convs.add(event.conversation_id)
    elif isinstance(event, FeedbackSubmitted):
        _apply_feedback(batch, parsed, event, line, seq)
    elif isinstance(event, SafetyFlagged):
        if event.flag_id in batch.flags:
            raise _fail(parsed, "flag_id", f"flag_id {event.flag_id!r} is already used")
        rows["flags"].append(
            (event.flag_id, seq, event.conversation_id, event.policy, event.at, event.reason)
        )
        batch.flags.add(event.flag_id)
    elif isinstance(event, SafetyCleared):
        if event.flag_id not in batch.flags:
            raise _fail(parsed, "flag_id", f"names no flag the store holds ({event.flag_id!r})")
        rows["flag_clears"].append((seq, event.flag_id, event.at))


def _apply_feedback(
    batch: _Batch, parsed: ParsedEvent, event: FeedbackSubmitted, line: int, seq: int
) -> None:
    _check_conversation(batch, parsed, event.conversation_id, event.account_id)
    feedback_key = batch.store.keys.id_hash("feedback", event.feedback_id)
    if feedback_key in batch.feedback:
        raise _fail(parsed, "feedback_id", f"feedback_id {event.feedback_id!r} is already used")
    place = batch.message_places.get(event.message_id)
    if place is None or place[0] != event.conversation_id:
        raise _fail(
            parsed,
            "message_id",
            f"the store holds no message {event.message_id!r} in conversation "
            f"{event.conversation_id!r}",
        )
    if place[1] > event.at:
        raise _fail(parsed, "message_id", "the rated message is later than the report")
    batch.rows["feedback_keys"].append((feedback_key,))
    batch.feedback.add(feedback_key)
    batch.reports.append((line, seq, event))


def _file_reports(batch: _Batch, sink: ReportSink, summary: IngestSummary) -> None:
    """Snapshot and vault the batch's accepted reports, once its rows are written. Each
    snapshot sees exactly what was accepted before its report (``event_seq < seq``)."""
    batch.flush()
    store = batch.store
    for line, seq, report in batch.reports:
        snapshot = take_snapshot(
            report=report,
            messages=store.messages_until(report.conversation_id, report.at, before_seq=seq),
            settings=store.settings_as_of(report.conversation_id, report.at, before_seq=seq),
            incognito=store.is_incognito(report.conversation_id),
        )
        receipt = sink.put(
            snapshot=snapshot,
            submitted_at=report.at,
            dedupe_key=store.keys.id_hash("report", report.event_id),
        )
        summary.receipts.append((line, report.event_id, receipt))


def _write_batch(
    store: Store,
    sink: ReportSink,
    events: list[tuple[int, ParsedEvent]],
    summary: IngestSummary,
    observer: BatchObserver | None = None,
) -> None:
    keys = store.keys
    accepted: Counter[str] = Counter()
    consents: list[ConsentUpdated] = []
    duplicates, rejected = summary.duplicates, summary.rejected
    with store.db.transaction():
        batch = _Batch(store, events)
        for (line, parsed), event_key in zip(events, batch.event_keys, strict=True):
            event = parsed.event
            body_hash = keys.short_hash("body", parsed.body)
            known = batch.event_hashes.get(event_key)
            if known is not None:
                if known == body_hash:
                    summary.duplicates += 1
                else:
                    summary.reject(
                        EventError(
                            "event_id was already accepted with a different body",
                            field="event_id",
                            event_id=event.event_id,
                            line=line,
                        )
                    )
                continue
            seq = batch.seq
            try:
                _apply(batch, parsed, line, seq)
            except EventError as exc:
                summary.reject(
                    EventError(exc.message, field=exc.field, event_id=exc.event_id, line=line)
                )
                continue
            if isinstance(event, FeedbackSubmitted):  # no seq, time or body: see report_events
                batch.rows["report_events"].append((event_key, body_hash))
            else:
                batch.rows["events"].append(
                    (seq, event_key, body_hash, event.type, event.at, parsed.body)
                )
                batch.seq += 1
            batch.event_hashes[event_key] = body_hash
            summary.accepted += 1
            accepted[event.type] += 1
            if isinstance(event, ConsentUpdated):
                consents.append(event)
        _file_reports(batch, sink, summary)
        if observer is not None and accepted:
            observer.accepted(
                AcceptedBatch(
                    accepted=dict(sorted(accepted.items())),
                    duplicates=summary.duplicates - duplicates,
                    rejected=summary.rejected - rejected,
                    consents=tuple(consents),
                )
            )


def _numbered(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    for number, text in enumerate(lines, start=1):
        if text.strip():
            yield number, text


def ingest_lines(
    *,
    store: Store,
    sink: ReportSink,
    policy: Policy,
    lines: Iterable[str],
    batch_size: int = DEFAULT_BATCH,
    observer: BatchObserver | None = None,
) -> IngestSummary:
    """Ingest JSONL lines (blank lines are skipped but counted). Returns the summary.
    ``observer`` hears of each batch that accepted something, inside its transaction."""
    summary = IngestSummary()
    pending: list[tuple[int, ParsedEvent]] = []
    plans = policy.plans
    for number, text in _numbered(lines):
        try:
            pending.append((number, parse_line(text, plans=plans, line=number)))
        except EventError as exc:
            summary.reject(exc)
            continue
        if len(pending) >= batch_size:
            _write_batch(store, sink, pending, summary, observer)
            pending = []
    if pending:
        _write_batch(store, sink, pending, summary, observer)
    summary.errors.sort(key=lambda e: e.line)
    return summary
