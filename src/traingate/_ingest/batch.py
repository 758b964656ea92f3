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
from traingate._store.schema import (
    CONVERSATIONS,
    EVENTS,
    FEEDBACK_KEYS,
    INGEST_TABLES,
    REPORT_EVENTS,
)
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


# Tables with a unique index on keyed hashes, and how to get a row's hash. Their rows are
# written in hash order: the index's pages are then visited in order, once each, instead of at
# random (a third less time for the events of a large file).
_KEYED = {
    table.name: itemgetter(table.columns.index(column))
    for table, column in (
        (EVENTS, "event_key"),
        (REPORT_EVENTS, "event_key"),
        (FEEDBACK_KEYS, "feedback_key"),
    )
}


# The event types that name a conversation and the account adding to it.
_IN_CONVERSATION = (
    MessageCreatedIn,
    ConversationUpdatedIn,
    ConversationDeletedIn,
    FeedbackSubmittedIn,
)


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
            if isinstance(event, MessageCreatedIn | FeedbackSubmittedIn):
                message_ids.add(event.message_id)
            if isinstance(event, _IN_CONVERSATION):
                convs.add(event.conversation_id)
                accounts.add(event.account_id)
            elif isinstance(event, AccountUpdatedIn | AccountDeletedIn):
                accounts.add(event.account_id)
            elif isinstance(event, ConsentUpdatedIn):
                if event.scope == "account":
                    accounts.add(event.subject)
            elif isinstance(event, SafetyFlaggedIn):
                convs.add(event.conversation_id)
                flag_ids.add(event.flag_id)
            elif isinstance(event, SafetyClearedIn):
                flag_ids.add(event.flag_id)
            if isinstance(event, FeedbackSubmittedIn):
                feedback_keys.add(keys.id_hash("feedback", event.feedback_id))
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
        self.rows: dict[str, list[tuple[Any, ...]]] = {table.name: [] for table in INGEST_TABLES}
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
        for table in INGEST_TABLES:
            rows = self.rows[table.name]
            if table.name in _KEYED:
                rows.sort(key=_KEYED[table.name])
            self.store.insert(table.name, table.columns, rows)
            rows.clear()


def _fail(event: Incoming, field_name: str, message: str) -> EventError:
    return EventError(message, field=field_name, event_id=event.event_id)


def _check_conversation(
    batch: _Batch, event: MessageCreatedIn | ConversationUpdatedIn | FeedbackSubmittedIn
) -> tuple[str, str]:
    """Refuse additions to a deleted conversation or account, or to another's conversation.
    Returns the conversation and account ids."""
    conversation_id, account_id = event.conversation_id, event.account_id
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
        batch.rows[CONVERSATIONS.name].append(
            CONVERSATIONS.row(
                conversation_id=conversation_id, account_id=account_id, first_seq=seq, mode=mode
            )
        )


def _apply(batch: _Batch, event: Incoming, seq: int) -> None:
    """Check one event against the batch state and note what it changes there (a report is
    queued for the vault; its own rows are the caller's, ``Incoming.rows``). Raises EventError
    to reject."""
    at = event.at
    if isinstance(event, MessageCreatedIn):  # the most common event first
        conversation_id, account_id = _check_conversation(batch, event)
        message_id = event.message_id
        if message_id in batch.message_places:
            raise _fail(event, "message_id", f"message_id {message_id!r} is already used")
        _claim(batch, conversation_id, account_id, seq)
        batch.message_places[message_id] = (conversation_id, at)
        batch.note(conversation_id, at)
    elif isinstance(event, AccountDeletedIn):
        batch.deleted_accounts.add(event.account_id)
    elif isinstance(event, ConversationUpdatedIn):
        conversation_id, account_id = _check_conversation(batch, event)
        mode = event.mode
        current = batch.modes.get(conversation_id)
        if current is None:
            batch.modes[conversation_id] = mode or STANDARD
        elif mode is not None and mode != current:
            assert event.mode_field is not None
            raise _fail(
                event,
                event.mode_field,
                f"gives mode {mode!r}, but conversation {conversation_id!r} is {current!r}: a "
                "conversation's mode is set by the first event naming it and never changes",
            )
        _claim(batch, conversation_id, account_id, seq)
        batch.note(conversation_id, at)
    elif isinstance(event, ConversationDeletedIn):
        _apply_deletion(batch, event, seq)
    elif isinstance(event, FeedbackSubmittedIn):
        _apply_feedback(batch, event, seq)
    elif isinstance(event, SafetyFlaggedIn):
        if event.flag_id in batch.flags:
            raise _fail(event, "flag_id", f"flag_id {event.flag_id!r} is already used")
        batch.flags.add(event.flag_id)
        batch.modes.setdefault(event.conversation_id, STANDARD)  # it names the conversation
    elif isinstance(event, SafetyClearedIn) and event.flag_id not in batch.flags:
        raise _fail(event, "flag_id", f"names no flag the store holds ({event.flag_id!r})")
    # account.updated and consent.updated: nothing to check against the store


def _apply_deletion(batch: _Batch, event: ConversationDeletedIn, seq: int) -> None:
    conversation_id, account_id = event.conversation_id, event.account_id
    owner = batch.owners.get(conversation_id)
    if owner is not None and owner != account_id:
        raise _fail(
            event, "account_id", f"conversation {conversation_id!r} belongs to another account"
        )
    _claim(batch, conversation_id, account_id, seq)
    batch.deleted_convs.add(conversation_id)


def _apply_feedback(batch: _Batch, event: FeedbackSubmittedIn, seq: int) -> None:
    conversation_id, _ = _check_conversation(batch, event)
    report = event.event
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
    batch.rows[FEEDBACK_KEYS.name].append(FEEDBACK_KEYS.row(feedback_key=feedback_key))
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
        rows = batch.rows
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
            for table, row in event.rows(seq):
                rows[table].append(row)
            if not isinstance(event, FeedbackSubmittedIn):  # a report takes no seq
                batch.seq += 1
            known_hashes[event_key] = body_hash
            summary.accepted += 1
            accepted[event.type] += 1
            if isinstance(event, ConsentUpdatedIn):
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
