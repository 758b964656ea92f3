"""Incremental builds (``--since BUILD``): the records of a full build, reading only what changed.

A base build recorded its watermark W (migration 17: the highest event seq its snapshot saw;
writers commit in seq order under the store's write lock, so that snapshot was the store's
rows of seq <= W). A build of the same purpose and policies as of T2 >= the base's as-of T1
then takes:

- the **dirty set** D: every conversation that a row of seq > W touches, or a row whose time
  lies in (T1, T2] (it did not exist for the base, it does now): its messages, deletion,
  settings, flags and their clears; every conversation of an account with such a plan,
  deletion or consent row, and of every account that ever had an organization with such a
  consent row; and every conversation with a message whose content may expire between T1 and
  T2 by time alone (its time plus a ``keep`` of a retention rule of the policies falls in
  (T1, T2], widened by the calendar's slack). Outside D nothing a decision reads changed, so
  its records and decisions are the base's;
- records of conversations outside D from the base's parts (read through its manifest, each
  part checked against its sha256), in the base's order; records of D decided afresh by the
  engine restricted to D, merged in where a full build puts them (by conversation id, then
  basis precedence: ``_datasets/merge.py``), so the parts are a full build's, byte for byte;
- the decisions' tally: the base's, less D's as the base decided them (D decided again as of
  T1 over the store as it was at W: ``BuildRequest.watermark``), plus D's now;
- feedback records: all made again from the vault, as in any build.

A purge deletes rows without an event; when it deleted a message the base considered (the
messages of seq <= W and time <= T1 no longer number what the base's manifest counted), the
base's decisions cannot be taken apart: the build is made in full, and its manifest's
``since`` says so (``full_rebuild``). Refused with a BuildError naming why: a base that is not
a completed build of this store, has no watermark (recorded before migration 17, or read a
lake), is not verified (manifest hash, signature), is not Parquet records, is of another
purpose or policy set, or is later than the new as-of, or a policy starting in between.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from traingate._core.manifest import signature_problem
from traingate._core.policy import PolicySet
from traingate._core.timeutil import format_instant
from traingate._datasets.engines.base import BuildRequest, Engine, Tally
from traingate._datasets.lineage import BuildRow
from traingate._datasets.merge import Fresh, merged
from traingate._datasets.produce import (
    WATERMARK_SQL,
    Produced,
    _feedback,
    _FeedbackAhead,
    _messages_by_policy,
    produce,
)
from traingate._datasets.progress import Progress
from traingate._datasets.records import (
    RECORD_SCHEMA,
    LineageItem,
    conversation_records,
)
from traingate._errors import BuildError
from traingate._keys import KeyRing
from traingate._store.db import Database
from traingate._store.export import StoreReader, open_reader
from traingate._store.store import Store
from traingate._vault.vault import Vault

__all__ = ["Base", "Since", "dirty_conversations", "load_base"]

_DAY = 86_400_000_000  # microseconds
_EMPTY = pa.RecordBatch.from_pylist([], schema=RECORD_SCHEMA)
_COLUMNS = (
    "build_id", "built_at", "purpose", "as_of", "policy_id", "policy_sha256", "engine",
    "format", "path", "manifest_sha256", "records", "messages", "lineage_path",
    "lineage_sha256", "watermark",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Base:
    """The build an incremental build starts from: its row and its verified manifest."""

    build: BuildRow
    manifest: dict[str, Any]

    @property
    def watermark(self) -> int:
        assert self.build.watermark is not None
        return self.build.watermark


def _refuse(build_id: str, why: str) -> BuildError:
    return BuildError(f"--since {build_id}: {why}")


def _policies_match(base: dict[str, Any], policies: PolicySet, as_of: int) -> str | None:
    """Why the base was decided under other policies than ``policies`` (None: the same)."""
    if base.get("policy") != policies.in_force(as_of).identity():
        return "the policy in force at its as-of differs from this build's policies"
    ranges = [{k: v for k, v in r.items()} for r in policies.ranges()]
    for entry in base.get("policies", []):
        used = {k: v for k, v in entry.items() if k not in ("messages", "reports")}
        if used not in ranges:
            return f"it was decided under policy {entry.get('id')!r} as this set does not have it"
    return None


def load_base(
    db: Database,
    *,
    build_id: str,
    request: BuildRequest,
    signing_key: bytes,
) -> Base:
    """The base build ``build_id`` for ``request``, checked; BuildError naming what refuses
    it. The manifest must be the one its row recorded (sha256) and signed with this key."""
    rows = db.execute(
        f"SELECT {', '.join(_COLUMNS)}, pending_scratch FROM builds WHERE build_id = ?",
        (build_id,),
    )
    if not rows:
        raise _refuse(build_id, "no such build in this store")
    *values, pending = rows[0]
    build = BuildRow(*values)
    if pending is not None:
        raise _refuse(build_id, "the build is not completed")
    if build.watermark is None:
        raise _refuse(
            build_id,
            "the build has no watermark (recorded before incremental builds, or its messages"
            " came from a lake); build in full",
        )
    if build.purpose != request.purpose:
        raise _refuse(build_id, f"it is a build for {build.purpose!r}, not {request.purpose!r}")
    if request.as_of < build.as_of:
        raise _refuse(
            build_id,
            f"its as-of {format_instant(build.as_of)} is later than this build's"
            f" {format_instant(request.as_of)}",
        )
    if build.format != "parquet":
        raise _refuse(build_id, f"its records are {build.format}; a base must be Parquet")
    path = Path(build.path) / "manifest.json"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _refuse(build_id, f"cannot read its manifest {path}: {exc.strerror}") from exc
    if hashlib.sha256(data).hexdigest() != build.manifest_sha256:
        raise _refuse(build_id, f"{path} is not the manifest the build recorded")
    manifest = json.loads(data)
    problem = signature_problem(manifest, signing_key=signing_key)
    if problem is not None:
        raise _refuse(build_id, f"{path}: {problem}")
    if manifest.get("shape", {}).get("name", "records") != "records":
        raise _refuse(build_id, "its rows are not records (shape); a base must be --shape records")
    policies = request.policies
    problem = _policies_match(manifest, policies, build.as_of)
    if problem is not None:
        raise _refuse(build_id, problem)
    between = [s for s in policies.starts[1:] if build.as_of < s <= request.as_of]
    if between:
        raise _refuse(
            build_id,
            f"a policy comes into force at {format_instant(between[0])}, between its as-of"
            " and this build's; build in full",
        )
    return Base(build=build, manifest=manifest)


# -- the dirty set -----------------------------------------------------------------------------


def _retention_windows(policies: PolicySet, t1: int, t2: int) -> list[tuple[int, int]]:
    """Message times ``(lo, hi]`` whose content may expire in (t1, t2] by time alone: time +
    keep in (t1, t2] for a ``keep`` of a retention rule. Adding m months moves an instant by
    28m - 3 to 31m days (a day the month lacks becomes its last), so the window is widened by
    that and a day more each side."""
    windows = []
    for policy in policies.policies:
        for rule in policy.retention:
            keep = rule.keep_duration
            months = 12 * keep.years + keep.months
            lo = t1 - (31 * months + keep.days + 1) * _DAY
            hi = t2 - max(0, 28 * months + keep.days - 4) * _DAY
            if lo < hi:
                windows.append((lo, hi))
    return windows


def _column(source: StoreReader, sql: str, params: Sequence[Any]) -> set[str]:
    return {str(row[0]) for row in source.fetchall(sql, params) if row[0] is not None}


def _in(source: StoreReader, sql: str, column: str, values: set[str]) -> set[str]:
    if not values:
        return set()
    condition, value = source.in_values(column, sorted(values))
    return _column(source, sql.format(where=condition), (value,))


def dirty_conversations(
    source: StoreReader, *, policies: PolicySet, watermark: int, t1: int, t2: int
) -> tuple[str, ...]:
    """The conversations whose records or decisions as of ``t2`` may differ from those as of
    ``t1`` over the store at ``watermark`` (a superset: see the module's docstring), sorted."""
    changed = "(event_seq > ? OR (at > ? AND at <= ?))"
    since = (watermark, t1, t2)
    dirty = _column(
        source, "SELECT conversation_id FROM messages WHERE event_seq > ?", (watermark,)
    )  # by the index on event_seq (with DISTINCT, SQLite scans another index instead)
    windows = ([(t1, t2)] if t2 > t1 else []) + (
        _retention_windows(policies, t1, t2) if t2 > t1 else []
    )
    if windows:
        where = " OR ".join("(at > ? AND at <= ?)" for _ in windows)
        dirty |= _column(
            source,
            f"SELECT conversation_id FROM messages WHERE {where}",
            [bound for window in windows for bound in window],
        )
    for table in ("conversation_deletions", "conversation_settings", "flags"):
        dirty |= _column(source, f"SELECT conversation_id FROM {table} WHERE {changed}", since)
    dirty |= _column(
        source,
        "SELECT f.conversation_id FROM flag_clears c JOIN flags f ON f.flag_id = c.flag_id"
        " WHERE c.event_seq > ? OR (c.at > ? AND c.at <= ?)",
        since,
    )
    dirty |= _column(
        source, "SELECT conversation_id FROM conversations WHERE first_seq > ?", (watermark,)
    )
    accounts = _column(source, f"SELECT account_id FROM account_plans WHERE {changed}", since)
    accounts |= _column(source, f"SELECT account_id FROM account_deletions WHERE {changed}", since)
    consents = source.fetchall(f"SELECT scope, subject FROM consents WHERE {changed}", since)
    accounts |= {str(subject) for scope, subject in consents if scope == "account"}
    organizations = {str(subject) for scope, subject in consents if scope != "account"}
    accounts |= _in(
        source,
        "SELECT DISTINCT account_id FROM account_plans WHERE {where}",
        "organization_id",
        organizations,
    )
    dirty |= _in(
        source, "SELECT conversation_id FROM conversations WHERE {where}", "account_id", accounts
    )
    return tuple(sorted(dirty))


def _purged(source: StoreReader, base: Base) -> bool:
    """Whether a message the base considered is gone (a purge since): the messages of seq <=
    W and time <= T1 no longer number what its manifest counted. Two counts that indexes
    answer: every message of time <= T1, less those of seq > W."""
    t1, watermark = base.build.as_of, base.watermark
    every = int(source.scalar("SELECT COUNT(*) FROM messages WHERE at <= ?", (t1,)) or 0)
    later = int(
        source.scalar(
            "SELECT COUNT(*) FROM messages WHERE event_seq > ? AND at <= ?", (watermark, t1)
        )
        or 0
    )
    considered = int(base.manifest["exclusions"]["messages"]["considered"])
    return every - later != considered


# -- records -----------------------------------------------------------------------------------


def _base_tally(manifest: dict[str, Any], bases: Sequence[str]) -> Tally:
    """The base's decisions of messages, from its manifest."""
    by_basis = manifest["counts"]["by_basis"]
    counts: dict[tuple[str | None, str | None], int] = {
        (basis, None): int(by_basis[basis]["messages"]) for basis in bases if basis in by_basis
    }
    for reason, n in manifest["exclusions"]["messages"]["by_reason"].items():
        counts[(None, reason)] = int(n)
    return Tally(counts=counts)


def _tally_of(engine: Engine, request: BuildRequest, source: StoreReader, store: Store) -> Tally:
    """The tally of an engine run (``request.tally_only``), its batches summed."""
    total = Tally()
    for batch in engine.run(request=request, source=source, store=store):
        total = total + batch.tally
    return total


def _fresh(
    engine: Engine,
    request: BuildRequest,
    source: StoreReader,
    store: Store,
    *,
    keys: KeyRing,
    precedence: dict[str, int],
) -> tuple[Fresh, Tally]:
    """The records of the dirty conversations decided now, in output order (conversation
    id, then basis precedence: the engine's order, sorted again), and the tally."""
    batches: list[pa.RecordBatch] = []
    order: list[tuple[str, int]] = []
    items: list[LineageItem] = []
    tally = Tally()
    for batch in engine.run(request=request, source=source, store=store):
        tally = tally + batch.tally
        records, made = conversation_records(batch.records, signing_key=keys.signing_key)
        conversations = batch.records.column("conversation_id").to_pylist()
        bases = batch.records.column("basis").to_pylist()
        order += [(str(c), precedence[str(b)]) for c, b in zip(conversations, bases, strict=True)]
        batches.append(records)
        items += made
    table = pa.Table.from_batches(batches, schema=RECORD_SCHEMA)
    ranked = sorted(range(len(order)), key=order.__getitem__)  # the engine's order already
    fresh = Fresh(
        records=table.take(pa.array(ranked, pa.int64())),
        conversations=[order[i][0] for i in ranked],
        items=[items[i] for i in ranked],
    )
    return fresh, tally


class Since:
    """An incremental build from ``base`` (``build_dataset(since=...)``): ``produce`` makes
    its steps in place of ``produce.produce``, ``section`` is its manifest's ``since``."""

    def __init__(self, base: Base) -> None:
        self.base = base
        self._full: str | None = None
        self._decided: dict[str, int] = {}

    def section(self) -> dict[str, Any]:
        """The manifest's ``since``: the base, and how the build was made from it."""
        build = self.base.build
        return {
            "build_id": build.build_id,
            "manifest_sha256": build.manifest_sha256,
            "as_of": format_instant(build.as_of),
            "decided": None if self._full is not None else self._decided,
            "full_rebuild": self._full,
        }

    def produce(
        self,
        *,
        store: Store,
        vault: Vault,
        keys: KeyRing,
        request: BuildRequest,
        engine: Engine,
        progress: Progress | None = None,
    ) -> Iterator[Produced]:
        """The steps of the build, as ``produce.produce`` makes them for a full build."""
        with open_reader(store.db) as source:
            if _purged(source, self.base):
                self._full = "a purge since the base deleted messages it considered; built in full"
            else:
                yield from self._steps(source, store, vault, keys, request, engine, progress)
                return
        yield from produce(
            store=store, vault=vault, keys=keys, request=request, engine=engine, progress=progress
        )

    def _steps(
        self,
        source: StoreReader,
        store: Store,
        vault: Vault,
        keys: KeyRing,
        request: BuildRequest,
        engine: Engine,
        progress: Progress | None,
    ) -> Iterator[Produced]:
        base, policies = self.base, request.policies
        ahead = (
            _FeedbackAhead(
                vault=vault, keys=keys, request=request, path=request.workdir / "feedback.arrows"
            )
            if request.workdir is not None
            else None
        )
        try:
            watermark = source.scalar(WATERMARK_SQL)
            dirty = dirty_conversations(
                source,
                policies=policies,
                watermark=base.watermark,
                t1=base.build.as_of,
                t2=request.as_of,
            )
            granting = {b.id for p in policies.policies for b in p.message_bases(request.purpose)}
            order = [b for b in policies.basis_order() if b in granting]
            precedence = {basis: i for i, basis in enumerate(order)}
            before, now, fresh = _decide_dirty(
                engine, request, source, store, base=base, dirty=dirty, keys=keys,
                precedence=precedence,
            )  # fmt: skip
            self._decided = {
                "conversations": len(dirty),
                "messages_then": before.considered,
                "messages_now": now.considered,
            }
            tally = _base_tally(base.manifest, order) + Tally(
                counts={k: -n for k, n in before.counts.items()}
            )
            tally = _nonzero(tally + now)
            if progress is not None:
                progress.start(tally.considered)
            yield Produced(
                records=_EMPTY,
                items=(),
                messages=tally,
                reports=Tally(),
                messages_seen=tally.considered,
                messages_by_policy=(
                    _messages_by_policy(source, policies, request.as_of)
                    if len(policies.policies) > 1
                    else {}
                ),
                watermark=watermark,
            )
            conversations = sorted(  # as the build orders them: by UTF-8 bytes
                _column(source, "SELECT conversation_id FROM conversations", ())
            )
            for rows, items in merged(
                base.build,
                base.manifest["files"],
                fresh=fresh,
                dirty=dirty,
                conversations=conversations,
                signing_key=keys.signing_key,
            ):
                batch = rows.combine_chunks().to_batches()
                yield Produced(
                    records=batch[0] if batch else _EMPTY,
                    items=tuple(items),
                    messages=Tally(),
                    reports=Tally(),
                )
            if progress is not None:
                progress.advance(tally.considered)
            if ahead is not None:
                yield from ahead.steps()
            else:
                yield from _feedback(vault=vault, keys=keys, request=request)
        finally:
            if ahead is not None:
                ahead.stop()


def _nonzero(tally: Tally) -> Tally:
    counts = {key: n for key, n in tally.counts.items() if n}
    if any(n < 0 for n in counts.values()):
        raise BuildError(f"incremental build: the decisions do not add up ({counts})")
    return Tally(counts=counts)


def _decide_dirty(
    engine: Engine,
    request: BuildRequest,
    source: StoreReader,
    store: Store,
    *,
    base: Base,
    dirty: tuple[str, ...],
    keys: KeyRing,
    precedence: dict[str, int],
) -> tuple[Tally, Tally, Fresh]:
    """The dirty conversations decided as the base decided them (tally only) and now."""
    if not dirty:
        empty = pa.Table.from_batches([], schema=RECORD_SCHEMA)
        return Tally(), Tally(), Fresh(records=empty, conversations=[], items=[])
    workdir = request.workdir
    then = dataclasses.replace(
        request,
        as_of=base.build.as_of,
        conversations=dirty,
        watermark=base.watermark,
        tally_only=True,
        workdir=None if workdir is None else _subdir(workdir, "since-base"),
    )
    before = _tally_of(engine, then, source, store)
    current = dataclasses.replace(
        request,
        conversations=dirty,
        workdir=None if workdir is None else _subdir(workdir, "since-now"),
    )
    fresh, now = _fresh(engine, current, source, store, keys=keys, precedence=precedence)
    return before, now, fresh


def _subdir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(exist_ok=True)
    return path
