"""Ingest: validate events line by line, check them against what is stored, append in batches.

Lines stream in and are parsed (``incoming``: shape, canonical body, keyed hashes), in worker
processes when the file is large (``parsing``); every ``batch_size`` parsed events are checked
and written in one transaction (``batch``), so a file of any size runs in bounded memory and a
crash loses no committed batch (a re-run counts those events as duplicates).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial

from traingate._core.policy import Policy, PolicySet
from traingate._ingest import parsing
from traingate._ingest.archive import LakeArchive, MessageArchive
from traingate._ingest.batch import (
    DEFAULT_BATCH,
    AcceptedBatch,
    BatchObserver,
    IngestError,
    IngestSummary,
    ReportSink,
    write_batch,
)
from traingate._ingest.incoming import Declared, Incoming, Rejected
from traingate._ingest.parsing import default_workers, parse_lines
from traingate._store.store import Store

__all__ = [
    "DEFAULT_BATCH",
    "AcceptedBatch",
    "BatchObserver",
    "IngestError",
    "IngestSummary",
    "LakeArchive",
    "MessageArchive",
    "ReportSink",
    "default_workers",
    "ingest_lines",
]


def _numbered(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    for number, text in enumerate(lines, start=1):
        if text and not text.isspace():  # what strip() would empty, without copying the line
            yield number, text


def ingest_lines(
    *,
    store: Store,
    sink: ReportSink,
    policy: Policy | PolicySet,
    lines: Iterable[str],
    batch_size: int = DEFAULT_BATCH,
    observer: BatchObserver | None = None,
    workers: int | None = None,
    archive: MessageArchive | None = None,
) -> IngestSummary:
    """Ingest JSONL lines (blank lines are skipped but counted). Returns the summary.
    ``observer`` hears of each batch that accepted something, inside its transaction.
    Lines past the first ``parsing.INLINE`` are parsed by ``workers`` processes (default:
    ``default_workers()``; 0 parses every line here). Plans and consent settings are those
    ``policy`` declares (a ``PolicySet``: those of any of its policies). ``archive``: where a
    feedback report's messages that the store does not hold are read at receipt (a lake)."""
    summary = IngestSummary()
    write = partial(
        write_batch, store=store, sink=sink, summary=summary, observer=observer, archive=archive
    )
    pending: list[Incoming] = []
    workers = default_workers() if workers is None else workers
    parsed = parse_lines(
        _numbered(lines),
        declared=Declared.of(policy.plans, tuple(policy.settings)),
        short_hash=store.keys.short_hasher,
        workers=workers,
        inline=parsing.INLINE,
        ahead=batch_size + parsing.CHUNK * workers,
    )
    try:
        for item in parsed:
            if isinstance(item, Rejected):
                summary.reject(item.error())
                continue
            pending.append(item)
            if len(pending) >= batch_size:
                write(events=pending)
                pending = []
        if pending:
            write(events=pending)
    finally:
        parsed.close()  # stops the workers now, whatever happened
    summary.errors.sort(key=lambda e: e.line)
    return summary
