"""Lineage: which builds took which items, by keyed hash only. The store keeps each build's
row (table ``builds``); its items go to a Parquet file beside its dataset, sorted by item key
(``_datasets/lineage_file.py``; the row names the file and its sha256, migration 14; a build
whose engine wrote its lineage in parallel has a directory of sorted files instead, the row
naming the directory and its index's sha256). Builds
recorded before migration 14 keep their items in the store's ``build_items`` (migration 3),
which readers still consult for them.

A build spools its lineage items to a scratch file while it writes (memory stays bounded),
writes them as its lineage file in its scratch directory while it finishes its parts, then
records itself in two phases around the rename of its finished directory:

1. ``record_pending`` commits the build's row, marked pending with the build's scratch
   directory (which the build holds locked while it lives, ``_datasets/staging.py``);
2. the caller renames the lineage file into place (``place_lineage``), then the directory;
3. ``complete_build`` clears the mark, in the transaction that also writes the caller's audit
   entry.

Readers skip pending rows. A build killed between 1 and 3 leaves a pending row whose scratch
directory nobody holds: ``settle_builds`` completes it when its directory stands with the
manifest it recorded and its lineage file with the hash it recorded (the file is renamed
before the directory, so a directory that stands has its lineage), and deletes its row and
file otherwise. So lineage never names a directory that does not exist, and a directory that
appeared is never without its lineage once settled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from traingate._core.timeutil import format_instant
from traingate._datasets.lineage_file import (
    LineageSpool,
    StoredItem,
    file_sha256,
    find_items,
    lineage_digest,
    remove_lineage,
)
from traingate._datasets.records import conversation_item_key, report_item_key
from traingate._datasets.staging import is_live
from traingate._errors import NotFoundError
from traingate._keys import SHORT_HASH, KeyRing
from traingate._store.db import Database, chunks

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
    "holdings",
    "item_key_bytes",
    "receipt_record_key",
    "record_pending",
    "recorded_build",
    "recorded_builds",
    "report_lineage",
    "settle_builds",
]

_BUILD_COLUMNS = (
    "build_id", "built_at", "purpose", "as_of", "policy_id", "policy_sha256", "engine",
    "format", "path", "manifest_sha256", "records", "messages",
)  # fmt: skip
_ROW_COLUMNS = (*_BUILD_COLUMNS, "lineage_path", "lineage_sha256", "watermark")


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
    lineage_path: str | None = None  # None: its items are in build_items (before migration 14)
    lineage_sha256: str | None = None
    # The highest event seq its snapshot saw (migration 17; None: older, or messages from a
    # lake): what an incremental build starting from it reads above (_datasets/incremental.py).
    watermark: int | None = None

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _ROW_COLUMNS)

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


def item_key_bytes(item_key: str) -> bytes:
    """What lineage keeps of an item key (64 hex characters): its first 16 bytes (migration
    9; the same prefix migration 7 keeps of event keys)."""
    return bytes.fromhex(item_key[: 2 * SHORT_HASH])


def record_pending(db: Database, *, build: BuildRow, scratch: Path) -> None:
    """Phase 1: commit the build's row (naming its lineage file), pending, with the build's
    locked scratch directory."""
    marks = ", ".join("?" * (len(_ROW_COLUMNS) + 1))
    with db.transaction():
        db.execute(
            f"INSERT INTO builds ({', '.join(_ROW_COLUMNS)}, pending_scratch) VALUES ({marks})",
            (*build.values(), str(scratch)),
        )


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
    """Delete a build's lineage: its row, its items, then its lineage file (a build that
    failed after phase 1). The row goes first: a crash in between leaves a file no row names,
    never a row naming no file."""
    with db.transaction():
        rows = db.execute("SELECT lineage_path FROM builds WHERE build_id = ?", (build_id,))
        db.execute("DELETE FROM build_items WHERE build_id = ?", (build_id,))
        db.execute("DELETE FROM builds WHERE build_id = ?", (build_id,))
    for (path,) in rows:
        if path is not None:
            remove_lineage(Path(str(path)))


def _stands(build: BuildRow) -> bool:
    """Whether the build's directory holds the manifest its row recorded, and its lineage (a
    file, or a directory's index and every file it names) the bytes its row recorded."""
    if file_sha256(Path(build.path) / "manifest.json") != build.manifest_sha256:
        return False
    return build.lineage_path is None or (
        lineage_digest(Path(build.lineage_path), build_id=build.build_id) == build.lineage_sha256
    )


