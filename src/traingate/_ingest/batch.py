"""One ingest transaction: check a batch of parsed events against the store and each other,
then write the accepted ones.

Order of checks for one event, after its own shape (``traingate._ingest.incoming``): its
event_id (duplicate or conflict), then its meaning against the store and the events before it
(ownership, deletions, reused ids, the rated message, the conversation's mode). Feedback
reports are snapshotted and vaulted once the batch's rows are written; the observer (the audit
log) hears of the batch inside its transaction. With a message archive (a lake), a report's
conversation is also read from it at receipt, and the snapshot holds the messages of both
(``traingate._ingest.archive``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

from traingate._core.events import ConsentUpdated, FeedbackSubmitted
from traingate._core.report import Snapshot, merge_messages, take_snapshot
from traingate._errors import EventError
from traingate._ingest.archive import (
    MessageArchive,
    Prefetched,
    earliest_known,
    prefetch,
    read_key,
)
from traingate._ingest.incoming import Incoming
from traingate._store.store import MessageRow, Store

__all__ = [
    "DEFAULT_BATCH",
    "AcceptedBatch",
    "BatchObserver",
    "IngestError",
    "IngestSummary",
    "ReportSink",
    "write_batch",
]

STANDARD = "standard"  # a conversation's mode unless its first event gives another (SPEC §5)

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
    "events": ("seq", "event_key", "body_hash", "type", "at"),
    "account_plans": ("event_seq", "account_id", "at", "plan", "organization_id", "email"),
    "account_deletions": ("event_seq", "account_id", "at"),
    "consents": ("event_seq", "scope", "subject", "setting", "at", "granted", "source"),
    "conversations": ("conversation_id", "account_id", "first_seq", "mode"),
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


# Tables with a unique index on keyed hashes, and how to get a row's hash. Their rows are
# written in hash order: the index's pages are then visited in order, once each, instead of at
# random (a third less time for the events of a large file).
_KEYED = {
    "events": itemgetter(1),
    "report_events": itemgetter(0),
    "feedback_keys": itemgetter(0),
}


class _Batch:
    """One transaction's worth of events: what the store knows about them, plus what earlier
    events of the batch added, and the rows waiting to be written."""

    def __init__(
        self,
        store: Store,
        events: Sequence[Incoming],
        archive: MessageArchive | None = None,
        prefetched: Prefetched | None = None,
    ) -> None:
        self.store = store
        self.archive = archive
        self.prefetched = prefetched or {}
        keys = store.keys
        convs: set[str] = set()
        accounts: set[str] = set()
        message_ids: set[str] = set()
        flag_ids: set[str] = set()
        feedback_keys: set[str] = set()
        reported: set[str] = set()
        for event in events:
            if event.conversation_id is not None:
                convs.add(event.conversation_id)
            if event.account_id is not None:
                accounts.add(event.account_id)
            if event.message_id is not None:
                message_ids.add(event.message_id)
            if event.flag_id is not None:
                flag_ids.add(event.flag_id)
            if event.type == "feedback.submitted":
                feedback_keys.add(keys.id_hash("feedback", event.values[0]))
                if event.conversation_id is not None:
                    reported.add(event.conversation_id)
        self.event_hashes = store.known_events([event.event_key for event in events])
        known = store.conversation_records(convs)
        self.owners = {conv: owner for conv, (owner, _) in known.items()}
        # Conversations whose mode is set (SPEC §5: by the first accepted event naming the
        # conversation): those stored, and those only a flag has named so far (standard).
        self.modes = {conv: mode for conv, (_, mode) in known.items()}
        for conv in store.flagged_conversations(convs - known.keys()):
            self.modes[conv] = STANDARD
        self.deleted_convs = store.deleted_conversations(convs)
        self.deleted_accounts = store.deleted_accounts(accounts)
        self.message_places = store.message_places(message_ids)
        self.flags = store.known_flags(flag_ids)
        self.feedback = store.known_feedback(feedback_keys)
        self.seq = store.next_seq()
        self.rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _TABLES}
        # line, seq, report, and the messages the archive holds for it (read at receipt)
        self.reports: list[tuple[int, int, FeedbackSubmitted, Sequence[MessageRow]]] = []
        # With an archive: for each reported conversation, the earliest time the store (and
        # this batch, so far) holds for it, which bounds the archive's read.
        self.earliest: dict[str, int] = {}
        self.reported = reported if archive is not None else set()
        if self.reported:
            self.earliest = earliest_known(store.db, self.reported)

    def note(self, conversation_id: str, at: int) -> None:
        """A message or settings update of the conversation, accepted in this batch."""
        if conversation_id in self.reported:
            known = self.earliest.get(conversation_id)
            self.earliest[conversation_id] = at if known is None else min(known, at)

    def archived(self, conversation_id: str, until: int) -> Sequence[MessageRow]:
        """The archive's messages of a conversation the store gives an owner, from the
        earliest time known for it up to ``until``'s day; none without an archive. The read
        made before the transaction serves when it was asked the same."""
        owner = self.owners.get(conversation_id)
        since = self.earliest.get(conversation_id)
        if self.archive is None or owner is None or since is None:
            return ()
        key = read_key(conversation_id, owner, since, until)
        found = self.prefetched.get(key)
        if found is not None:
            return found
        return self.archive.conversation_messages(
            conversation_id=conversation_id, owner=owner, since=key[2], until=until
        )

    def flush(self) -> None:
        for table, rows in self.rows.items():
            if table in _KEYED:
                rows.sort(key=_KEYED[table])
            self.store.insert(table, _TABLES[table], rows)
            rows.clear()


def _fail(event: Incoming, field_name: str, message: str) -> EventError:
    return EventError(message, field=field_name, event_id=event.event_id)


def _check_conversation(batch: _Batch, event: Incoming) -> tuple[str, str]:
    """Refuse additions to a deleted conversation or account, or to another's conversation.
    Returns the conversation and account ids."""
    conversation_id, account_id = event.conversation_id, event.account_id
    assert conversation_id is not None and account_id is not None  # the event types checked
    if conversation_id in batch.deleted_convs:
        raise _fail(
            event,
            "conversation_id",
            f"conversation {conversation_id!r} was deleted; nothing may be added to it",
        )
    if account_id in batch.deleted_accounts:
        raise _fail(
            event, "account_id", f"account {account_id!r} was deleted; nothing may be added to it"
        )
    owner = batch.owners.get(conversation_id)
    if owner is not None and owner != account_id:
        raise _fail(
            event,
            "account_id",
            f"conversation {conversation_id!r} belongs to another account",
        )
    return conversation_id, account_id


def _claim(batch: _Batch, conversation_id: str, account_id: str, seq: int) -> None:
    """The conversation belongs to the account that first named it, with the mode the first
    event naming it set (standard unless that event was a conversation.updated giving one)."""
    if conversation_id not in batch.owners:
        batch.owners[conversation_id] = account_id
        mode = batch.modes.setdefault(conversation_id, STANDARD)
        batch.rows["conversations"].append((conversation_id, account_id, seq, mode))


def _apply(batch: _Batch, event: Incoming, seq: int) -> None:
    """Check one event against the batch state and queue its rows (a report is queued for
    the vault). Raises EventError to reject. ``Incoming`` documents ``values``."""
    rows = batch.rows
    kind, at = event.type, event.at
    if kind == "message.created":  # the most common event first
        conversation_id, account_id = _check_conversation(batch, event)
        message_id = event.message_id
        assert message_id is not None
        if message_id in batch.message_places:
            raise _fail(event, "message_id", f"message_id {message_id!r} is already used")
        _claim(batch, conversation_id, account_id, seq)
        role, content, attachments = event.values
        rows["messages"].append(
            (message_id, seq, conversation_id, account_id, role, at, content, attachments)
        )
        batch.message_places[message_id] = (conversation_id, at)
        batch.note(conversation_id, at)
    elif kind == "account.updated":
        rows["account_plans"].append((seq, event.account_id, at, *event.values))
    elif kind == "account.deleted":
        assert event.account_id is not None
        rows["account_deletions"].append((seq, event.account_id, at))
        batch.deleted_accounts.add(event.account_id)
    elif kind == "consent.updated":
        scope, subject, setting, granted, source = event.values
        rows["consents"].append((seq, scope, subject, setting, at, granted, source))
    elif kind == "conversation.updated":
        conversation_id, account_id = _check_conversation(batch, event)
        mode, mode_field, settings = event.values
        current = batch.modes.get(conversation_id)
        if current is None:
            batch.modes[conversation_id] = mode or STANDARD
        elif mode is not None and mode != current:
            raise _fail(
                event,
                mode_field,
                f"gives mode {mode!r}, but conversation {conversation_id!r} is {current!r}: a "
                "conversation's mode is set by the first event naming it and never changes",
            )
        _claim(batch, conversation_id, account_id, seq)
        rows["conversation_settings"].append((seq, conversation_id, at, settings))
        batch.note(conversation_id, at)
    elif kind == "conversation.deleted":
        _apply_deletion(batch, event, seq)
    elif kind == "feedback.submitted":
        _apply_feedback(batch, event, seq)
    elif kind == "safety.flagged":
        assert event.flag_id is not None
        if event.flag_id in batch.flags:
            raise _fail(event, "flag_id", f"flag_id {event.flag_id!r} is already used")
        assert event.conversation_id is not None
        policy, reason = event.values
        rows["flags"].append((event.flag_id, seq, event.conversation_id, policy, at, reason))
        batch.flags.add(event.flag_id)
        batch.modes.setdefault(event.conversation_id, STANDARD)  # it names the conversation
    elif kind == "safety.cleared":
        if event.flag_id not in batch.flags:
            raise _fail(event, "flag_id", f"names no flag the store holds ({event.flag_id!r})")
        rows["flag_clears"].append((seq, event.flag_id, at))


def _apply_deletion(batch: _Batch, event: Incoming, seq: int) -> None:
    conversation_id, account_id = event.conversation_id, event.account_id
    assert conversation_id is not None and account_id is not None
    owner = batch.owners.get(conversation_id)
    if owner is not None and owner != account_id:
        raise _fail(
            event, "account_id", f"conversation {conversation_id!r} belongs to another account"
        )
    _claim(batch, conversation_id, account_id, seq)
    batch.rows["conversation_deletions"].append((seq, conversation_id, account_id, event.at))
    batch.deleted_convs.add(conversation_id)


def _apply_feedback(batch: _Batch, event: Incoming, seq: int) -> None:
    conversation_id, _ = _check_conversation(batch, event)
    report = event.event
    assert isinstance(report, FeedbackSubmitted)
    feedback_key = batch.store.keys.id_hash("feedback", report.feedback_id)
    if feedback_key in batch.feedback:
        raise _fail(event, "feedback_id", f"feedback_id {report.feedback_id!r} is already used")
    place = batch.message_places.get(report.message_id)
    archived = batch.archived(conversation_id, event.at)
    if place is None:
        rated = next((m for m in archived if m.message_id == report.message_id), None)
        place = None if rated is None else (conversation_id, rated.at)
    if place is None or place[0] != conversation_id:
        raise _fail(
            event,
            "message_id",
            f"the store holds no message {report.message_id!r} in conversation {conversation_id!r}",
        )
    if place[1] > event.at:
        raise _fail(event, "message_id", "the rated message is later than the report")
    batch.rows["feedback_keys"].append((feedback_key,))
    batch.feedback.add(feedback_key)
    batch.reports.append((event.line, seq, report, archived))


def _file_reports(batch: _Batch, sink: ReportSink, summary: IngestSummary) -> None:
    """Snapshot and vault the batch's accepted reports, once its rows are written. Each
    snapshot sees exactly what was accepted before its report (``event_seq < seq``), and what
    the archive held of the conversation when the report was checked."""
    batch.flush()
    store = batch.store
    for line, seq, report, archived in batch.reports:
        held = store.messages_until(report.conversation_id, report.at, before_seq=seq)
        snapshot = take_snapshot(
            report=report,
            messages=merge_messages(held=held, archived=archived),
            settings=store.settings_as_of(report.conversation_id, report.at, before_seq=seq),
            mode=batch.modes.get(report.conversation_id, STANDARD),
        )
        receipt = sink.put(
            snapshot=snapshot,
            submitted_at=report.at,
            dedupe_key=store.keys.id_hash("report", report.event_id),
        )
        summary.receipts.append((line, report.event_id, receipt))


def write_batch(
    *,
    store: Store,
    sink: ReportSink,
    events: Sequence[Incoming],
    summary: IngestSummary,
    observer: BatchObserver | None = None,
    archive: MessageArchive | None = None,
) -> None:
    """Check and write ``events`` in one transaction, counting them into ``summary``.
    ``archive``: where reports' messages the store does not hold are read (a lake)."""
    accepted: Counter[str] = Counter()
    consents: list[ConsentUpdated] = []
    duplicates, rejected = summary.duplicates, summary.rejected
    # the lake is read before the store's write lock is taken (traingate._ingest.archive)
    prefetched = prefetch(store, events, archive) if archive is not None else None
    with store.db.transaction():
        batch = _Batch(store, events, archive, prefetched)
        rows_events, rows_reports = batch.rows["events"], batch.rows["report_events"]
        known_hashes = batch.event_hashes
        for event in events:
            event_key, body_hash = event.event_key, event.body_hash
            known = known_hashes.get(event_key)
            if known is not None:
                if known == body_hash:
                    summary.duplicates += 1
                else:
                    summary.reject(
                        EventError(
                            "event_id was already accepted with a different body",
                            field="event_id",
                            event_id=event.event_id,
                            line=event.line,
                        )
                    )
                continue
            seq = batch.seq
            try:
                _apply(batch, event, seq)
            except EventError as exc:
                summary.reject(
                    EventError(exc.message, field=exc.field, event_id=exc.event_id, line=event.line)
                )
                continue
            if event.type == "feedback.submitted":  # no seq, time or body: see report_events
                rows_reports.append((event_key, body_hash))
            else:
                rows_events.append((seq, event_key, body_hash, event.type, event.at))
                batch.seq += 1
            known_hashes[event_key] = body_hash
            summary.accepted += 1
            accepted[event.type] += 1
            if isinstance(event.event, ConsentUpdated):
                consents.append(event.event)
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
