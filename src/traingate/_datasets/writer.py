"""Write record batches into ``data/part-NNNNN.parquet`` (or ``.jsonl``) files, durably.

Each part holds up to ``rows_per_file`` records (one part at least, empty when nothing is
eligible, so a reader always finds the schema). Closing a part fsyncs it and hashes it; the
directory is fsynced at the end. Bytes are deterministic: the same records give the same
files, however they were batched (Parquet row groups hold ``ROW_GROUP`` records each, so every
engine's output is byte for byte the same).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from traingate._core.manifest import FileEntry
from traingate._datasets import FORMATS, Format
from traingate._datasets.records import RECORD_SCHEMA
from traingate._errors import BuildError

__all__ = [
    "FORMATS",
    "ROWS_PER_FILE",
    "ROW_GROUP",
    "BackgroundWriter",
    "FileEntry",
    "Format",
    "PartFile",
    "PartWriter",
    "Piece",
    "as_format",
    "default_write_threads",
    "fsync_path",
    "jsonl_line",
    "part_name",
    "part_pieces",
    "sha256_file",
    "write_part",
]

_CHUNK = 1 << 20
ROW_GROUP = 4_096  # records per Parquet row group, whatever the engine's batches
# Rows a part, by default: small enough that a part is a worker's work (a Spark task writes
# the parts inside its rows, the builder at most the last one), ~20 MB of zstd Parquet.
ROWS_PER_FILE = 4 * ROW_GROUP


def as_format(text: str) -> Format:
    """``text`` as a record format, or BuildError."""
    for known in FORMATS:
        if text == known:
            return known
    raise BuildError(f"unknown format {text!r}; expected one of {', '.join(FORMATS)}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (so a rename or a new entry in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def jsonl_line(record: dict[str, Any]) -> str:
    """One record as a JSON Lines line: fields in schema order, UTF-8 kept, no spaces."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def part_name(index: int, format: Format) -> str:
    """The file name of part ``index`` (its position in the dataset, from 0)."""
    return f"part-{index:05d}.{format}"


