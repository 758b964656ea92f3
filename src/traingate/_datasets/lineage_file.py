"""A build's lineage as one Parquet file, sorted by item key, beside its dataset.

    PARENT/DIR/                                  the dataset (SPEC §3/§4: nothing else in it)
    PARENT/.traingate-lineage/BUILD_ID.parquet   its lineage

Columns: ``item_key`` (16 bytes: the start of the item's keyed hash, ``item_key_bytes``),
``record_id`` (32 bytes), ``kind`` (conversation or feedback), ``messages``; rows in (item_key,
record_id) order, row groups of ``ROW_GROUP`` rows (larger beyond ``MAX_GROUPS`` of them) with
min/max statistics of ``item_key``, and in the footer's metadata the build's id and an index of
each row group's first and last item key. A lookup reads the footer, bisects the row groups'
key ranges and reads the one or two row groups that can hold the key: its cost does not grow
with the build. The file never goes inside the dataset: item keys tie together the records of
one conversation (one a basis), which the dataset's records alone do not.

While a build runs, its items are spooled to scratch (``LineageSpool``: memory bounded by a
run); at the end they are read back range of keys by range of keys, each range sorted in
memory, and written as the file (``write_lineage``).

A build whose engine writes lineage in parallel (the Spark engine's tasks) has a directory
instead, ``PARENT/.traingate-lineage/BUILD_ID/``: sorted files of the same format, each a range
of item keys written by one task (``write_run``), maybe one more written by the builder
(``write_directory``: the items it made itself, e.g. feedback), and ``index.json`` naming each
file with its first and last key, rows and sha256. Ranges may overlap: a lookup reads every file
whose [first, last] holds a key. The build's ``lineage_sha256`` is the index's sha256.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import io
import json
import os
import shutil
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from traingate._datasets.records import LineageItem
from traingate._errors import StoreError
from traingate._keys import SHORT_HASH

__all__ = [
    "INDEX",
    "LINEAGE_DIR",
    "MAX_GROUPS",
    "ROW_GROUP",
    "SCHEMA",
    "LineageRun",
    "LineageSpool",
    "StoredItem",
    "file_sha256",
    "find_items",
    "lineage_digest",
    "lineage_directory",
    "lineage_path",
    "place_lineage",
    "read_index",
    "remove_lineage",
    "write_directory",
    "write_lineage",
    "write_run",
]

LINEAGE_DIR = ".traingate-lineage"
ROW_GROUP = 16_384  # rows per row group: what one lookup reads (about 0.9 MB)
MAX_GROUPS = 2_048  # beyond ROW_GROUP x MAX_GROUPS items, row groups grow instead: the footer
# (which every lookup parses) stays small; at 580M items a row group is ~283,000 rows (15 MB)
_RUN = 200_000  # items spooled in memory before they go to the scratch file (about 11 MB)
_GROUP = 262_144  # items sorted in memory at once when the file is written (about 14 MB)
_PREFIX_BITS = 12  # the spool's runs are cut by the first 12 bits of the item key
_KINDS = ("conversation", "feedback")
_RECORD = 32
_WIDTH = SHORT_HASH + _RECORD + 1 + 4  # one spooled item: item key, record id, kind, messages
_BUILD_KEY = b"traingate.build_id"
_RANGES_KEY = "traingate.row_group_keys"  # hex: each row group's first and last item key
SCHEMA = pa.schema(
    [
        pa.field("item_key", pa.binary(SHORT_HASH), nullable=False),
        pa.field("record_id", pa.binary(_RECORD), nullable=False),
        pa.field("kind", pa.dictionary(pa.int8(), pa.string()), nullable=False),
        pa.field("messages", pa.int32(), nullable=False),
    ]
)

StoredItem = tuple[bytes, bytes, str, int]  # item key (16 bytes), record id, kind, messages
INDEX = "index.json"  # a lineage directory's list of its files
_DRIVER_RUN = "builder.parquet"  # the file of the items the builder made itself


@dataclass(frozen=True, slots=True)
class LineageRun:
    """One sorted file of a lineage directory: its name, first and last item key, rows and
    sha256."""

    name: str
    first: bytes
    last: bytes
    rows: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "first": self.first.hex(),
            "last": self.last.hex(),
            "rows": self.rows,
            "sha256": self.sha256,
        }


def lineage_path(target: Path, build_id: str) -> Path:
    """Where the lineage of the build ``build_id`` into the dataset ``target`` goes."""
    return target.parent / LINEAGE_DIR / f"{build_id}.parquet"


def lineage_directory(target: Path, build_id: str) -> Path:
    """Where the lineage of ``build_id`` goes when its engine wrote it as several files."""
    return target.parent / LINEAGE_DIR / build_id


class LineageSpool:
    """Lineage items spooled to a scratch file as fixed-width binary records. Every
    ``run_items`` items, the run held in memory is ordered by the first bits of its item keys
    and appended to the file, with the offset of each prefix; ``batches`` reads the file back
    one range of prefixes at a time (a slice of every run), sorts it and yields it, so memory
    holds a run while spooling and a range while reading, however many items."""

    def __init__(self, path: Path, *, run_items: int = _RUN, group_items: int = _GROUP) -> None:
        self.path = path
        self._handle = path.open("wb")
        self._run_items = run_items
        self._group_items = group_items
        self._pending = bytearray()
        self._in_run = 0
        self._runs: list[tuple[int, np.ndarray[Any, Any]]] = []  # (start, offsets by prefix)
        self.count = 0

    def add(self, items: Iterable[LineageItem]) -> None:
        pending = self._pending
        codes = {kind: i << 32 for i, kind in enumerate(_KINDS)}
        added = 0
        for item in items:
            pending += bytes.fromhex(item.item_key[: 2 * SHORT_HASH] + item.record_id)
            pending += (codes[item.kind] | item.messages).to_bytes(5, "big")
            added += 1
        self.count += added
        self._in_run += added
        if self._in_run >= self._run_items:
            self._flush()

    def _flush(self) -> None:
        if not self._in_run:
            return
        rows = np.frombuffer(self._pending, np.uint8).reshape(self._in_run, _WIDTH)
        prefix = _prefixes(rows)
        start = self._handle.tell()
        self._handle.write(rows[np.argsort(prefix, kind="stable")].tobytes())
        counts = np.bincount(prefix, minlength=1 << _PREFIX_BITS)
        self._runs.append((start, np.concatenate(([0], np.cumsum(counts)))))
        del rows, prefix  # views of the buffer, which is replaced
        self._pending = bytearray()
        self._in_run = 0

    def close(self) -> None:
        if not self._handle.closed:
            self._flush()
            self._handle.close()

    def _ranges(self) -> Iterator[tuple[int, int]]:
        """Ranges of prefixes [low, high) holding about ``group_items`` items each."""
        totals = sum(np.diff(offsets) for _, offsets in self._runs)
        low, held = 0, 0
        for prefix, n in enumerate(np.asarray(totals).tolist()):
            held += n
            if held >= self._group_items:
                yield low, prefix + 1
                low, held = prefix + 1, 0
        if held:
            yield low, 1 << _PREFIX_BITS

    def sorted_rows(self) -> Iterator[np.ndarray[Any, Any]]:
        """Every item as a row of ``_WIDTH`` bytes, in (item key, record id) order, a range of
        keys at a time."""
        self.close()
        if not self._runs:
            return
        with self.path.open("rb") as handle:
            for low, high in self._ranges():
                parts = []
                for start, offsets in self._runs:
                    first, end = int(offsets[low]), int(offsets[high])
                    if end > first:
                        handle.seek(start + first * _WIDTH)
                        parts.append(handle.read((end - first) * _WIDTH))
                data = b"".join(parts)
                # byte-wise order of whole rows: item key, then record id (unique in a build)
                order = np.argsort(np.frombuffer(data, dtype=f"S{_WIDTH}"), kind="stable")
                yield np.frombuffer(data, np.uint8).reshape(-1, _WIDTH)[order]

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every item, sorted, as record batches of the lineage file's schema."""
        for rows in self.sorted_rows():
            yield _batch(rows)


