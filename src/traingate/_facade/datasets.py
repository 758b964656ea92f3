"""``tg.datasets``: dataset builds, their verification and lineage, the Parquet lake, and the
policies in force with their diff (docs/builds.md, docs/lake.md, docs/policy.md).

This module imports the build modules (DuckDB, Arrow) at its top: ``Traingate`` loads it on
the first use of ``tg.datasets``, so that ingest and the pages do not pay for them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traingate._audit.actions import SYSTEM
from traingate._core.policy import Policy, load_policy_set
from traingate._core.timeutil import format_instant, now_micros
from traingate._datasets.builder import BuildResult, build_dataset
from traingate._datasets.diff import PolicyDiff, diff_policies
from traingate._datasets.engines import engine_named
from traingate._datasets.engines.base import BuildRequest
from traingate._datasets.incremental import Since, load_base
from traingate._datasets.lineage import (
    BuildRow,
    Lineage,
    conversation_lineage,
    receipt_record_key,
    recorded_build,
    recorded_builds,
    report_lineage,
    settle_builds,
)
from traingate._datasets.openlineage_emit import open_build_lineage
from traingate._datasets.progress import Progress
from traingate._datasets.shapes import as_shape
from traingate._datasets.verify import Verification, verify_dataset
from traingate._datasets.writer import as_format
from traingate._errors import BuildError, ConfigError, PolicyError
from traingate._facade.area import Area

if TYPE_CHECKING:
    from traingate._datasets.lake import LakeExport

__all__ = ["Datasets"]


class Datasets(Area):
    # -- builds (docs/builds.md) ---------------------------------------------------------------

    def build(
        self,
        *,
        purpose: str,
        out: Path,
        as_of: int | None = None,
        format: str = "parquet",
        engine: str = "duckdb",
        progress: Progress | None = None,
        actor: str = SYSTEM,
        messages: str | None = None,
        spark_master: str | None = None,
        shape: str = "records",
        since: str | None = None,
    ) -> BuildResult:
        """Build the dataset of everything ``purpose`` may use as of ``as_of`` (default now)
        into the new directory ``out``: records, signed manifest, lineage, then its audit
        entry. BuildError when ``out`` exists. ``messages`` reads the messages from a lake
        (``parquet:PATH``, docs/lake.md) instead of the store; ``spark_master`` is the master
        of ``engine="spark"``; ``shape`` the rows' shape (_datasets/shapes.py); ``since`` the id of
        an earlier build to start from (an incremental build: _datasets/incremental.py).
        A writer: it settles builds left pending first."""
        tg = self._tg
        tg.policies.require_purpose(purpose)
        source = None
        if messages is not None:  # only then: the lake module imports pyarrow.dataset
            from traingate._datasets.lake import message_source

            source = message_source(messages)
        if source is not None and engine == "scalar":
            raise BuildError("the scalar engine reads the store's messages only; use duckdb")
        if since is not None and (engine != "duckdb" or source is not None):
            raise BuildError("--since builds with the duckdb engine from the store only")
        request = BuildRequest(
            policy=tg.policies,
            purpose=purpose,
            as_of=now_micros() if as_of is None else as_of,
            messages=source,
        )
        self.settle()

        incremental = None
        if since is not None:
            base = load_base(
                tg.store.db, build_id=since, request=request, signing_key=tg.keys.signing_key
            )
            incremental = Since(base)

        def audit(result: BuildResult) -> None:
            details = _build_details(result)
            if source is not None:
                details["messages"] = source.name
            if since is not None:
                details["since"] = since
            tg.audit.record("dataset.build", actor=actor, details=details)

        lineage = open_build_lineage(  # None unless OpenLineage is configured (docs/openlineage.md)
            db=tg.store.db,
            policies=tg.policies,
            purpose=purpose,
            as_of=request.as_of,
            engine=engine,
            format=format,
            out=out,
            lake=None if source is None else source.root,
        )
        if lineage is not None:
            lineage.start()
        try:
            try:
                result = build_dataset(
                    store=tg.store,
                    vault=tg.vault,
                    keys=tg.keys,
                    request=request,
                    engine=engine_named(engine, spark_master=spark_master),
                    out=out,
                    format=as_format(format),
                    shape=as_shape(shape),
                    progress=progress,
                    on_complete=audit,
                    since=incremental,
                )
            except OSError as exc:  # --out where nothing may be written (/proc/x, read-only)
                where = exc.filename if exc.filename is not None else out
                raise BuildError(
                    f"cannot write the dataset {out}: {exc.strerror or exc} ({where})"
                ) from exc
        except BaseException as exc:  # FAIL names the error the caller gets, unchanged
            if lineage is not None:
                lineage.fail(exc)
            raise
        if lineage is not None:
            lineage.complete(result)
        return result

    def settle(self) -> None:
        """Settle the lineage of builds killed between recording it and completing it
        (``_datasets.lineage.settle_builds``): a completed one gets its ``dataset.build``
        audit entry then, marked ``settled``. Runs when the facade is opened (the CLI, each
        Traingate of ``serve``'s pool and of each build job) and before a build; readers of
        lineage skip a pending build and never write. Cheap when there is nothing to settle."""
        tg = self._tg
        if not tg.store.has_pending_builds():
            return

        def audit(build: BuildRow) -> None:
            manifest = json.loads((Path(build.path) / "manifest.json").read_text("utf-8"))
            result = BuildResult(build_id=build.build_id, path=Path(build.path), manifest=manifest)
            details = {**_build_details(result), "settled": True}
            tg.audit.record("dataset.build", actor=SYSTEM, details=details)

        settle_builds(tg.store.db, on_complete=audit)

    def verify(self, *, path: Path) -> Verification:
        """Recompute a dataset's files, counts and signature against its manifest."""
        return verify_dataset(path, signing_key=self._tg.keys.signing_key)

    def lineage(self, *, conversation_id: str | None = None, receipt: str | None = None) -> Lineage:
        """The builds holding data of a conversation, or of the feedback report of a receipt
        (completed builds: a pending one is not read)."""
        if (conversation_id is None) == (receipt is None):
            raise ConfigError("name exactly one item: a conversation id or a receipt")
        tg = self._tg
        signing_key = tg.keys.signing_key
        if conversation_id is not None:
            return conversation_lineage(
                tg.store.db, signing_key=signing_key, conversation_id=conversation_id
            )
        assert receipt is not None
        record_key = receipt_record_key(tg.keys, receipt)
        return report_lineage(tg.store.db, signing_key=signing_key, record_key=record_key)

    # -- completed builds, for the API and the admin console (docs/api.md) ---------------------

    def recorded_builds(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Completed builds recorded by lineage, newest first (a pending one is not read)."""
        return recorded_builds(self._tg.store.db, limit=limit)

    def recorded_build(self, *, build_id: str) -> dict[str, Any]:
        """One completed build with its manifest. Raises NotFoundError."""
        return recorded_build(self._tg.store.db, build_id)

    # -- the lake (docs/lake.md) ---------------------------------------------------------------

    def export_lake(
        self, *, out: Path, as_of: int | None = None, actor: str = SYSTEM
    ) -> LakeExport:
        """Write the store's messages (those with ``at`` <= ``as_of`` when given) as a Parquet
        lake at the new directory ``out`` (docs/lake.md), atomically; audited."""
        from traingate._datasets.lake import export_lake  # pyarrow.dataset: only when asked

        result = export_lake(db=self._tg.store.db, out=out, as_of=as_of)
        details: dict[str, Any] = {**result.to_dict(), "as_of": None}
        if as_of is not None:
            details["as_of"] = format_instant(as_of)
        self._tg.audit.record("lake.export", actor=actor, details=details)
        return result

    # -- policies in force (docs/policy.md) ----------------------------------------------------

    def policy_show(self, *, name: str | None = None) -> dict[str, Any]:
        """The policies in force, each with its range, bases, exclusions and rules; or one
        policy: an id in force, a bundled id, or a policy file (its range when in force)."""
        policies = self._tg.policies
        ranges = {(r["id"], r["version"]): r for r in policies.ranges()}
        if name is None:
            return {
                "in_force": list(ranges.values()),
                "policies": [_policy_table(p) for p in policies.policies],
            }
        try:
            policy = policies.named(name)
        except PolicyError:
            policy = load_policy_set(name).policies[0]
        in_force = ranges.get((policy.id, policy.version))
        in_force = in_force if in_force and in_force["sha256"] == policy.sha256 else None
        return {**_policy_table(policy), "in_force": in_force}

    def policy_diff(
        self,
        *,
        a: str,
        b: str,
        as_of: int | None = None,
        purposes: Iterable[str] = (),
        engine: str = "duckdb",
        actor: str = SYSTEM,
    ) -> PolicyDiff:
        """Which records of a build as of ``as_of`` (default now) would enter, leave or change
        if the policies ``b`` replaced ``a`` (each a --policy value: ids or files, with
        optional @effective dates), with each changed item's rules on both sides; for
        ``purposes`` (default every purpose both know). Audited: it reads the vault."""
        tg = self._tg
        first, second = load_policy_set(a), load_policy_set(b)
        chosen = list(purposes) or [p for p in first.purposes if p in second.purposes]
        result = diff_policies(
            store=tg.store,
            vault=tg.vault,
            keys=tg.keys,
            engine=engine_named(engine),
            a=first,
            b=second,
            purposes=chosen,
            as_of=now_micros() if as_of is None else as_of,
        )
        tg.audit.record("policy.diff", actor=actor, details=result.summary())
        return result


def _policy_table(policy: Policy) -> dict[str, Any]:
    """A policy as ``policy show`` prints it: every key of its file, parameters that do not
    apply to a basis's kind left out, and the sha256 of the file."""
    return policy.model_dump(mode="json", exclude_none=True)


def _build_details(result: BuildResult) -> dict[str, Any]:
    """A completed build, as its audit entry records it."""
    manifest = result.manifest
    data = (result.path / "manifest.json").read_bytes()
    return {
        "build_id": result.build_id,
        "purpose": manifest["purpose"],
        "as_of": manifest["as_of"],
        "policy": manifest.get("policy"),
        "engine": manifest.get("engine"),
        "record_format": manifest.get("record_format"),
        "path": str(result.path),
        "counts": manifest["counts"],
        "manifest_sha256": hashlib.sha256(data).hexdigest(),
    }
