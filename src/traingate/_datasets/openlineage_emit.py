"""Sending a build's OpenLineage events (docs/openlineage.md): the edge around
``_datasets/openlineage.py``.

Off unless OpenLineage is configured the way its own client reads it: ``OPENLINEAGE_URL``,
an ``OPENLINEAGE__TRANSPORT__*`` variable, or an ``openlineage.yml`` (``OPENLINEAGE_CONFIG``,
the working directory, ``~/.openlineage/``); ``OPENLINEAGE_DISABLED=true`` turns it off.
Unconfigured, nothing is imported and nothing is sent. Configured, the ``openlineage-python``
client (the ``lineage`` extra) sends START, then COMPLETE or FAIL, through its transport. A
failure to send is a logged warning: it never fails a build, and never replaces a build's own
error.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import RunEvent

    from traingate._core.policy import PolicySet
    from traingate._datasets.builder import BuildResult
    from traingate._datasets.openlineage import BuildFacts, Inputs
    from traingate._store.db import Database

__all__ = ["BuildLineage", "configured", "open_build_lineage", "output_schema"]

_log = logging.getLogger(__name__)
_CONFIG_FILE = "openlineage.yml"


def configured(
    environ: Mapping[str, str], *, cwd: Path | None = None, home: Path | None = None
) -> bool:
    """Whether OpenLineage's own configuration names a transport (no import, two stats)."""
    if environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OPENLINEAGE_URL") or any(
        key.startswith("OPENLINEAGE__TRANSPORT") for key in environ
    ):
        return True
    where = [Path(environ["OPENLINEAGE_CONFIG"])] if environ.get("OPENLINEAGE_CONFIG") else []
    where.append((cwd or Path.cwd()) / _CONFIG_FILE)
    where.append((home or Path.home()) / ".openlineage" / _CONFIG_FILE)
    return any(path.is_file() for path in where)


def _store_inputs(db: Database) -> Inputs:
    from traingate._datasets.openlineage import postgres_inputs, sqlite_inputs
    from traingate._store.db import SqliteDatabase

    if isinstance(db, SqliteDatabase):
        return sqlite_inputs(main=str(db.path.absolute()), vault=str(db.vault_path.absolute()))
    database, schema = db.execute("SELECT current_database(), current_schema()")[0]
    return postgres_inputs(
        url=db.url, database=str(database), schema=str(schema), vault_prefix=db.vault_prefix
    )


def _now() -> str:
    from traingate._core.timeutil import format_instant, now_micros

    return format_instant(now_micros())


def output_schema(result: BuildResult) -> pa.Schema:
    """The schema of a build's rows: its shape's (the manifest's ``shape``, records when it
    names none; ``_datasets/shapes.py``), or for a shape this traingate does not know, what the
    first file holds."""
    import pyarrow as pa

    from traingate._datasets.shapes import SHAPES, shape_schema

    shape = _shape(result.manifest) or SHAPES[0]
    for known in SHAPES:
        if shape == known:
            return shape_schema(known)
    files = result.manifest.get("files") or []
    if not files:
        return pa.schema([])
    first = result.path / files[0]["path"]
    if first.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(first)
    import pyarrow.json as pj

    return pj.open_json(first).schema


def _shape(manifest: Mapping[str, Any]) -> str | None:
    shape = manifest.get("shape")
    if isinstance(shape, Mapping):
        shape = shape.get("name")
    return shape if isinstance(shape, str) else None


class BuildLineage:
    """One build's run: ``start``, then ``complete`` or ``fail``, then ``close``. Each sends
    one event and only warns when it cannot."""

    def __init__(self, *, client: OpenLineageClient, facts: BuildFacts) -> None:
        self._client = client
        self.facts = facts

    def _send(self, kind: str, make: Callable[[], RunEvent]) -> None:
        try:
            self._client.emit(make())
        except Exception as exc:  # a lineage backend down never fails a build
            _log.warning(
                "OpenLineage: the %s event of the build into %s was not sent: %s",
                kind,
                self.facts.out,
                exc,
            )

    def start(self) -> None:
        from traingate._datasets.openlineage import start_event

        self._send("START", lambda: start_event(self.facts, at=_now()))

    def complete(self, result: BuildResult) -> None:
        from traingate._datasets.openlineage import complete_event

        def make() -> RunEvent:
            data = (result.path / "manifest.json").read_bytes()
            return complete_event(
                self.facts,
                at=_now(),
                build_id=result.build_id,
                manifest=result.manifest,
                manifest_sha256=hashlib.sha256(data).hexdigest(),
                schema=output_schema(result),
            )

        self._send("COMPLETE", make)
        self.close()

    def fail(self, error: BaseException) -> None:
        from traingate._datasets.openlineage import fail_event

        message = str(error) or type(error).__name__
        self._send("FAIL", lambda: fail_event(self.facts, at=_now(), message=message))
        self.close()

    def close(self) -> None:
        try:
            self._client.close(timeout=5.0)
        except Exception as exc:
            _log.warning("OpenLineage: closing the client failed: %s", exc)


def open_build_lineage(
    *,
    db: Database,
    policies: PolicySet,
    purpose: str,
    as_of: int,
    engine: str,
    format: str,
    out: Path,
    lake: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> BuildLineage | None:
    """The run of one build, or None when OpenLineage is not configured (or cannot be set up:
    then a warning says why, and the build goes on without events)."""
    env = os.environ if environ is None else environ
    if not configured(env):
        return None
    try:
        from importlib.metadata import version

        from openlineage.client import OpenLineageClient
        from openlineage.client.uuid import generate_new_uuid

        from traingate._datasets.openlineage import JOB_NAMESPACE, BuildFacts, lake_inputs
    except ImportError as exc:
        _log.warning(
            "OpenLineage is configured but openlineage-python is not installed "
            "(pip install 'traingate[lineage]'); no lineage events are sent: %s",
            exc,
        )
        return None
    try:
        from traingate._core.timeutil import format_instant

        inputs = _store_inputs(db)
        if lake is not None:
            inputs = lake_inputs(inputs, lake=str(lake.absolute()))
        policy = policies.in_force(as_of)
        facts = BuildFacts(
            run_id=str(generate_new_uuid()),
            job_namespace=env.get("OPENLINEAGE_NAMESPACE") or JOB_NAMESPACE,
            purpose=purpose,
            as_of=format_instant(as_of),
            policy_id=policy.id,
            policy_sha256=policy.sha256,
            engine=engine,
            format=format,
            out=str(out.absolute()),
            inputs=inputs,
            version=version("traingate"),
            client_version=version("openlineage-python"),
        )
        client = OpenLineageClient()
    except Exception as exc:
        _log.warning("OpenLineage: cannot set up the client; no lineage events are sent: %s", exc)
        return None
    return BuildLineage(client=client, facts=facts)
