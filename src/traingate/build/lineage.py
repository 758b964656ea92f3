"""Lineage: which builds took which items, kept in the store (tables ``builds`` and
``build_items``, migration 3) by keyed hash only.

A build spools its lineage items to a scratch file while it writes (memory stays bounded),
then records itself in two phases around the rename of its finished directory:

1. ``record_pending`` commits the build's row, marked pending with the build's scratch
   directory (which the build holds locked while it lives, ``build/staging.py``), and its items;
2. the caller renames the directory into place;
3. ``complete_build`` clears the mark, in the transaction that also writes the caller's audit
   entry.

Readers skip pending rows. A build killed between 1 and 3 leaves a pending row whose scratch
directory nobody holds: ``settle_builds`` completes it when its directory stands with the
manifest it recorded, and deletes its rows otherwise. So lineage never names a directory that
does not exist, and a directory that appeared is never without its lineage once settled.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from traingate.build.records import LineageItem, conversation_item_key, report_item_key
from traingate.build.staging import is_live
from traingate.keys import SHORT_HASH, KeyRing
from traingate.store.db import Database
from traingate.timeutil import format_instant

__all__ = [
    "BuildRow",
    "Lineage",
    "LineageEntry",
    "LineageSpool",
    "Settled",
    "StoredItem",
    "builds_holding",
    "complete_build",
    "conversation_lineage",
    "forget_build",
    "item_key_bytes",
    "receipt_record_key",
    "record_pending",
    "report_lineage",
    "settle_builds",
]

_CHUNK = 5_000
_RUN = 50_000  # items sorted in memory at once by LineageSpool (about 9 MB)
_BUILD_COLUMNS = (
    "build_id", "built_at", "purpose", "as_of", "policy_id", "policy_sha256", "engine",
    "format", "path", "manifest_sha256", "records", "messages",
)  # fmt: skip
_ITEM_COLUMNS = ("build_id", "item_key", "record_id", "kind", "messages")


@dataclass(frozen=True, slots=True)
class BuildRow:
    """One completed build, as lineage remembers it."""

    build_id: str
    built_at: int
    purpose: str
    as_of: int
    policy_id: str
    policy_sha256: str
    engine: str
    format: str
    path: str
    manifest_sha256: str
    records: int
    messages: int

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _BUILD_COLUMNS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "build_id": self.build_id,
            "built_at": format_instant(self.built_at),
            "purpose": self.purpose,
            "as_of": format_instant(self.as_of),
            "policy": {"id": self.policy_id, "sha256": self.policy_sha256},
            "engine": self.engine,
            "format": self.format,
            "path": self.path,
            "manifest_sha256": self.manifest_sha256,
            "records": self.records,
            "messages": self.messages,
        }


@dataclass(frozen=True, slots=True)
class LineageEntry:
    """One build holding data of the item asked about: which of its records, how many
    messages."""

    build: BuildRow
    record_ids: tuple[str, ...]
    messages: int

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.build.to_dict(),
            "item": {"records": list(self.record_ids), "messages": self.messages},
        }


StoredItem = tuple[bytes, bytes, str, int]  # item key (16 bytes), record id, kind, messages
_KINDS = ("conversation", "feedback")
_WIDTH = SHORT_HASH + 32 + 1 + 4  # one spooled item: item key, record id, kind, messages


class LineageSpool:
    """Lineage items spooled to a scratch file as fixed-width binary records, read back in key
    order (item key, then record id) as ``build_items`` stores them (``StoredItem``): the
    order of its primary key after the build id, so that ``record_pending`` appends the
    build's rows at one place of the tree. Items are sorted in runs of at most ``run_items``
    (the memory they take), written one after the other, and merged when read."""

    def __init__(self, path: Path, *, run_items: int = _RUN) -> None:
        self.path = path
        self._handle = path.open("wb")
        self._run_items = run_items
        self._pending: list[bytes] = []
        self._runs: list[tuple[int, int]] = []  # (start, end) byte offsets of sorted runs
        self.count = 0

    def add(self, items: Iterable[LineageItem]) -> None:
        pending = self._pending
        for item in items:
            pending.append(
                item_key_bytes(item.item_key)
                + bytes.fromhex(item.record_id)
                + bytes((_KINDS.index(item.kind),))
                + item.messages.to_bytes(4, "big")
            )
            self.count += 1
        if len(pending) >= self._run_items:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        self._pending.sort()  # fixed width, key first: byte order is (item key, record id) order
        start = self._handle.tell()
        self._handle.write(b"".join(self._pending))
        self._runs.append((start, self._handle.tell()))
        self._pending = []

    def close(self) -> None:
        if not self._handle.closed:
            self._flush()
            self._handle.close()

    def _run(self, start: int, end: int) -> Iterator[bytes]:
        block = _WIDTH * 4_096
        with self.path.open("rb") as handle:
            handle.seek(start)
            position = start
            while position < end:
                data = handle.read(min(block, end - position))
                if not data:
                    return
                position += len(data)
                for offset in range(0, len(data), _WIDTH):
                    yield data[offset : offset + _WIDTH]

    def chunks(self, size: int = _CHUNK) -> Iterator[list[StoredItem]]:
        """Every item, in key order, ``size`` at a time."""
        self.close()
        chunk: list[StoredItem] = []
        key, record = SHORT_HASH, SHORT_HASH + 32
        runs = [self._run(start, end) for start, end in self._runs]
        for raw in runs[0] if len(runs) == 1 else heapq.merge(*runs):
            chunk.append(
                (raw[:key], raw[key:record], _KINDS[raw[record]], int.from_bytes(raw[record + 1 :]))
            )
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def item_key_bytes(item_key: str) -> bytes:
    """What ``build_items`` keeps of an item key (64 hex characters): its first 16 bytes
    (migration 9; the same prefix migration 7 keeps of event keys)."""
    return bytes.fromhex(item_key[: 2 * SHORT_HASH])


def _insert(db: Database, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    copy = getattr(db, "copy_rows", None)  # PostgreSQL: COPY is much faster for many rows
    if callable(copy):
        copy(table, columns, rows)
    else:
        marks = ", ".join("?" * len(columns))
        db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def record_pending(
    db: Database,
    *,
    build: BuildRow | Callable[[], BuildRow],
    items: Iterable[Sequence[StoredItem]],
    scratch: Path,
    build_id: str | None = None,
) -> None:
    """Phase 1: commit the build's items and its row, pending, with the build's locked
    scratch, in one transaction. The items should come in key order (``LineageSpool.chunks``),
    so that their rows are appended rather than scattered (any order is correct). ``build``
    may be a callable giving the row once the items are in (named ``build_id`` meanwhile): a
    build inserts its items while it finishes its files; an exception of the callable rolls
    everything back."""
    name = build.build_id if isinstance(build, BuildRow) else build_id
    if name is None:
        raise ValueError("record_pending: name the build (build_id) when its row comes later")
    with db.transaction():
        for chunk in items:
            _insert(db, "build_items", _ITEM_COLUMNS, [(name, *item) for item in chunk])
        row = build if isinstance(build, BuildRow) else build()
        if row.build_id != name:
            raise ValueError(f"record_pending: items of {name}, row of {row.build_id}")
        _insert(db, "builds", (*_BUILD_COLUMNS, "pending_scratch"), [(*row.values(), str(scratch))])


def complete_build(
    db: Database, *, build_id: str, on_complete: Callable[[], None] | None = None
) -> None:
    """Phase 3, once the directory stands: clear the mark; ``on_complete`` (the audit entry)
    runs in the same transaction, only if this call cleared it (two settlers may race)."""
    with db.transaction():
        cleared = db.execute(
            "UPDATE builds SET pending_scratch = NULL"
            " WHERE build_id = ? AND pending_scratch IS NOT NULL RETURNING build_id",
            (build_id,),
        )
        if cleared and on_complete is not None:
            on_complete()


def forget_build(db: Database, *, build_id: str) -> None:
    """Delete a build's lineage rows (a build that failed after phase 1)."""
    with db.transaction():
        db.execute("DELETE FROM build_items WHERE build_id = ?", (build_id,))
        db.execute("DELETE FROM builds WHERE build_id = ?", (build_id,))