class PartFile:
    """One part file, written as its rows come (``self.schema``): Parquet row groups of
    exactly ``ROW_GROUP`` rows (the last: what is left), or JSON Lines. ``close`` fsyncs and
    hashes it. Every part of a build is written by this class, wherever it is written (the
    builder's writer threads, a Spark task), so the bytes depend on the rows alone."""

    def __init__(self, path: Path, *, format: Format, schema: pa.Schema) -> None:
        self.path = path
        self.format = format
        self.schema = schema
        self.rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._text: IO[str] | None = None
        self._pending: list[pa.RecordBatch] = []  # rows of the next row group
        self._pending_rows = 0
        if format == "parquet":
            self._parquet = pq.ParquetWriter(
                str(path), schema, compression="zstd", write_statistics=False
            )
        else:
            self._text = path.open("w", encoding="utf-8", newline="\n")

    def append(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if batch.schema != self.schema:
            batch = batch.cast(self.schema)
        if self._parquet is not None:
            self._pending.append(batch)
            self._pending_rows += batch.num_rows
            self._flush(final=False)
        elif self._text is not None:
            self._text.writelines(jsonl_line(r) for r in batch.to_pylist())
        self.rows += batch.num_rows

    def _flush(self, *, final: bool) -> None:
        if self._parquet is None or not self._pending_rows:
            return
        if self._pending_rows < ROW_GROUP and not final:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        whole = table.num_rows if final else table.num_rows - table.num_rows % ROW_GROUP
        for start in range(0, whole, ROW_GROUP):
            group = table.slice(start, min(ROW_GROUP, whole - start)).combine_chunks()
            self._parquet.write_table(group, row_group_size=ROW_GROUP)
        rest = table.slice(whole)
        self._pending = rest.to_batches()
        self._pending_rows = rest.num_rows

    def close(self) -> FileEntry:
        """Finish the file, fsync it, and return its entry (path relative to the dataset)."""
        self._flush(final=True)
        self.abort()
        fsync_path(self.path)
        return FileEntry(
            path=f"{self.path.parent.name}/{self.path.name}",
            rows=self.rows,
            sha256=sha256_file(self.path),
        )

    def abort(self) -> None:
        """Close the handles without finishing (the caller removes the file)."""
        self._pending, self._pending_rows = [], 0
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._text is not None:
            self._text.close()
            self._text = None


def write_part(
    path: Path, batches: Iterable[pa.RecordBatch], *, format: Format, schema: pa.Schema
) -> FileEntry:
    """Write one whole part from its rows, in order (``PartFile``)."""
    part = PartFile(path, format=format, schema=schema)
    try:
        for batch in batches:
            part.append(batch)
    except BaseException:
        part.abort()
        raise
    return part.close()


@dataclass(frozen=True, slots=True)
class Piece:
    """Rows ``begin``..``end`` of a range of rows that belong to part ``part``; ``whole``
    when they are all of that part's rows."""

    part: int
    begin: int
    end: int
    whole: bool


def part_pieces(*, start: int, count: int, rows_per_file: int) -> list[Piece]:
    """The pieces of the rows ``start``..``start + count`` of a dataset cut into parts of
    ``rows_per_file``: part ``p`` holds the rows ``p * rows_per_file`` up to the next
    multiple. Where a worker's rows start is a prefix sum of the counts before it, so every
    worker knows its parts' names and boundaries, and the same rows give the same parts however
    they were spread. A piece is ``whole`` when it holds all ``rows_per_file`` rows of its
    part."""
    pieces = []
    row = start
    while row < start + count:
        part = row // rows_per_file
        first = part * rows_per_file
        last = min(first + rows_per_file, start + count)
        whole = row == first and last == first + rows_per_file
        pieces.append(Piece(part=part, begin=row - start, end=last - start, whole=whole))
        row = last
    return pieces


def default_write_threads() -> int:
    """Threads writing parts when none is said: one per core, at most ``_MAX_THREADS`` (each
    holds a whole part's rows while it writes them)."""
    return max(1, min(os.cpu_count() or 1, _MAX_THREADS))


_MAX_THREADS = 4


class PartWriter:
    """Writes part files into ``directory`` (``<dataset>/data``), ``rows_per_file`` rows
    each, in order; parts an engine wrote already (``adopt``) come first.

    With ``threads`` = 1 the rows are appended to the open part as they come. With more, a
    part's rows are gathered until it is full and the whole part is then written by one of
    ``threads`` worker threads (``write_part``; Parquet encoding, compression, hashing and
    fsync release the GIL), while the next part's rows are gathered: at most ``threads``
    parts are being written at once, so memory holds at most ``threads + 1`` parts' rows. The
    names, boundaries and bytes of the parts are the same for any ``threads``."""

    def __init__(
        self,
        directory: Path,
        *,
        format: Format,
        rows_per_file: int = ROWS_PER_FILE,
        schema: pa.Schema = RECORD_SCHEMA,
        threads: int = 1,
    ) -> None:
        if format not in FORMATS:
            raise BuildError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
        if threads < 1:
            raise BuildError(f"threads writing parts must be at least 1, not {threads}")
        self.directory = directory
        self.format = format
        self.rows_per_file = rows_per_file
        self.schema = schema  # of the rows: the records, or a shape's (_datasets/shapes.py)
        self.threads = threads
        # Parts in order: finished, or being written by the pool (``threads`` > 1).
        self._files: list[FileEntry | Future[FileEntry]] = []
        self._part: PartFile | None = None
        self._gathered: list[pa.RecordBatch] = []  # the next part's rows (``threads`` > 1)
        self._gathered_rows = 0
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="traingate-part")
            if threads > 1
            else None
        )

    def adopt(self, files: Iterable[FileEntry]) -> None:
        """Count parts written elsewhere (whole, in order, named by ``part_name``) as the
        next ones: only between parts, before any row of the next is written here."""
        for entry in files:
            if self._part is not None or self._gathered_rows or entry.rows != self.rows_per_file:
                raise BuildError(f"part {entry.path} cannot be adopted here")
            expected = f"{self.directory.name}/{part_name(len(self._files), self.format)}"
            if entry.path != expected:
                raise BuildError(f"part {entry.path} is out of order (expected {expected})")
            self._files.append(entry)

    def _next_path(self) -> Path:
        return self.directory / part_name(len(self._files), self.format)

    def _open(self) -> PartFile:
        self._part = PartFile(self._next_path(), format=self.format, schema=self.schema)
        return self._part

    def _close_part(self) -> None:
        if self._part is not None:
            self._files.append(self._part.close())
            self._part = None

    def _submit(self, pool: ThreadPoolExecutor) -> None:
        """The gathered rows, as the next part, to a worker thread; first, while ``threads``
        parts are being written, wait for the oldest (its error, if any, is raised here)."""
        running = [i for i, f in enumerate(self._files) if isinstance(f, Future)]
        for index in running[: max(0, len(running) - self.threads + 1)]:
            self._files[index] = _result(self._files[index])
        batches, self._gathered, self._gathered_rows = self._gathered, [], 0
        self._files.append(
            pool.submit(
                write_part, self._next_path(), batches, format=self.format, schema=self.schema
            )
        )

    def write(self, batch: pa.RecordBatch) -> None:
        """Append rows (``self.schema``), starting a new part when the current is full."""
        offset = 0
        while offset < batch.num_rows:
            if self._pool is not None:
                take = min(batch.num_rows - offset, self.rows_per_file - self._gathered_rows)
                self._gathered.append(batch.slice(offset, take))
                self._gathered_rows += take
                offset += take
                if self._gathered_rows >= self.rows_per_file:
                    self._submit(self._pool)
                continue
            part = self._part or self._open()
            take = min(batch.num_rows - offset, self.rows_per_file - part.rows)
            part.append(batch.slice(offset, take))
            offset += take
            if part.rows >= self.rows_per_file:
                self._close_part()

    def close(self) -> list[FileEntry]:
        """Finish the last part (or write one empty part), wait for the parts being written,
        and fsync the directory."""
        if self._pool is not None:
            if self._gathered_rows or not self._files:
                self._submit(self._pool)
            files = [_result(f) for f in self._files]
            self._files = list(files)
            self._pool.shutdown()
        else:
            if self._part is None and not self._files:
                self._open()
            self._close_part()
            files = [f for f in self._files if isinstance(f, FileEntry)]
        fsync_path(self.directory)
        return files

    def abort(self) -> None:
        """Close open handles without finishing, and wait for the parts being written (the
        caller removes the directory)."""
        if self._part is not None:
            self._part.abort()
            self._part = None
        self._gathered, self._gathered_rows = [], 0
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _result(part: FileEntry | Future[FileEntry]) -> FileEntry:
    """A part's entry, once written (an error writing it is raised)."""
    return part.result() if isinstance(part, Future) else part