def _prefixes(rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The first ``_PREFIX_BITS`` bits of each row's item key."""
    high: np.ndarray[Any, Any] = rows[:, 0].astype(np.int64) << 8 | rows[:, 1]
    return high >> (16 - _PREFIX_BITS)


def _fixed(rows: np.ndarray[Any, Any], start: int, width: int) -> pa.Array[Any]:
    column = np.ascontiguousarray(rows[:, start : start + width])
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(rows), [None, pa.py_buffer(column.data)]
    )


def _numeric(values: np.ndarray[Any, Any], kind: pa.DataType) -> pa.Array[Any]:
    """A numpy vector as an Arrow array of its type, sharing its buffer (no pandas involved)."""
    data = np.ascontiguousarray(values)
    return pa.Array.from_buffers(kind, len(data), [None, pa.py_buffer(data.data)])


def _batch(rows: np.ndarray[Any, Any]) -> pa.RecordBatch:
    record_end = SHORT_HASH + _RECORD
    kinds = _numeric(rows[:, record_end].astype(np.int8), pa.int8())
    messages = np.ascontiguousarray(rows[:, record_end + 1 :]).view(">u4").ravel()
    return pa.RecordBatch.from_arrays(
        [
            _fixed(rows, 0, SHORT_HASH),
            _fixed(rows, SHORT_HASH, _RECORD),
            pa.DictionaryArray.from_arrays(kinds, pa.array(_KINDS)),
            _numeric(messages.astype(np.int32), pa.int32()),
        ],
        schema=SCHEMA,
    )


