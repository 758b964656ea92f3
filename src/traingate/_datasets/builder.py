"""A dataset build, start to finish: engine → records → part files → manifest → lineage.

    DIR/manifest.json
    DIR/data/part-00000.parquet   (or .jsonl)

Everything is written into a hidden sibling ``.DIR.tmp-*`` and fsynced; the engine's scratch
(DuckDB's database and spill files, the lineage spool and file) lives in another sibling
``.DIR.work-*`` on the same file system. The build's lineage is recorded in two phases around
the rename of the staging directory to DIR (``_datasets/lineage.py``): its row is committed
pending, its lineage renamed to ``.traingate-lineage/BUILD_ID.parquet`` beside DIR (or
``.traingate-lineage/BUILD_ID/`` when the engine wrote it as several files), DIR renamed into
place, then the mark is cleared with the caller's audit entry. DIR appears whole
or not at all; an interrupted build leaves neither DIR nor lineage readers can see, and a
build killed between the phases is settled by the next ``settle_builds`` (the next build, or
the next opening of the store). After a hard kill, hidden directories stay until the next
build into DIR removes them (``_datasets/staging.py``).

The module reads in the build's order: ``build_dataset`` refuses an existing DIR and opens
the build (``_Build``: its scratch and staging directories, its writer and lineage spool);
``_Build.run`` writes the records ``produce`` makes (``_datasets/produce.py``), adds them up
and checks that they balance (``_datasets/books.py``), writes the manifest and the documents,
then commits the lineage and renames DIR into place; a failure anywhere, an interrupt too,
takes back what it did (``_Build.undo``). Then the helpers of those steps, and the worker
thread that records the lineage (``_Recording``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import secrets
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traingate._core.manifest import FileEntry, manifest_body, policies_section, sign_manifest
from traingate._core.manifest_model import Manifest
from traingate._core.policy import Policy
from traingate._core.timeutil import now_micros
from traingate._datasets.books import Books
from traingate._datasets.documents import with_documents
from traingate._datasets.engines.base import BuildRequest, Engine, PartsOut, Written
from traingate._datasets.lineage import BuildRow, complete_build, forget_build, record_pending
from traingate._datasets.lineage_file import (
    LineageRun,
    LineageSpool,
    lineage_directory,
    lineage_path,
    place_lineage,
    write_directory,
    write_lineage,
)
from traingate._datasets.produce import Produced, produce
from traingate._datasets.progress import Progress
from traingate._datasets.shapes import Shape, shape_records, shape_schema
from traingate._datasets.staging import claim, remove_all_leftovers
from traingate._datasets.writer import (
    FORMATS,
    ROWS_PER_FILE,
    BackgroundWriter,
    Format,
    PartWriter,
    fsync_path,
)
from traingate._errors import BuildError
from traingate._keys import KeyRing
from traingate._store.store import Store
from traingate._vault.vault import Vault

__all__ = ["BuildResult", "Produced", "build_dataset", "produce"]

if TYPE_CHECKING:
    from traingate._datasets.incremental import Since


@dataclass(frozen=True, slots=True)
class BuildResult:
    build_id: str
    path: Path
    manifest: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "build_id": self.build_id,
            "path": str(self.path),
            "purpose": m["purpose"],
            "as_of": m["as_of"],
            "counts": m["counts"],
            "exclusions": m["exclusions"],
            "files": m["files"],
        }


def build_dataset(
    *,
    store: Store,
    vault: Vault,
    keys: KeyRing,
    request: BuildRequest,
    engine: Engine,
    out: Path,
    format: Format = "parquet",
    shape: Shape = "records",
    progress: Progress | None = None,
    rows_per_file: int = ROWS_PER_FILE,
    clock: Callable[[], int] = now_micros,
    on_complete: Callable[[BuildResult], None] | None = None,
    since: Since | None = None,
) -> BuildResult:
    """Build the dataset of ``request`` into the new directory ``out``, atomically, and record
    its lineage; ``on_complete`` (the audit entry) runs in the transaction that completes the
    lineage; ``since`` makes it an incremental build (_datasets/incremental.py). Raises
    BuildError when ``out`` exists or the build cannot complete."""
    request.policies.require_purpose(request.purpose)
    if format not in FORMATS:
        raise BuildError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    target = out.absolute()
    _prepare_parent(target)
    build = _Build(
        store=store, vault=vault, keys=keys, request=request, engine=engine, target=target,
        format=format, shape=shape, progress=progress, rows_per_file=rows_per_file,
        clock=clock, on_complete=on_complete, since=since,
    )  # fmt: skip
    try:
        return build.run()
    except BaseException:
        build.undo()
        raise
    finally:
        build.close()


def _prepare_parent(target: Path) -> None:
    """Refuse an existing DIR, make its parent, and remove what killed builds of any name
    left beside it."""
    _refuse_existing(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a directory should be, no permission
        raise BuildError(f"cannot create the directory of {target}: {exc}") from exc
    remove_all_leftovers(target.parent)  # what killed builds of any name left beside it


class _Build:
    """One build under way into ``target`` (DIR). Made, it holds its hidden siblings: the
    scratch directory (made first, and claimed while the build lives: staging.py) and the
    staging directory with its writer; ``run`` goes from the first record to DIR in place.
    What it went through (``recording``, ``recorded``, ``moved``) is what ``undo`` takes back
    when it fails or is interrupted; ``close`` ends it either way."""

    def __init__(
        self,
        *,
        store: Store,
        vault: Vault,
        keys: KeyRing,
        request: BuildRequest,
        engine: Engine,
        target: Path,
        format: Format,
        shape: Shape,
        progress: Progress | None,
        rows_per_file: int,
        clock: Callable[[], int],
        on_complete: Callable[[BuildResult], None] | None,
        since: Since | None,
    ) -> None:
        self.store, self.vault, self.keys, self.engine = store, vault, keys, engine
        self.request, self.target, self.format, self.shape = request, target, format, shape
        self.progress, self.rows_per_file, self.clock = progress, rows_per_file, clock
        self.on_complete, self.since = on_complete, since
        token = secrets.token_hex(6)
        self.staging = target.parent / f".{target.name}.tmp-{token}"
        self.scratch = target.parent / f".{target.name}.work-{token}"
        self.scratch.mkdir()  # first, and locked while the build lives (staging.py)
        self.held = claim(self.scratch)
        self.staging.mkdir()
        (self.staging / "data").mkdir()
        self.writer = BackgroundWriter(
            PartWriter(
                self.staging / "data",
                format=format,
                rows_per_file=rows_per_file,
                schema=shape_schema(shape),
                threads=getattr(engine, "write_threads", 1),  # whole parts on that many threads
            )
        )
        self.books = Books(shape)  # what the records hold and what decided them (books.py)
        self.spool = LineageSpool(self.scratch / "lineage.spool")
        self.runs: list[LineageRun] = []  # lineage files the engine wrote
        # Named before the records: the engine's files name it.
        self.build_id = f"build-{secrets.token_hex(8)}"
        self.watermark: int | None = None
        self.recording: _Recording | None = None
        self.recorded = self.moved = False

    def run(self) -> BuildResult:
        """The build: its records written, its lineage recorded on a worker thread while the
        parts are finished, the books balanced, the manifest and the documents written, then
        the two-phase commit of its lineage around the rename of the staging directory."""
        self._write_records()
        lineage_written, lineage_at, write = _lineage_at(
            self.target, self.scratch, self.build_id, self.spool, self.runs
        )
        recording = self.recording = _Recording(write)
        files = self.writer.close()
        totals = self.books.balance(self.request.policies)
        in_force = self.request.policies.in_force(self.request.as_of)
        data, manifest = self._write_manifest(self._manifest(in_force, files, totals))
        build = self._row(in_force, data, lineage_at, recording)
        result = BuildResult(build_id=build.build_id, path=self.target, manifest=manifest)
        self._commit(build, lineage_written, lineage_at, result)
        return result

    def _write_records(self) -> None:
        """Every step of ``produce`` (an incremental build's, with ``since``) through the
        writer, its lineage items into the spool, added to the books."""
        work = self._work_request()
        for step in (produce if self.since is None else self.since.produce)(
            store=self.store,
            vault=self.vault,
            keys=self.keys,
            request=work,
            engine=self.engine,
            progress=self.progress,
        ):
            self._take(step)

    def _work_request(self) -> BuildRequest:
        """The request as the engine runs it: in the scratch directory, no decisions kept,
        writing the parts into the staging directory itself when it can (``_parts_out``)."""
        request = self.request
        return BuildRequest(
            policy=request.policies,
            purpose=request.purpose,
            as_of=request.as_of,
            workdir=self.scratch,
            keep_decisions=False,
            messages=request.messages,
            output=_parts_out(
                self.engine,
                self.staging / "data",
                self.format,
                self.rows_per_file,
                self.shape,
                self.keys,
                build_id=self.build_id,
                lineage=self.scratch / "lineage",
            ),
        )

    def _take(self, step: Produced) -> None:
        """One step: what the engine wrote adopted, the records written in the shape."""
        self.watermark = step.watermark if step.watermark is not None else self.watermark
        if step.written is not None:  # parts written by the engine, then its last rows
            self._adopt(step.written)
        rows = shape_records(step.records, shape=self.shape)
        self.writer.write(rows.rows)
        self.books.add_rows(rows)
        self.spool.add(step.items)
        self.books.add(step)

    def _adopt(self, written: Written) -> None:
        """The parts and the lineage files the engine wrote, then the rows after its last
        part (written on by the builder's writer)."""
        self.writer.adopt(written.files)
        self.runs += written.lineage
        for tail in written.tail:
            self.writer.write(tail)
        self.books.add_written(written)

    def _manifest(
        self,
        in_force: Policy,
        files: list[FileEntry],
        totals: dict[tuple[str, str], tuple[int, int]],
    ) -> dict[str, Any]:
        """The signed manifest of the records written (``_core/manifest.py``)."""
        request, books, since = self.request, self.books, self.since
        policies = request.policies
        return sign_manifest(
            manifest_body(
                purpose=request.purpose,
                as_of=request.as_of,
                policy=in_force,
                engine=self.engine.name,
                record_format=self.format,
                counts=totals,
                bases=[
                    basis.id
                    for p in policies.policies
                    for basis in p.bases
                    if request.purpose in basis.purposes
                ],
                messages=books.messages,
                reports=books.reports,
                files=files,
                policies=policies_section(
                    policies, messages=books.by_policy[0], reports=books.by_policy[1]
                ),
                shape=books.shaped.section(),
            )
            | ({} if since is None else {"since": since.section()}),
            signing_key=self.keys.signing_key,
        )

    def _write_manifest(self, manifest: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """The documents written beside the data (card.py) and listed in the manifest, which
        is signed again and written, fsynced with the staging directory: its bytes, and the
        manifest as written."""
        documents = with_documents(self.staging, manifest, schema=shape_schema(self.shape))
        # Written through the model: a member it does not know, or of another type, is a
        # ManifestError here, not a manifest.json (_core/manifest_model.py).
        written = Manifest.parse(sign_manifest(documents, signing_key=self.keys.signing_key))
        data = written.to_bytes()
        manifest = written.to_json()
        (self.staging / "manifest.json").write_bytes(data)
        fsync_path(self.staging / "manifest.json")
        fsync_path(self.staging)
        return data, manifest

    def _row(
        self, in_force: Policy, data: bytes, lineage_at: Path, recording: _Recording
    ) -> BuildRow:
        """The build's row, once its lineage is written (``recording``: its sha256)."""
        request = self.request
        return BuildRow(
            build_id=self.build_id,
            built_at=self.clock(),
            purpose=request.purpose,
            as_of=request.as_of,
            policy_id=in_force.id,
            policy_sha256=in_force.sha256,
            engine=self.engine.name,
            format=self.format,
            path=str(self.target),
            manifest_sha256=hashlib.sha256(data).hexdigest(),
            records=self.books.records,
            messages=self.books.record_messages,
            lineage_path=str(lineage_at),
            lineage_sha256=recording.finish(),
            watermark=self.watermark,
        )

    def _commit(
        self, build: BuildRow, lineage_written: Path, lineage_at: Path, result: BuildResult
    ) -> None:
        """The two phases (``_datasets/lineage.py``): the row committed pending, the lineage
        placed beside DIR, the staging directory renamed to DIR, then the row completed with
        the caller's ``on_complete`` in the same transaction."""
        _refuse_existing(self.target)
        record_pending(self.store.db, build=build, scratch=self.scratch)
        self.recorded = True
        place_lineage(lineage_written, lineage_at)
        _refuse_existing(self.target)
        os.rename(self.staging, self.target)
        self.moved = True
        fsync_path(self.target.parent)
        on_complete = self.on_complete
        complete_build(
            self.store.db,
            build_id=build.build_id,
            on_complete=None if on_complete is None else lambda: on_complete(result),
        )

    def undo(self) -> None:
        """Take back a build that failed or was interrupted: its lineage thread stopped, its
        writer aborted, DIR (once renamed) or the staging directory removed, its pending row
        forgotten (else the next settle_builds deletes it)."""
        if self.recording is not None:
            self.recording.abandon()
        self.writer.abort()
        shutil.rmtree(self.target if self.moved else self.staging, ignore_errors=True)
        if self.recorded:
            with contextlib.suppress(Exception):  # else the next settle_builds deletes them
                forget_build(self.store.db, build_id=self.build_id)

    def close(self) -> None:
        """The spool closed, the scratch directory removed and its claim released."""
        self.spool.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.held.release()


def _refuse_existing(path: Path) -> None:
    if path.exists() or path.is_symlink():
        raise BuildError(
            f"{path} already exists; a build never writes into or over an existing path "
            "(choose a new --out directory)"
        )


def _parts_out(
    engine: Engine,
    directory: Path,
    format: Format,
    rows_per_file: int,
    shape: Shape,
    keys: KeyRing,
    *,
    build_id: str,
    lineage: Path,
) -> PartsOut | None:
    """Where an engine that writes its own parts writes them (None: the builder writes), and
    where it may write the build's lineage files."""
    if not getattr(engine, "writes_parts", False):
        return None
    return PartsOut(
        directory=directory,
        format=format,
        rows_per_file=rows_per_file,
        shape=shape,
        signing_key=keys.signing_key,
        build_id=build_id,
        lineage=lineage,
    )


def _lineage_at(
    target: Path, scratch: Path, build_id: str, spool: LineageSpool, runs: list[LineageRun]
) -> tuple[Path, Path, Callable[..., str]]:
    """Where the build's lineage is written (in its scratch), where it goes, and what writes
    it: a directory when the engine wrote lineage files (``runs``), the builder's spooled
    items being one more file of it; else one file of the spooled items."""
    if runs:
        written = scratch / "lineage"
        write = functools.partial(
            write_directory, spool, directory=written, build_id=build_id, runs=runs
        )
        return written, lineage_directory(target, build_id), write
    written = scratch / "lineage.parquet"
    write = functools.partial(write_lineage, spool, path=written, build_id=build_id)
    return written, lineage_path(target, build_id), write


class _Recording:
    """The build's lineage written into its scratch directory on a worker thread, started
    once every record is out: the spooled items are sorted and written (``write``: a lineage
    file, or the last file and the index of the directory the engine wrote) while the parts
    are finished and the manifest written. ``finish`` waits for it and returns the sha256 the
    build's row records (or raises its error); ``abandon`` stops it and waits."""

    def __init__(self, write: Callable[..., str]) -> None:
        self._stop = threading.Event()
        self._sha256: str | None = None
        self._error: BaseException | None = None

        def work() -> None:
            try:
                self._sha256 = write(stop=self._stop)
            except BaseException as exc:  # raised in the builder's thread by finish
                self._error = exc

        self._thread = threading.Thread(target=work, name="traingate-lineage")
        self._thread.start()

    def finish(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._sha256 is not None
        return self._sha256

    def abandon(self) -> None:
        self._stop.set()
        self._thread.join()