@dataclass(frozen=True, slots=True)
class Settled:
    """What ``settle_builds`` did: builds completed, and builds whose rows it deleted."""

    completed: tuple[str, ...]
    deleted: tuple[str, ...]


def settle_builds(db: Database, *, on_complete: Callable[[BuildRow], None]) -> Settled:
    """Decide the pending rows of builds that died between phases 1 and 3 (running builds are
    left alone): complete those whose directory and lineage file stand (``on_complete``
    writes their audit entry), delete the rows and files of the others."""
    columns = ", ".join(_ROW_COLUMNS)
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


def _stored_items(
    db: Database, builds: Sequence[BuildRow], item_keys: Sequence[bytes]
) -> dict[str, list[StoredItem]]:
    """The items of builds recorded before migration 14, from ``build_items``: looked up build
    by build (``CROSS JOIN`` keeps builds the outer loop on SQLite), (build_id, item_key)
    being the prefix of its key."""
    found: dict[str, list[StoredItem]] = {}
    if not builds:
        return found
    for chunk in chunks(item_keys):
        clause, params = db.in_list("i.item_key", chunk)
        for build_id, item_key, record_id, kind, messages in db.execute(
            "SELECT b.build_id, i.item_key, i.record_id, i.kind, i.messages"
            " FROM builds b CROSS JOIN build_items i"
            f" WHERE i.build_id = b.build_id AND {clause}"
            " AND b.pending_scratch IS NULL AND b.lineage_path IS NULL",
            params,
        ):
            found.setdefault(str(build_id), []).append(
                (bytes(item_key), bytes(record_id), str(kind), int(messages))
            )
    for items in found.values():
        items.sort()
    return found


def _completed(db: Database, where: str, params: Sequence[Any]) -> list[BuildRow]:
    """The completed builds (``pending_scratch IS NULL``) matching ``where``."""
    columns = ", ".join(_ROW_COLUMNS)
    sql = f"SELECT {columns} FROM builds WHERE pending_scratch IS NULL {where}"
    return [BuildRow(*row) for row in db.execute(sql, params)]


def _manifest(path: str) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def recorded_builds(db: Database, *, limit: int = 100) -> list[dict[str, Any]]:
    """Completed builds lineage records, newest first, without manifests (the API's and the
    console's list of datasets)."""
    found = _completed(db, "ORDER BY built_at DESC, build_id LIMIT ?", (limit,))
    return [build.to_dict() for build in found]


def recorded_build(db: Database, build_id: str) -> dict[str, Any]:
    """A completed build with its manifest (None when its directory is gone), or
    NotFoundError."""
    found = _completed(db, "AND build_id = ?", (build_id,))
    if not found:
        raise NotFoundError(f"no build or build job {build_id!r}")
    return {
        **found[0].to_dict(),
        "status": "succeeded",
        "progress": {"messages_done": None, "messages_total": None, "fraction": 1.0},
        "manifest": _manifest(found[0].path),
    }


def holdings(
    db: Database, *, item_keys: Sequence[bytes]
) -> list[tuple[BuildRow, list[StoredItem]]]:
    """Every completed build holding one of the items (16-byte keys, ``item_key_bytes``),
    oldest first, with those of its items, in (item key, record id) order. Each build's
    lineage file is read by key (``lineage_file.find_items``); builds of before migration 14
    are read from ``build_items``."""
    builds = _completed(db, "ORDER BY built_at, build_id", ())
    keys = sorted(set(item_keys))
    stored = _stored_items(db, [b for b in builds if b.lineage_path is None], keys)
    held: list[tuple[BuildRow, list[StoredItem]]] = []
    for build in builds:
        if build.lineage_path is None:
            items = stored.get(build.build_id, [])
        else:
            path = Path(build.lineage_path)
            items = find_items(path, build_id=build.build_id, item_keys=keys) if keys else []
        if items:
            held.append((build, items))
    return held


def builds_holding(db: Database, *, item_key: str) -> list[LineageEntry]:
    """Every build that took the item, oldest first."""
    return [
        LineageEntry(
            build=build,
            record_ids=tuple(record_id.hex() for _, record_id, _, _ in items),
            messages=sum(messages for *_, messages in items),
        )
        for build, items in holdings(db, item_keys=[item_key_bytes(item_key)])
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
    from traingate._vault.vault import Receipt

    report_id = Receipt.parse(receipt).report_id
    return keys.sign(f"feedback-record\x00{report_id}".encode())