class _Hashing(io.RawIOBase):
    """A file being written, hashed on the way; closing it leaves the file open."""

    def __init__(self, handle: BinaryIO) -> None:
        super().__init__()
        self._handle = handle
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.digest.update(data)
        return self._handle.write(data)

    def flush(self) -> None:
        self._handle.flush()

    def tell(self) -> int:
        return self._handle.tell()


def _write_groups(
    writer: pq.ParquetWriter, table: pa.Table, size: int, bounds: list[bytes]
) -> None:
    """Write ``table`` as row groups of ``size`` rows (the last may be shorter), adding each
    one's first and last item key to ``bounds``."""
    keys = table["item_key"]
    for start in range(0, table.num_rows, size):
        end = min(start + size, table.num_rows)
        bounds += [cast(bytes, keys[start].as_py()), cast(bytes, keys[end - 1].as_py())]
    writer.write_table(table, row_group_size=size)


class Stopped(Exception):
    """``write_lineage`` was asked to stop (the build failed meanwhile)."""


def _write_sorted(
    batches: Iterable[pa.RecordBatch],
    *,
    count: int,
    path: Path,
    build_id: str,
    stop: threading.Event | None = None,
) -> tuple[str, list[bytes]]:
    """Write ``count`` sorted items as a lineage file of build ``build_id``, in row groups of
    ``ROW_GROUP`` rows (more when there would be over ``MAX_GROUPS``); fsync it; return its
    sha256 and each row group's first and last key. Raises ``Stopped`` when ``stop`` is set
    meanwhile."""
    schema = SCHEMA.with_metadata({_BUILD_KEY: build_id.encode()})
    bounds: list[bytes] = []  # each row group's first and last item key
    with path.open("wb") as handle:
        sink = _Hashing(handle)
        writer = pq.ParquetWriter(
            pa.PythonFile(sink, mode="w"),
            schema,
            compression="none",  # keyed hashes do not compress
            use_dictionary=["kind"],  # type: ignore[arg-type]  # pyarrow takes column names
            write_statistics=["item_key"],
        )
        size = max(ROW_GROUP, -(-count // MAX_GROUPS))
        try:
            held: list[pa.RecordBatch] = []
            rows = 0
            for batch in batches:
                if stop is not None and stop.is_set():
                    raise Stopped
                held.append(batch)
                rows += batch.num_rows
                full = rows - rows % size
                if full:
                    table = pa.Table.from_batches(held, schema=SCHEMA)
                    _write_groups(writer, table.slice(0, full), size, bounds)
                    held = table.slice(full).to_batches()
                    rows -= full
            if rows:
                _write_groups(writer, pa.Table.from_batches(held, schema=SCHEMA), size, bounds)
            writer.add_key_value_metadata({_RANGES_KEY: b"".join(bounds).hex()})
        finally:
            writer.close()
        handle.flush()
        os.fsync(handle.fileno())
    return sink.digest.hexdigest(), bounds


def write_lineage(
    spool: LineageSpool, *, path: Path, build_id: str, stop: threading.Event | None = None
) -> str:
    """Write the spooled items as the lineage file ``path`` of build ``build_id`` (sorted, in
    row groups, fsynced); return its sha256. Raises ``Stopped`` when ``stop`` is set
    meanwhile."""
    sha256, _ = _write_sorted(
        spool.batches(), count=spool.count, path=path, build_id=build_id, stop=stop
    )
    return sha256


def write_run(table: pa.Table, *, path: Path, build_id: str) -> LineageRun | None:
    """Write a table of items (``SCHEMA``'s columns, any order) as one sorted file of a
    lineage directory (what a Spark task does with its range of keys); None when it holds
    no item."""
    if table.num_rows == 0:
        return None
    ordered = (
        table.select(SCHEMA.names)
        .cast(SCHEMA)
        .sort_by([("item_key", "ascending"), ("record_id", "ascending")])
    )
    sha256, bounds = _write_sorted(
        ordered.to_batches(), count=ordered.num_rows, path=path, build_id=build_id
    )
    return LineageRun(
        name=path.name, first=bounds[0], last=bounds[-1], rows=ordered.num_rows, sha256=sha256
    )


def write_directory(
    spool: LineageSpool,
    *,
    directory: Path,
    build_id: str,
    runs: Sequence[LineageRun],
    stop: threading.Event | None = None,
) -> str:
    """Finish a lineage directory whose ``runs`` an engine wrote: the spooled items (those
    the builder made) as one more file, then ``index.json`` naming every file; fsync both and
    the directory; return the index's sha256 (the build's ``lineage_sha256``)."""
    directory.mkdir(exist_ok=True)
    every = list(runs)
    if spool.count:
        path = directory / _DRIVER_RUN
        sha256, bounds = _write_sorted(
            spool.batches(), count=spool.count, path=path, build_id=build_id, stop=stop
        )
        every.append(LineageRun(_DRIVER_RUN, bounds[0], bounds[-1], spool.count, sha256))
    every.sort(key=lambda run: (run.first, run.name))
    data = json.dumps(
        {"build_id": build_id, "files": [run.to_dict() for run in every]}, indent=1
    ).encode()
    with (directory / INDEX).open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_directory(directory)
    return hashlib.sha256(data).hexdigest()


def read_index(directory: Path, *, build_id: str) -> tuple[LineageRun, ...]:
    """The files of the lineage directory of build ``build_id``, from its index. Raises
    StoreError when the index is missing, damaged or another build's."""
    where = f"the lineage of {build_id} ({directory / INDEX})"
    try:
        data = json.loads((directory / INDEX).read_bytes())
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {where}: {exc}") from exc
    if not isinstance(data, dict) or data.get("build_id") != build_id:
        raise StoreError(f"{directory / INDEX} is not the lineage index of {build_id}")
    try:
        runs = tuple(
            LineageRun(
                name=str(entry["name"]),
                first=bytes.fromhex(entry["first"]),
                last=bytes.fromhex(entry["last"]),
                rows=int(entry["rows"]),
                sha256=str(entry["sha256"]),
            )
            for entry in data["files"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{where} is damaged: {exc!r}") from exc
    for run in runs:
        if Path(run.name).name != run.name or run.name.startswith(".") or run.name == INDEX:
            raise StoreError(f"{where} names a file outside it: {run.name!r}")
    return runs


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def place_lineage(source: Path, destination: Path) -> None:
    """Rename a written lineage file (in the build's scratch, on the same file system) to its
    place, creating the lineage directory when needed, and fsync the directories."""
    folder = destination.parent
    for attempt in range(3):  # another build's forget_build may remove the empty directory
        created = not folder.is_dir()
        folder.mkdir(exist_ok=True)
        if created:
            _fsync_directory(folder.parent)
        try:
            os.rename(source, destination)
            break
        except FileNotFoundError:
            if attempt == 2 or not source.exists():
                raise
    _fsync_directory(folder)


def remove_lineage(path: Path) -> None:
    """Delete a build's lineage (its file, or its directory of files), and the lineage
    directory when that leaves it empty."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
        path.unlink()
    with contextlib.suppress(OSError):  # not empty: other builds' lineage
        path.parent.rmdir()


def _key_ranges(metadata: pq.FileMetaData) -> tuple[list[bytes], list[bytes]] | None:
    """The first and the last item key of each row group, from the file's index (what its
    ``item_key`` statistics say, without a Python object per row group and column)."""
    index = (metadata.metadata or {}).get(_RANGES_KEY.encode())
    if index is None:
        return None
    data = bytes.fromhex(index.decode())
    width = 2 * SHORT_HASH
    if len(data) != width * metadata.num_row_groups:
        return None
    return (
        [data[i : i + SHORT_HASH] for i in range(0, len(data), width)],
        [data[i + SHORT_HASH : i + width] for i in range(0, len(data), width)],
    )


def file_sha256(path: Path) -> str | None:
    """A file's sha256; None when it cannot be read."""
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def lineage_digest(path: Path, *, build_id: str) -> str | None:
    """The sha256 a build's row records of its lineage: of the file; of a directory, of its
    index, once every file the index names has the sha256 it lists (None otherwise, or when
    anything is missing or damaged). Reads every byte: for settling, not for lookups."""
    if not path.is_dir():
        return file_sha256(path)
    try:
        runs = read_index(path, build_id=build_id)
    except StoreError:
        return None
    if any(file_sha256(path / run.name) != run.sha256 for run in runs):
        return None
    return file_sha256(path / INDEX)


def find_items(path: Path, *, build_id: str, item_keys: Collection[bytes]) -> list[StoredItem]:
    """The items of ``item_keys`` (16-byte keys) that the lineage of build ``build_id`` holds
    (a file, or a directory of files: ``read_index``), in (item key, record id) order: only
    the files and row groups whose key range holds one of the keys are read. Raises
    StoreError when the lineage is missing, damaged or not that build's."""
    keys = sorted(set(item_keys))
    if not path.is_dir():
        return _find_in_file(path, build_id=build_id, keys=keys)
    found: list[StoredItem] = []
    for run in read_index(path, build_id=build_id):
        wanted = [key for key in keys if run.first <= key <= run.last]
        if wanted:
            found += _find_in_file(path / run.name, build_id=build_id, keys=wanted)
    found.sort()
    return found


def _find_in_file(path: Path, *, build_id: str, keys: list[bytes]) -> list[StoredItem]:
    """``find_items`` in one sorted file (``keys`` sorted and distinct)."""
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"cannot read the lineage of {build_id} ({path}): {exc}") from exc
    with parquet:
        metadata = parquet.metadata
        named = (metadata.metadata or {}).get(_BUILD_KEY)
        if named != build_id.encode():
            raise StoreError(f"{path} is not the lineage of {build_id}")
        ranges = _key_ranges(metadata)
        if ranges is None:
            raise StoreError(f"{path} is not the lineage of {build_id}: it has no key index")
        lows, highs = ranges
        groups: set[int] = set()
        for key in keys:
            index = bisect.bisect_left(highs, key)
            while index < len(lows) and lows[index] <= key:
                groups.add(index)
                index += 1
        if not groups:
            return []
        try:
            table = parquet.read_row_groups(sorted(groups), use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"the lineage of {build_id} ({path}) is damaged: {exc}") from exc
    found = table.filter(
        pc.is_in(table["item_key"], value_set=pa.array(keys, pa.binary(SHORT_HASH)))
    )
    return list(
        zip(
            cast(list[bytes], found["item_key"].to_pylist()),
            cast(list[bytes], found["record_id"].to_pylist()),
            cast(list[str], found["kind"].to_pylist()),
            cast(list[int], found["messages"].to_pylist()),
            strict=True,
        )
    )