def _stands(build: BuildRow) -> bool:
    """Whether the build's directory holds the manifest its row recorded."""
    try:
        data = (Path(build.path) / "manifest.json").read_bytes()
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() == build.manifest_sha256


@dataclass(frozen=True, slots=True)
class Settled:
    """What ``settle_builds`` did: builds completed, and builds whose rows it deleted."""

    completed: tuple[str, ...]
    deleted: tuple[str, ...]


def settle_builds(db: Database, *, on_complete: Callable[[BuildRow], None]) -> Settled:
    """Decide the pending rows of builds that died between phases 1 and 3 (running builds are
    left alone): complete those whose directory stands (``on_complete`` writes their audit
    entry), delete the rows of the others."""
    columns = ", ".join(_BUILD_COLUMNS)
    rows = db.execute(
        f"SELECT {columns}, pending_scratch FROM builds WHERE pending_scratch IS NOT NULL"
        " ORDER BY built_at, build_id"
    )
    completed: list[str] = []
    deleted: list[str] = []
    for row in rows:
        build, scratch = BuildRow(*row[:-1]), Path(str(row[-1]))
        if is_live(scratch):
            continue
        if _stands(build):
            complete_build(db, build_id=build.build_id, on_complete=partial(on_complete, build))
            completed.append(build.build_id)
        else:
            forget_build(db, build_id=build.build_id)
            deleted.append(build.build_id)
    return Settled(completed=tuple(completed), deleted=tuple(deleted))