class BackgroundWriter:
    """A ``PartWriter`` whose writes run on one worker thread, in order, so that encoding and
    compressing the parts (pyarrow releases the GIL) overlaps with the build deciding its next
    batch. The bytes are the same as ``PartWriter``'s. At most ``depth`` batches wait for the
    worker, so memory stays bounded; an error in the worker (any exception, an interrupt
    included) is raised by the next ``write`` or by ``close``."""

    def __init__(self, writer: PartWriter, *, depth: int = 2) -> None:
        self._writer = writer
        self._queue: queue.Queue[pa.RecordBatch | tuple[FileEntry, ...] | None] = queue.Queue(
            maxsize=depth
        )
        self._error: BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name="traingate-part-writer")
        self._thread.start()

    def _work(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is not None or self._stopped:
                continue  # drain: the caller is failing or aborting
            try:
                if isinstance(batch, tuple):
                    self._writer.adopt(batch)
                else:
                    self._writer.write(batch)
            except BaseException as exc:  # handed to the caller's thread
                self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def write(self, batch: pa.RecordBatch) -> None:
        """Queue records (``RECORD_SCHEMA``) for the worker."""
        self._raise()
        if batch.num_rows:
            self._queue.put(batch)

    def adopt(self, files: Iterable[FileEntry]) -> None:
        """Queue ``PartWriter.adopt`` of parts written elsewhere, in order with the rows."""
        self._raise()
        entries = tuple(files)
        if entries:
            self._queue.put(entries)

    def _join(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def close(self) -> list[FileEntry]:
        """Wait for the worker, then finish the parts as ``PartWriter.close`` does."""
        self._join()
        self._raise()
        return self._writer.close()

    def abort(self) -> None:
        """Stop the worker (queued batches are dropped) and close open handles."""
        self._stopped = True
        self._join()
        self._writer.abort()
