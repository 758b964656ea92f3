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
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import secrets
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from traingate._core.manifest import manifest_body, policies_section, sign_manifest
from traingate._core.manifest_model import Manifest
from traingate._core.policy import PolicySet
from traingate._core.timeutil import now_micros
from traingate._datasets.documents import with_documents
from traingate._datasets.engines.base import (
    BuildRequest,
    Engine,
    MessageSource,
    PartsOut,
    Tally,
    Written,
)
from traingate._datasets.feedback import feedback_batches, feedback_granted
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
from traingate._datasets.prefetch import Prefetch
from traingate._datasets.progress import Progress
from traingate._datasets.records import RECORD_SCHEMA, LineageItem, conversation_records
from traingate._datasets.shapes import Shape, ShapeTally, shape_records, shape_schema
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
from traingate._store.export import StoreReader, open_reader
from traingate._store.store import Store
from traingate._vault.vault import Vault

__all__ = ["BuildResult", "Produced", "build_dataset", "produce"]

if TYPE_CHECKING:
    from traingate._datasets.incremental import Since

_FEEDBACK_BATCH = 1_000
# The highest event seq a read snapshot holds: a build's watermark (migration 17).
WATERMARK_SQL = "SELECT MAX(seq) FROM events"


@dataclass(frozen=True, slots=True)
class Produced:
    """One step of a build: records (``RECORD_SCHEMA``) with their lineage items, and the
    decisions they came from. ``messages_by_policy`` and ``reports_by_policy`` count the items
    each policy of the request decided (by position); with one policy, messages are not
    counted by policy (that policy decided every one)."""

    records: pa.RecordBatch
    items: tuple[LineageItem, ...]
    messages: Tally
    reports: Tally
    messages_seen: int = 0
    decisions: pa.Table | None = None
    messages_by_policy: Mapping[int, int] = field(default_factory=dict)
    reports_by_policy: Mapping[int, int] = field(default_factory=dict)
    written: Written | None = None  # records the engine wrote (``records`` then empty)
    watermark: int | None = None  # the highest event seq of the store's snapshot (first step)


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


def _feedback(*, vault: Vault, keys: KeyRing, request: BuildRequest) -> Iterator[Produced]:
    """Feedback records: every report the vault holds for as-of, when the feedback basis of a
    policy in force grants the purpose, each decided again by ``decide_report`` under the
    policy in force at its submission (expired and excluded reports stay out)."""
    policies, purpose, as_of = request.policies, request.purpose, request.as_of
    if not feedback_granted(policies, purpose):
        return
    for batch in feedback_batches(
        vault.reports(as_of=as_of),
        policies=policies,
        purpose=purpose,
        as_of=as_of,
        signing_key=keys.signing_key,
        size=_FEEDBACK_BATCH,
    ):
        yield Produced(
            records=batch.records,
            items=batch.items,
            messages=Tally(),
            reports=batch.tally,
            reports_by_policy=batch.by_policy,
        )


class _FeedbackAhead:
    """Feedback records made while the engine runs (``_feedback``), on a worker thread. The
    vault is read through the store's connection, which both backends let threads share (the
    scalar engine reads it too meanwhile; the DuckDB engine reads the snapshot's, which on
    SQLite is held by a child process, ``_store/reader_process.py``). The records wait in an Arrow
    IPC file in the scratch directory, so memory holds only their tallies and lineage items;
    ``steps`` hands them over, in order, once the conversation records are out. An error of
    the worker is raised there; ``stop`` ends the worker early (the build failed) and waits
    for it."""

    def __init__(self, *, vault: Vault, keys: KeyRing, request: BuildRequest, path: Path) -> None:
        self._vault, self._keys, self._request, self._path = vault, keys, request, path
        self._steps: list[Produced] = []
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="traingate-feedback")
        self._thread.start()

    def _work(self) -> None:
        try:
            with pa.ipc.new_stream(str(self._path), RECORD_SCHEMA) as spool:
                for step in _feedback(vault=self._vault, keys=self._keys, request=self._request):
                    if self._stop.is_set():
                        return
                    spool.write_batch(step.records)
                    self._steps.append(dataclasses.replace(step, records=_NO_RECORDS))
        except BaseException as exc:  # raised in the consumer's thread
            self._error = exc

    def steps(self) -> Iterator[Produced]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        if not self._steps:
            return
        with pa.OSFile(str(self._path), "rb") as source, pa.ipc.open_stream(source) as spooled:
            for step in self._steps:
                yield dataclasses.replace(step, records=spooled.read_next_batch())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


