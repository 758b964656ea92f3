"""Messages a feedback report's snapshot reads beside the store's: a lake, read at receipt.

With the messages in a lake (docs/lake.md, docs/scale.md) the store keeps no message of most
conversations, yet a report is still taken as known when it is received. Ingest then reads
the reported conversation's rows from the lake: only the partitions from the day before the
earliest event the store holds for the conversation (its ``conversation.updated``, or a stored
message) to the report's day, and of those only the rows naming the conversation whose
``account_id`` is the conversation's owner in the store (another account's rows are as absent
as missing ones, as in a build). A lake that cannot be read fails the ingest with a
``StoreError``: the report is neither taken without its messages nor rejected as the client's
fault.

The reads are made before the batch's transaction (``prefetch``), so the store's write lock
is not held while the lake is read; a report whose conversation the batch itself changes (its
owner, or an earlier time) is read again inside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from traingate._core.timeutil import DAY
from traingate._errors import BuildError, StoreError
from traingate._ingest.incoming import FeedbackSubmittedIn, Incoming
from traingate._store.db import Database
from traingate._store.store import MessageRow, Store

if TYPE_CHECKING:
    from traingate._datasets.lake import ParquetLake

__all__ = [
    "LakeArchive",
    "MessageArchive",
    "Prefetched",
    "ReadKey",
    "earliest_known",
    "prefetch",
    "read_key",
]

# What one read of the archive was asked: (conversation, owner, since, until).
ReadKey = tuple[str, str, int, int]
Prefetched = Mapping[ReadKey, Sequence[MessageRow]]

_CHUNK = 500


class MessageArchive(Protocol):
    """Where messages the store does not hold are read at a report's receipt."""

    def conversation_messages(
        self, *, conversation_id: str, owner: str, since: int, until: int
    ) -> Sequence[MessageRow]:
        """The owner's messages of the conversation that can be at or after ``since`` and at
        or before ``until`` (later ones may come too: the caller filters on ``at``), in
        (``at``, ``seq``, ``message_id``) order."""
        ...


@dataclass(frozen=True, slots=True)
class LakeArchive:
    """A lake read at receipt. ``since`` reaches back one day before the caller's bound, so a
    message stamped before the event that started its conversation (clocks a little apart,
    across midnight) is still read."""

    lake: ParquetLake

    @classmethod
    def at(cls, root: str) -> LakeArchive:
        from traingate._datasets.lake import message_source  # pyarrow.dataset only when used

        return cls(lake=message_source(f"parquet:{root}"))

    @property
    def name(self) -> str:
        return self.lake.name

    def conversation_messages(
        self, *, conversation_id: str, owner: str, since: int, until: int
    ) -> list[MessageRow]:
        try:
            rows = self.lake.conversation_messages(
                conversation_id=conversation_id, since=since - DAY, until=until
            )
        except BuildError as exc:
            raise StoreError(f"a feedback report's messages: {exc}") from exc
        return [row.message for row in rows if row.account_id == owner]


def earliest_known(db: Database, conversation_ids: Iterable[str]) -> dict[str, int]:
    """conversation_id -> the earliest ``at`` of the store's settings updates and messages of
    the conversation (those the store holds something of)."""
    unique = sorted(set(conversation_ids))
    found: dict[str, int] = {}
    for start in range(0, len(unique), _CHUNK):
        clause, params = db.in_list("conversation_id", unique[start : start + _CHUNK], uses=2)
        for conversation_id, at in db.execute(
            "SELECT conversation_id, MIN(at) FROM ("
            f"SELECT conversation_id, at FROM conversation_settings WHERE {clause}"
            f" UNION ALL SELECT conversation_id, at FROM messages WHERE {clause}"
            ") AS known GROUP BY conversation_id",
            params,
        ):
            found[str(conversation_id)] = int(at)
    return found


def read_key(conversation_id: str, owner: str, earliest: int, at: int) -> ReadKey:
    """The read a report at ``at`` needs, given its conversation's earliest known time."""
    return (conversation_id, owner, min(earliest, at), at)


def prefetch(store: Store, events: Sequence[Incoming], archive: MessageArchive) -> Prefetched:
    """The archive's reads for the batch's reports, as the store stands before the batch
    (outside its transaction): by what each read was asked."""
    reports = [(e.conversation_id, e.at) for e in events if isinstance(e, FeedbackSubmittedIn)]
    if not reports:
        return {}
    conversations = {conversation for conversation, _ in reports}
    owners = store.conversation_owners(conversations)
    earliest = earliest_known(store.db, conversations)
    found: dict[ReadKey, Sequence[MessageRow]] = {}
    for conversation, at in reports:
        owner, since = owners.get(conversation), earliest.get(conversation)
        if owner is None or since is None:
            continue
        key = read_key(conversation, owner, since, at)
        if key not in found:
            found[key] = archive.conversation_messages(
                conversation_id=conversation, owner=owner, since=key[2], until=at
            )
    return found
