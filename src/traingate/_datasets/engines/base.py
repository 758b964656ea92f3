"""What a build engine is: it decides every message of the store for one purpose and as-of, in
bulk, and hands back the conversation records (de-identified) with a tally of its decisions.

Feedback records are not an engine's business: they come from the vault, whatever the engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from traingate._core.manifest import FileEntry, Tally
from traingate._core.policy import Policy, PolicySet
from traingate._datasets.lineage_file import LineageRun
from traingate._datasets.records import LineageItem
from traingate._datasets.writer import Format
from traingate._store.export import StoreReader
from traingate._store.store import Store

__all__ = [
    "DECISION_SCHEMA",
    "BuildRequest",
    "Engine",
    "EngineBatch",
    "MessageSource",
    "PartsOut",
    "Tally",
    "Written",
]

# One row per message decided, when the caller asks for them (tests, audits, policy diff);
# ``policy`` is the position in ``BuildRequest.policies`` of the policy that decided it.
_DECISION_FIELDS: list[tuple[str, pa.DataType]] = [
    ("conversation_id", pa.string()),
    ("seq", pa.int64()),
    ("basis", pa.string()),
    ("reason", pa.string()),
    ("policy", pa.int64()),
]
DECISION_SCHEMA = pa.schema(_DECISION_FIELDS)


class MessageSource(Protocol):
    """Messages kept outside the store (a Parquet lake: ``_datasets/lake.py``), judged against the
    store's ledgers. ``batches`` yields whole conversations in conversation id order, each row
    with its content (``lake.BATCH_SCHEMA``: the compiled SQL's ``batch`` and ``content`` at
    once), ``seq`` unique within the stream."""

    @property
    def name(self) -> str: ...

    def count(self, *, as_of: int, since: int | None = None, until: int | None = None) -> int: ...

    def batches(
        self, *, reader: StoreReader, as_of: int, rows_per_batch: int, workdir: Path | None
    ) -> Iterator[pa.RecordBatch]: ...


@dataclass(frozen=True, slots=True)
class PartsOut:
    """Where and how an engine that writes its own parts (``Engine.writes_parts``) writes the
    conversation records: into ``directory`` (``<dataset>/data``), as rows of ``shape``
    (``_datasets/shapes.py``), ``rows_per_file`` a part, from part 0; record ids and lineage keys
    are HMACs with ``signing_key``. The feedback records follow in parts of their own. When
    ``lineage`` is set, the engine may write the records' lineage there as sorted files of the
    build ``build_id`` (``lineage_file.write_run``) and name them in ``Written.lineage``."""

    directory: Path
    format: Format
    rows_per_file: int
    shape: str
    signing_key: bytes = field(repr=False)
    build_id: str = ""
    lineage: Path | None = None


@dataclass(frozen=True, slots=True)
class BuildRequest:
    """One build's question: every message ``policy`` allows for ``purpose`` as of ``as_of``.

    ``policy`` is one policy or the policies in force (``PolicySet``): each message is decided
    by the one in force at its time. ``workdir`` is scratch space on the output's file system
    (engines may spill there); ``keep_decisions`` asks for every message's decision in the
    batches.

    An incremental build (``_datasets/incremental.py``) asks about part of the store:
    ``conversations`` restricts the messages to those conversations (None: all); ``watermark``
    reads the store as it was when its event seq was that (every row of a higher seq left
    out); ``tally_only`` asks for the decisions' tally alone (no content read, no records).
    """

    policy: Policy | PolicySet
    purpose: str
    as_of: int
    workdir: Path | None = None
    keep_decisions: bool = False
    messages: MessageSource | None = None  # None: the store's messages
    output: PartsOut | None = None  # for an engine that writes its parts: where
    conversations: tuple[str, ...] | None = None
    watermark: int | None = None
    tally_only: bool = False

    @property
    def policies(self) -> PolicySet:
        return PolicySet.of(self.policy)


@dataclass(frozen=True, slots=True)
class Written:
    """Conversation records an engine wrote itself (``BuildRequest.output``): its whole parts
    (in order) and the rows after the last of them (``tail``, fewer than a part's, already in
    the shape: the builder writes them on, before the feedback records), their lineage items,
    records and messages by (kind, basis), and the rows of the shape (``rows``, ``messages``,
    records ``left_out`` by reason)."""

    files: tuple[FileEntry, ...] = ()
    tail: tuple[pa.RecordBatch, ...] = ()
    items: tuple[LineageItem, ...] = ()
    counts: Mapping[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    rows: int = 0
    messages: int = 0
    left_out: Mapping[str, int] = field(default_factory=dict)
    # The lineage files the engine wrote (``PartsOut.lineage``): their items are not in ``items``.
    lineage: tuple[LineageRun, ...] = ()
    # Feedback records the engine made too (``makes_feedback``): the reports decided for them
    # and how many each policy of the request decided (by position).
    reports: Tally = field(default_factory=Tally)
    reports_by_policy: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineBatch:
    """Conversation records (``records.ENGINE_SCHEMA``, in output order), the tally of the
    messages decided for them, and optionally each message's decision (``DECISION_SCHEMA``);
    or, from an engine that wrote them (``written``), what it wrote."""

    records: pa.RecordBatch
    tally: Tally
    messages_seen: int
    decisions: pa.Table | None = None
    written: Written | None = None  # records written by the engine (then ``records`` is empty)


class Engine(Protocol):
    """A bulk evaluator of the policy. ``run`` yields batches in a deterministic order. An
    engine whose ``writes_parts`` is true writes the conversation records' parts itself when
    the request says where (``BuildRequest.output``), and yields them as ``Written``."""

    name: str
    writes_parts: bool

    def run(
        self, *, request: BuildRequest, source: StoreReader, store: Store
    ) -> Iterator[EngineBatch]: ...
