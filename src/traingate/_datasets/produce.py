"""The records of a build, in output order (``produce``), as the builder writes them
(``builder.py``): one ``Produced`` step after another, each with its lineage items and the
decisions it came from.

The conversation records come from the engine over one read snapshot of the store (decided
on the engine's thread while the builder writes the last batch: ``prefetch.py``), with the
store's watermark and, under several policies, the messages each decides; then the feedback
records, from the vault (``feedback.py``), made meanwhile on a worker thread
(``_FeedbackAhead``) when the request has a scratch directory. An incremental build makes
its steps from these parts too (``incremental.py``).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from traingate._core.policy import PolicySet
from traingate._datasets.engines.base import BuildRequest, Engine, MessageSource, Tally, Written
from traingate._datasets.feedback import feedback_batches, feedback_granted
from traingate._datasets.prefetch import Prefetch
from traingate._datasets.progress import Progress
from traingate._datasets.records import RECORD_SCHEMA, LineageItem, conversation_records
from traingate._keys import KeyRing
from traingate._store.export import StoreReader, open_reader
from traingate._store.store import Store
from traingate._vault.vault import Vault

__all__ = ["WATERMARK_SQL", "Produced", "produce"]

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