def builds_holding(db: Database, *, item_key: str) -> list[LineageEntry]:
    """Every build that took the item, oldest first. The items are looked up build by build
    (``CROSS JOIN`` keeps builds the outer loop on SQLite): (build_id, item_key) is the prefix
    of ``build_items``' key."""
    columns = ", ".join(f"b.{name}" for name in _BUILD_COLUMNS)
    rows = db.execute(
        f"SELECT {columns}, i.record_id, i.messages FROM builds b CROSS JOIN build_items i"
        " WHERE i.build_id = b.build_id AND i.item_key = ? AND b.pending_scratch IS NULL"
        " ORDER BY b.built_at, b.build_id, i.record_id",
        (item_key_bytes(item_key),),
    )
    entries: dict[str, tuple[BuildRow, list[str], int]] = {}
    width = len(_BUILD_COLUMNS)
    for row in rows:
        build = BuildRow(*row[:width])
        record_id, messages = bytes(row[width]).hex(), int(row[width + 1])
        _, ids, total = entries.get(build.build_id, (build, [], 0))
        ids.append(record_id)
        entries[build.build_id] = (build, ids, total + messages)
    return [
        LineageEntry(build=build, record_ids=tuple(ids), messages=total)
        for build, ids, total in entries.values()
    ]


@dataclass(frozen=True, slots=True)
class Lineage:
    """The builds holding data of one item (a conversation, or a feedback report)."""

    item: dict[str, str]
    builds: tuple[LineageEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"item": dict(self.item), "builds": [entry.to_dict() for entry in self.builds]}


def conversation_lineage(db: Database, *, signing_key: bytes, conversation_id: str) -> Lineage:
    """Every build holding messages of the conversation (under any basis). The conversation
    need not exist any more: lineage outlives deletion and purge."""
    key = conversation_item_key(signing_key, conversation_id)
    return Lineage(
        item={"kind": "conversation", "conversation_id": conversation_id},
        builds=tuple(builds_holding(db, item_key=key)),
    )


def report_lineage(db: Database, *, signing_key: bytes, record_key: str) -> Lineage:
    """Every build holding the feedback report whose vault record key is ``record_key``."""
    key = report_item_key(signing_key, record_key)
    return Lineage(item={"kind": "feedback_report"}, builds=tuple(builds_holding(db, item_key=key)))


def receipt_record_key(keys: KeyRing, receipt: str) -> str:
    """The vault's record key of the report a receipt names: what ``Vault.reports`` yields as
    ``record_key`` for it (tests pin the two together). Only the receipt's report id is used,
    so lineage still answers after the report was deleted or purged, when it matters most;
    a malformed receipt raises ReceiptError."""
    from traingate.vault.vault import Receipt

    report_id = Receipt.parse(receipt).report_id
    return keys.sign(f"feedback-record\x00{report_id}".encode())
