"""An incremental build's records in full-build order: the base's, less those of the dirty
conversations, and the fresh ones merged in (``_datasets/incremental.py``).

Records carry no conversation id, and lineage keeps keyed hashes only, so a base record is
placed by its position in the base's parts (which are in full-build order: conversation id,
then basis precedence). A fresh conversation's records go right after the last base record
of the greatest conversation at or before it (in the store's conversation ids, sorted as
the build sorts them) that the base holds records of: its lineage key is computed and looked
up in the base's lineage, walking down from the fresh conversation until one is found, never
below the previous fresh conversation (whose place is then this one's too). So each
conversation id is hashed at most once, typically twice per fresh conversation. The base's
lineage also gives the kept records' lineage items, so nothing else is hashed.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from traingate._datasets.lineage import BuildRow, item_key_bytes
from traingate._datasets.lineage_file import lineage_digest, read_index
from traingate._datasets.records import RECORD_SCHEMA, LineageItem, conversation_item_key
from traingate._errors import BuildError

__all__ = ["BaseLineage", "Fresh", "base_lineage", "merged"]


def _refuse(build: BuildRow, why: str) -> BuildError:
    return BuildError(f"--since {build.build_id}: {why}")


@dataclass(frozen=True, slots=True)
class BaseLineage:
    """A base build's lineage of conversation records: record id -> (item key, messages),
    and item key -> its record ids."""

    by_record: Mapping[bytes, tuple[bytes, int]]
    by_item: Mapping[bytes, list[bytes]]


def base_lineage(build: BuildRow) -> BaseLineage:
    """The base's lineage (a file, or a directory of files), checked against its row's
    sha256."""
    if build.lineage_path is None:
        raise _refuse(build, "its lineage is in the store's build_items; build in full")
    path = Path(build.lineage_path)
    if lineage_digest(path, build_id=build.build_id) != build.lineage_sha256:
        raise _refuse(build, f"its lineage {path} is missing or not the one it recorded")
    paths = (
        [path / run.name for run in read_index(path, build_id=build.build_id)]
        if path.is_dir()
        else [path]
    )
    by_record: dict[bytes, tuple[bytes, int]] = {}
    by_item: dict[bytes, list[bytes]] = {}
    for file in paths:
        table = pq.read_table(file, columns=["item_key", "record_id", "kind", "messages"])
        conversation = pc.equal(table.column("kind").cast(pa.string()), pa.scalar("conversation"))
        table = table.filter(conversation)
        for key, record, n in zip(
            table.column("item_key").to_pylist(),
            table.column("record_id").to_pylist(),
            table.column("messages").to_pylist(),
            strict=True,
        ):
            by_record[bytes(record or b"")] = (bytes(key or b""), int(n or 0))
            by_item.setdefault(bytes(key or b""), []).append(bytes(record or b""))
    return BaseLineage(by_record=by_record, by_item=by_item)


def base_parts(
    build: BuildRow, files: Sequence[Mapping[str, Any]], *, columns: list[str] | None = None
) -> Iterator[pa.Table]:
    """The base's parts (their ``columns``; None: every record field), one at a time, each
    checked against its manifest's sha256 as it is read."""
    root = Path(build.path)
    for entry in files:
        path = root / str(entry["path"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _refuse(build, f"cannot read {path}: {exc.strerror}") from exc
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise _refuse(build, f"{path}: sha256 differs from its manifest")
        table = pq.read_table(pa.BufferReader(data), columns=columns)
        yield table if columns is not None else table.cast(RECORD_SCHEMA)


@dataclass(frozen=True, slots=True)
class Fresh:
    """The records decided afresh (``RECORD_SCHEMA``) in output order, each one's
    conversation id, and their lineage items."""

    records: pa.Table
    conversations: list[str]
    items: list[LineageItem]


def _anchors(
    fresh: Fresh,
    *,
    lineage: BaseLineage,
    conversations: Sequence[str],
    positions: Mapping[bytes, int],
    signing_key: bytes,
) -> list[int]:
    """For each fresh record, the position of the base record it follows (-1: first)."""
    found: dict[str, int] = {}
    floor, anchor = -1, -1  # the previous fresh conversation's index and place
    for conversation in dict.fromkeys(fresh.conversations):
        index = bisect.bisect_right(conversations, conversation) - 1
        place = None
        for j in range(index, floor, -1):
            key = item_key_bytes(conversation_item_key(signing_key, conversations[j]))
            records = lineage.by_item.get(key)
            if records:
                place = max(positions[r] for r in records)
                break
        anchor = anchor if place is None else place
        floor = max(floor, index)
        found[conversation] = anchor
    return [found[c] for c in fresh.conversations]


def merged(
    build: BuildRow,
    files: Sequence[Mapping[str, Any]],
    *,
    fresh: Fresh,
    dirty: Sequence[str],
    conversations: Sequence[str],
    signing_key: bytes,
) -> Iterator[tuple[pa.Table, list[LineageItem]]]:
    """The records of the build (the base's outside ``dirty``, and ``fresh``) in output
    order, in batches, with their lineage items. ``conversations``: every conversation id of
    the store, sorted by UTF-8 bytes."""
    lineage = base_lineage(build)
    # Two passes over the parts: their record ids (where each record is), then the records.
    ids = [
        bytes.fromhex(str(record))
        for part in base_parts(build, files, columns=["record_id"])
        for record in part.column("record_id").to_pylist()
    ]
    positions = {record: i for i, record in enumerate(ids)}
    gone = {
        item_key_bytes(conversation_item_key(signing_key, conversation)) for conversation in dirty
    }
    anchors = _anchors(
        fresh,
        lineage=lineage,
        conversations=conversations,
        positions=positions,
        signing_key=signing_key,
    )
    at, start = 0, 0  # the next fresh record; the position of the part's first record
    for part in base_parts(build, files):
        end = start + part.num_rows
        items: list[LineageItem] = []
        order: list[tuple[int, int, int]] = []  # (base position, 0, 0) or (after, 1, fresh)
        for i, record in enumerate(ids[start:end]):
            stored = lineage.by_record.get(record)
            if stored is None:  # a feedback record: made again
                continue
            if stored[0] in gone:
                continue
            order.append((start + i, 0, 0))
            items.append(
                LineageItem(
                    item_key=stored[0].hex(),
                    kind="conversation",
                    record_id=record.hex(),
                    messages=stored[1],
                )
            )
        upto = bisect.bisect_left(anchors, end, lo=at)
        order += [(anchors[k], 1, k) for k in range(at, upto)]
        items += fresh.items[at:upto]
        at = upto
        order.sort()
        yield _runs(part, fresh.records, start, order), items
        start = end
    if at < len(anchors):
        yield fresh.records.slice(at), fresh.items[at:]


def _runs(
    part: pa.Table, fresh: pa.Table, start: int, order: list[tuple[int, int, int]]
) -> pa.Table:
    """The rows ``order`` names (base rows by position from ``start``, fresh rows by index),
    as slices of runs of consecutive rows (no copy of the records' nested lists)."""
    pieces: list[pa.Table] = []
    run: tuple[pa.Table, int, int] | None = None  # table, first row, rows
    for position, fresh_row, index in order:
        table, row = (fresh, index) if fresh_row else (part, position - start)
        if run is not None and run[0] is table and run[1] + run[2] == row:
            run = (table, run[1], run[2] + 1)
            continue
        if run is not None:
            pieces.append(run[0].slice(run[1], run[2]))
        run = (table, row, 1)
    if run is not None:
        pieces.append(run[0].slice(run[1], run[2]))
    return pa.concat_tables(pieces) if pieces else part.slice(0, 0)
