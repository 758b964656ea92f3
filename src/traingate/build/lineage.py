"""Lineage: which builds took which items, kept in the store (tables ``builds`` and
``build_items``, migration 3) by keyed hash only.

A build spools its lineage items to a scratch file while it writes (memory stays bounded),
then ``commit_build`` inserts them and the build's row in one transaction, inside which the
caller's ``finish`` renames the finished directory into place: if the rename fails nothing is
committed, and if the commit fails the caller takes the directory away again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traingate.build.records import LineageItem, conversation_item_key, report_item_key
from traingate.keys import KeyRing
from traingate.store.db import Database
from traingate.timeutil import format_instant

__all__ = [
    "BuildRow",
    "Lineage",
    "LineageEntry",
    "LineageSpool",
    "builds_holding",
    "commit_build",
    "conversation_lineage",
    "receipt_record_key",
    "report_lineage",
]

_CHUNK = 5_000
_BUILD_COLUMNS = (
    "build_id", "built_at", "purpose", "as_of", "policy_id", "policy_sha256", "engine",
    "format", "path", "manifest_sha256", "records", "messages",
)  # fmt: skip
_ITEM_COLUMNS = ("build_id", "record_id", "item_key", "kind", "messages")


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


class LineageSpool:
    """Lineage items spooled to a scratch file (tab-separated), read back in chunks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("w", encoding="ascii", newline="\n")
        self.count = 0

    def add(self, items: Iterable[LineageItem]) -> None:
        for item in items:
            self._handle.write(f"{item.record_id}\t{item.item_key}\t{item.kind}\t{item.messages}\n")
            self.count += 1

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def chunks(self, size: int = _CHUNK) -> Iterator[list[LineageItem]]:
        self.close()
        chunk: list[LineageItem] = []
        with self.path.open(encoding="ascii") as handle:
            for line in handle:
                record_id, item_key, kind, messages = line.rstrip("\n").split("\t")
                chunk.append(
                    LineageItem(
                        item_key=item_key, kind=kind, record_id=record_id, messages=int(messages)
                    )
                )
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk


def _insert(db: Database, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    copy = getattr(db, "copy_rows", None)  # PostgreSQL: COPY is much faster for many rows
    if callable(copy):
        copy(table, columns, rows)
    else:
        marks = ", ".join("?" * len(columns))
        db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def commit_build(
    db: Database,
    *,
    build: BuildRow,
    items: Iterable[Sequence[LineageItem]],
    finish: Callable[[], None],
) -> None:
    """Record ``build`` and its items, and run ``finish`` (the rename) before committing."""
    with db.transaction():
        _insert(db, "builds", _BUILD_COLUMNS, [build.values()])
        for chunk in items:
            _insert(
                db,
                "build_items",
                _ITEM_COLUMNS,
                [(build.build_id, i.record_id, i.item_key, i.kind, i.messages) for i in chunk],
            )
        finish()


def builds_holding(db: Database, *, item_key: str) -> list[LineageEntry]:
    """Every build that took the item, oldest first."""
    columns = ", ".join(f"b.{name}" for name in _BUILD_COLUMNS)
    rows = db.execute(
        f"SELECT {columns}, i.record_id, i.messages FROM build_items i"
        " JOIN builds b ON b.build_id = i.build_id WHERE i.item_key = ?"
        " ORDER BY b.built_at, b.build_id, i.record_id",
        (item_key,),
    )
    entries: dict[str, tuple[BuildRow, list[str], int]] = {}
    width = len(_BUILD_COLUMNS)
    for row in rows:
        build = BuildRow(*row[:width])
        record_id, messages = str(row[width]), int(row[width + 1])
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