_NO_RECORDS = pa.RecordBatch.from_pylist([], schema=RECORD_SCHEMA)


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


def _messages_by_policy(
    source: StoreReader, policies: PolicySet, as_of: int, messages: MessageSource | None = None
) -> dict[int, int]:
    """How many messages with ``at <= as_of`` each policy of the set decides (by position):
    those of its effective range (the earliest also takes every earlier message). Counted in
    ``messages`` when the build reads them from there (a lake)."""
    starts = policies.starts
    if messages is not None:
        ranges = [
            (starts[i] if i > 0 else None, starts[i + 1] if i + 1 < len(starts) else None)
            for i in range(len(starts))
        ]
        found = {
            i: messages.count(as_of=as_of, since=since, until=until)
            for i, (since, until) in enumerate(ranges)
        }
        return {i: n for i, n in found.items() if n}
    sums = []
    for i in range(len(starts)):
        low = f"at >= {starts[i]}" if i > 0 else "1 = 1"
        high = f"at < {starts[i + 1]}" if i + 1 < len(starts) else "1 = 1"
        sums.append(f"SUM(CASE WHEN {low} AND {high} THEN 1 ELSE 0 END)")
    rows = source.fetchall(f"SELECT {', '.join(sums)} FROM messages WHERE at <= ?", (as_of,))
    return {i: int(n or 0) for i, n in enumerate(rows[0]) if n}


def produce(
    *,
    store: Store,
    vault: Vault,
    keys: KeyRing,
    request: BuildRequest,
    engine: Engine,
    progress: Progress | None = None,
) -> Iterator[Produced]:
    """The records of a build, in output order: conversation records (from the engine, over
    one read snapshot of the store), then feedback records (from the vault; made meanwhile on
    a worker thread when the request has a scratch directory: ``_FeedbackAhead``), unless the
    engine made them too (``makes_feedback``: the Spark engine's tasks, when it writes the
    parts) and returned them with its records."""
    made = request.output is not None and getattr(engine, "makes_feedback", False)
    ahead = (
        _FeedbackAhead(
            vault=vault, keys=keys, request=request, path=request.workdir / "feedback.arrows"
        )
        if request.workdir is not None and not made
        else None
    )
    try:
        yield from _conversations(
            store=store, keys=keys, request=request, engine=engine, progress=progress
        )
        if ahead is not None:
            yield from ahead.steps()
        elif not made:
            yield from _feedback(vault=vault, keys=keys, request=request)
    finally:
        if ahead is not None:
            ahead.stop()


def _conversations(
    *,
    store: Store,
    keys: KeyRing,
    request: BuildRequest,
    engine: Engine,
    progress: Progress | None,
) -> Iterator[Produced]:
    """The conversation records of a build, from the engine."""
    with open_reader(store.db) as source:
        if progress is not None:
            total = (
                request.messages.count(as_of=request.as_of)
                if request.messages is not None
                else source.scalar("SELECT COUNT(*) FROM messages WHERE at <= ?", (request.as_of,))
            )
            progress.start(int(total or 0))
        policies = request.policies
        counts = (
            _messages_by_policy(source, policies, request.as_of, request.messages)
            if len(policies.policies) > 1
            else {}
        )
        # What an incremental build starting from this one reads above (_datasets/incremental.py).
        watermark = None if request.messages is not None else source.scalar(WATERMARK_SQL)
        # The engine decides the next batch on its own thread while this one is turned into
        # records, counted and written (_datasets/prefetch.py).
        with Prefetch(engine.run(request=request, source=source, store=store)) as batches:
            for batch in batches:
                if batch.written is not None:  # made and written by the engine
                    records, items = _NO_RECORDS, list(batch.written.items)
                else:
                    records, items = conversation_records(
                        batch.records, signing_key=keys.signing_key
                    )
                if progress is not None:
                    progress.advance(batch.messages_seen)
                yield Produced(
                    records=records,
                    items=tuple(items),
                    messages=batch.tally,
                    reports=Tally() if batch.written is None else batch.written.reports,
                    messages_seen=batch.messages_seen,
                    decisions=batch.decisions,
                    messages_by_policy=counts,
                    reports_by_policy={}
                    if batch.written is None
                    else batch.written.reports_by_policy,
                    written=batch.written,
                    watermark=watermark,
                )
                counts, watermark = {}, None  # counted once, carried by the first step
        if watermark is not None:  # no batch: the watermark still goes to the build's row
            yield Produced(
                records=_NO_RECORDS, items=(), messages=Tally(), reports=Tally(),
                watermark=watermark,
            )  # fmt: skip


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


