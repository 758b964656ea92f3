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
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from traingate.build.records import RECORD_SCHEMA
from traingate.errors import BuildError

__all__ = [
    "FORMATS",
    "ROW_GROUP",
    "BackgroundWriter",
    "FileEntry",
    "Format",
    "PartWriter",
    "as_format",
    "fsync_path",
    "jsonl_line",
    "sha256_file",
]

Format = Literal["parquet", "jsonl"]  # = traingate.build.FORMATS
FORMATS: tuple[Format, ...] = ("parquet", "jsonl")
_CHUNK = 1 << 20
ROW_GROUP = 4_096  # records per Parquet row group, whatever the engine's batches


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One data file as the manifest lists it (``path`` relative to the dataset directory)."""

    path: str
    rows: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "sha256": self.sha256}


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


class PartWriter:
    """Writes part files into ``directory`` (``<dataset>/data``)."""

    def __init__(
        self,
        directory: Path,
        *,
        format: Format,
        rows_per_file: int = 250_000,
        schema: pa.Schema = RECORD_SCHEMA,
    ) -> None:
        if format not in FORMATS:
            raise BuildError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
        self.directory = directory
        self.format = format
        self.rows_per_file = rows_per_file
        self.schema = schema  # of the rows: the records, or a shape's (build/shapes.py)
        self._files: list[FileEntry] = []
        self._path: Path | None = None
        self._rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._text: IO[str] | None = None
        self._pending: list[pa.RecordBatch] = []  # records of the next row group
        self._pending_rows = 0

    def _open(self) -> None:
        name = f"part-{len(self._files):05d}.{self.format}"
        self._path = self.directory / name
        self._rows = 0
        if self.format == "parquet":
            self._parquet = pq.ParquetWriter(
                str(self._path), self.schema, compression="zstd", write_statistics=False
            )
        else:
            self._text = self._path.open("w", encoding="utf-8", newline="\n")

    def _close_part(self) -> None:
        if self._path is None:
            return
        self._flush(final=True)
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._text is not None:
            self._text.close()
            self._text = None
        fsync_path(self._path)
        self._files.append(
            FileEntry(
                path=f"{self.directory.name}/{self._path.name}",
                rows=self._rows,
                sha256=sha256_file(self._path),
            )
        )
        self._path = None

    def write(self, batch: pa.RecordBatch) -> None:
        """Append rows (``self.schema``), starting a new part when the current is full."""
        if batch.num_rows == 0:
            return
        if batch.schema != self.schema:
            batch = batch.cast(self.schema)
        offset = 0
        while offset < batch.num_rows:
            if self._path is None:
                self._open()
            take = min(batch.num_rows - offset, self.rows_per_file - self._rows)
            piece = batch.slice(offset, take)
            if self._parquet is not None:
                self._pending.append(piece)
                self._pending_rows += take
                self._flush(final=False)
            elif self._text is not None:
                self._text.writelines(jsonl_line(r) for r in piece.to_pylist())
            self._rows += take
            offset += take
            if self._rows >= self.rows_per_file:
                self._close_part()

    def _flush(self, *, final: bool) -> None:
        """Write the pending records as row groups of exactly ``ROW_GROUP`` (the last of a
        part: what is left)."""
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

    def close(self) -> list[FileEntry]:
        """Finish the last part (or write one empty part) and fsync the directory."""
        if self._path is None and not self._files:
            self._open()
        self._close_part()
        fsync_path(self.directory)
        return list(self._files)

    def abort(self) -> None:
        """Close open handles without finishing (the caller removes the directory)."""
        self._pending, self._pending_rows = [], 0
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._text is not None:
            self._text.close()
            self._text = None


class BackgroundWriter:
    """A ``PartWriter`` whose writes run on one worker thread, in order, so that encoding and
    compressing the parts (pyarrow releases the GIL) overlaps with the build deciding its next
    batch. The bytes are the same as ``PartWriter``'s. At most ``depth`` batches wait for the
    worker, so memory stays bounded; an error in the worker (any exception, an interrupt
    included) is raised by the next ``write`` or by ``close``."""

    def __init__(self, writer: PartWriter, *, depth: int = 2) -> None:
        self._writer = writer
        self._queue: queue.Queue[pa.RecordBatch | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name="traingate-part-writer")
        self._thread.start()

    def _work(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is not None or self._stopped:
                continue  # drain: the caller is failing or aborting
            try:
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