def _with_written(shaped: ShapeTally, written: Written) -> ShapeTally:
    """The shape's tally with what the engine wrote."""
    left_out = Counter(shaped.left_out)
    left_out.update(written.left_out)
    return dataclasses.replace(
        shaped,
        rows=shaped.rows + written.rows,
        messages=shaped.messages + written.messages,
        left_out=dict(left_out),
    )


def _count(
    counts: Counter[tuple[str, str]], sizes: Counter[tuple[str, str]], batch: pa.RecordBatch
) -> None:
    """Add the batch's records and messages per (kind, basis) (grouped by Arrow)."""
    if batch.num_rows == 0:
        return
    lengths = pc.fill_null(pc.list_value_length(batch.column("messages")), 0)
    table = pa.table({"kind": batch.column("kind"), "basis": batch.column("basis"), "n": lengths})
    grouped = table.group_by(["kind", "basis"]).aggregate([("n", "sum"), ("n", "count")])
    for kind, basis, n, records in zip(
        grouped.column("kind").to_pylist(),
        grouped.column("basis").to_pylist(),
        grouped.column("n_sum").to_pylist(),
        grouped.column("n_count").to_pylist(),
        strict=True,
    ):
        key = (str(kind), str(basis))
        counts[key] += int(records or 0)
        sizes[key] += int(n or 0)


def _check(
    counts: dict[tuple[str, str], tuple[int, int]],
    messages: Tally,
    reports: Tally,
    seen: int,
    by_policy: tuple[Counter[int], Counter[int]],
) -> None:
    """The books must balance; a build that does not is refused, not written."""
    problems = []
    if messages.considered != seen:
        problems.append(f"{seen} messages read, {messages.considered} decided")
    for kind, tally, decided in (
        ("message", messages, by_policy[0]),
        ("report", reports, by_policy[1]),
    ):
        if decided.total() != tally.considered:
            problems.append(
                f"{tally.considered} {kind}s decided, {decided.total()} by the policies in force"
            )
    for kind, tally, index in (("conversation", messages, 1), ("feedback", reports, 0)):
        written = Counter({b: v[index] for (k, b), v in counts.items() if k == kind})
        if dict(+written) != {b: n for b, n in tally.included_by_basis().items() if n}:
            problems.append(
                f"{kind}: records hold {dict(written)}, decisions included "
                f"{tally.included_by_basis()}"
            )
    if problems:
        raise BuildError("the build does not balance: " + "; ".join(problems))


def _refuse_existing(path: Path) -> None:
    if path.exists() or path.is_symlink():
        raise BuildError(
            f"{path} already exists; a build never writes into or over an existing path "
            "(choose a new --out directory)"
        )


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
    policies = request.policies
    policies.require_purpose(request.purpose)
    if format not in FORMATS:
        raise BuildError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    target = out.absolute()
    _refuse_existing(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a directory should be, no permission
        raise BuildError(f"cannot create the directory of {target}: {exc}") from exc
    remove_all_leftovers(target.parent)  # what killed builds of any name left beside it
    token = secrets.token_hex(6)
    staging = target.parent / f".{target.name}.tmp-{token}"
    scratch = target.parent / f".{target.name}.work-{token}"
    scratch.mkdir()  # first, and locked while the build lives (staging.py)
    held = claim(scratch)
    staging.mkdir()
    (staging / "data").mkdir()
    writer = BackgroundWriter(
        PartWriter(
            staging / "data",
            format=format,
            rows_per_file=rows_per_file,
            schema=shape_schema(shape),
            threads=getattr(engine, "write_threads", 1),  # whole parts on that many threads
        )
    )
    shaped = ShapeTally(shape=shape)  # the rows of the shape (_datasets/shapes.py)
    spool = LineageSpool(scratch / "lineage.spool")
    runs: list[LineageRun] = []  # lineage files the engine wrote
    build_id = f"build-{secrets.token_hex(8)}"  # before the records: the engine's files name it
    moved = recorded = False
    recording: _Recording | None = None
    try:
        counts: Counter[tuple[str, str]] = Counter()
        sizes: Counter[tuple[str, str]] = Counter()
        messages, reports, seen = Tally(), Tally(), 0
        by_policy: tuple[Counter[int], Counter[int]] = (Counter(), Counter())
        work = BuildRequest(
            policy=policies,
            purpose=request.purpose,
            as_of=request.as_of,
            workdir=scratch,
            keep_decisions=False,
            messages=request.messages,
            output=_parts_out(
                engine,
                staging / "data",
                format,
                rows_per_file,
                shape,
                keys,
                build_id=build_id,
                lineage=scratch / "lineage",
            ),
        )
        watermark: int | None = None
        for step in (produce if since is None else since.produce)(
            store=store, vault=vault, keys=keys, request=work, engine=engine, progress=progress
        ):
            watermark = step.watermark if step.watermark is not None else watermark
            if step.written is not None:  # parts written by the engine, then its last rows
                writer.adopt(step.written.files)
                runs += step.written.lineage
                for tail in step.written.tail:
                    writer.write(tail)
                shaped = _with_written(shaped, step.written)
                for key, (n, size) in step.written.counts.items():
                    counts[key] += n
                    sizes[key] += size
            rows = shape_records(step.records, shape=shape)
            writer.write(rows.rows)
            shaped = shaped.add(rows)
            spool.add(step.items)
            _count(counts, sizes, step.records)
            messages, reports = messages + step.messages, reports + step.reports
            seen += step.messages_seen
            by_policy[0].update(step.messages_by_policy)
            by_policy[1].update(step.reports_by_policy)
        lineage_written, lineage_at, write = _lineage_at(target, scratch, build_id, spool, runs)
        recording = _Recording(write)
        files = writer.close()
        totals = {key: (counts[key], sizes[key]) for key in counts}
        if len(policies.policies) == 1 and seen:
            by_policy[0][0] = seen
        _check(totals, messages, reports, seen, by_policy)
        in_force = policies.in_force(request.as_of)
        manifest = sign_manifest(
            manifest_body(
                purpose=request.purpose,
                as_of=request.as_of,
                policy=in_force,
                engine=engine.name,
                record_format=format,
                counts=totals,
                bases=[
                    basis.id
                    for p in policies.policies
                    for basis in p.bases
                    if request.purpose in basis.purposes
                ],
                messages=messages,
                reports=reports,
                files=files,
                policies=policies_section(policies, messages=by_policy[0], reports=by_policy[1]),
                shape=shaped.section(),
            )
            | ({} if since is None else {"since": since.section()}),
            signing_key=keys.signing_key,
        )
        documents = with_documents(staging, manifest, schema=shape_schema(shape))  # card.py
        # Written through the model: a member it does not know, or of another type, is a
        # ManifestError here, not a manifest.json (_core/manifest_model.py).
        written = Manifest.parse(sign_manifest(documents, signing_key=keys.signing_key))
        data = written.to_bytes()
        manifest = written.to_json()
        (staging / "manifest.json").write_bytes(data)
        fsync_path(staging / "manifest.json")
        fsync_path(staging)
        build = BuildRow(
            build_id=build_id,
            built_at=clock(),
            purpose=request.purpose,
            as_of=request.as_of,
            policy_id=in_force.id,
            policy_sha256=in_force.sha256,
            engine=engine.name,
            format=format,
            path=str(target),
            manifest_sha256=hashlib.sha256(data).hexdigest(),
            records=sum(counts.values()),
            messages=sum(sizes.values()),
            lineage_path=str(lineage_at),
            lineage_sha256=recording.finish(),
            watermark=watermark,
        )

        result = BuildResult(build_id=build.build_id, path=target, manifest=manifest)
        _refuse_existing(target)
        record_pending(store.db, build=build, scratch=scratch)
        recorded = True
        place_lineage(lineage_written, lineage_at)
        _refuse_existing(target)
        os.rename(staging, target)
        moved = True
        fsync_path(target.parent)
        complete_build(
            store.db,
            build_id=build.build_id,
            on_complete=None if on_complete is None else lambda: on_complete(result),
        )
    except BaseException:
        if recording is not None:
            recording.abandon()
        writer.abort()
        shutil.rmtree(target if moved else staging, ignore_errors=True)
        if recorded:
            with contextlib.suppress(Exception):  # else the next settle_builds deletes them
                forget_build(store.db, build_id=build.build_id)
        raise
    finally:
        spool.close()
        shutil.rmtree(scratch, ignore_errors=True)
        held.release()
    return result
