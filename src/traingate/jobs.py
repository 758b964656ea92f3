"""Dataset builds as background jobs, for the HTTP API and the admin console.

A ``BuildJobs`` registry belongs to one app instance (never a module global). Each job runs
``Traingate.build_dataset`` on a worker thread with its own ``Traingate`` (its own database
connection), into ``<datasets_dir>/<job_id>``; its status, progress and, once done, manifest
are kept in memory. Completed builds are also in the store (lineage's ``builds`` table), so
``recorded_build`` answers for builds of other processes or of before a restart.
"""

from __future__ import annotations

import json
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from traingate.app import Traingate
from traingate.build.lineage import BuildRow
from traingate.errors import NotFoundError, TraingateError
from traingate.settings import Settings
from traingate.store.db import Database
from traingate.timeutil import format_instant, now_micros

__all__ = ["BuildJob", "BuildJobs", "recorded_build", "recorded_builds"]

Status = Literal["queued", "running", "succeeded", "failed"]
_BUILD_COLUMNS = (
    "build_id, built_at, purpose, as_of, policy_id, policy_sha256, engine, format, path,"
    " manifest_sha256, records, messages"
)


def _time(micros: int | None) -> str | None:
    return None if micros is None else format_instant(micros)


@dataclass(slots=True)
class BuildJob:
    """One build job. Mutated only by its worker, under the registry's lock."""

    job_id: str
    purpose: str
    as_of: int
    format: str
    engine: str
    out: Path
    created_at: int
    status: Status = "queued"
    started_at: int | None = None
    finished_at: int | None = None
    messages_total: int | None = None
    messages_done: int = 0
    build_id: str | None = None
    manifest: dict[str, Any] | None = field(default=None, repr=False)
    error: str | None = None
    actor: str = "system"  # who asked for it, as the audit log names them

    def to_dict(self) -> dict[str, Any]:
        total = self.messages_total
        fraction = 1.0 if self.status == "succeeded" else None
        if fraction is None and total:
            fraction = min(1.0, self.messages_done / total)
        return {
            "job_id": self.job_id,
            "build_id": self.build_id,
            "status": self.status,
            "purpose": self.purpose,
            "as_of": format_instant(self.as_of),
            "format": self.format,
            "engine": self.engine,
            "path": str(self.out),
            "created_at": format_instant(self.created_at),
            "started_at": _time(self.started_at),
            "finished_at": _time(self.finished_at),
            "progress": {
                "messages_done": self.messages_done,
                "messages_total": total,
                "fraction": fraction,
            },
            "error": self.error,
            "manifest": self.manifest,
        }


class _JobProgress:
    """The builder's ``Progress``, writing into a job."""

    def __init__(self, job: BuildJob, lock: threading.Lock) -> None:
        self.job = job
        self.lock = lock

    def start(self, total: int) -> None:
        with self.lock:
            self.job.messages_total = total

    def advance(self, messages: int) -> None:
        with self.lock:
            self.job.messages_done += messages


class BuildJobs:
    """Background builds of one app: at most ``workers`` at a time, the rest queued."""

    def __init__(self, *, settings: Settings, datasets_dir: Path, workers: int = 1) -> None:
        self.settings = settings
        self.datasets_dir = datasets_dir
        from traingate.build.staging import remove_all_leftovers

        remove_all_leftovers(datasets_dir)  # at start-up: what killed builds left
        self._lock = threading.Lock()
        self._jobs: dict[str, BuildJob] = {}
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tg-build")

    def submit(
        self,
        *,
        tg: Traingate,
        purpose: str,
        as_of: int | None,
        format: str,
        engine: str,
        actor: str = "system",
    ) -> BuildJob:
        """Queue a build; what can be checked at once (purpose, format, engine) raises here."""
        from traingate.build.engines import engine_named
        from traingate.build.writer import as_format

        tg.policy.require_purpose(purpose)
        as_format(format)
        engine_named(engine)
        job_id = f"job-{secrets.token_hex(8)}"
        job = BuildJob(
            job_id=job_id,
            purpose=purpose,
            as_of=now_micros() if as_of is None else as_of,
            format=format,
            engine=engine,
            out=(self.datasets_dir / job_id).absolute(),
            created_at=now_micros(),
            actor=actor,
        )
        with self._lock:
            self._jobs[job_id] = job
        self._executor.submit(self._run, job)
        return job

    def _run(self, job: BuildJob) -> None:
        with self._lock:
            job.status, job.started_at = "running", now_micros()
        try:
            with Traingate.open(self.settings) as tg:
                result = tg.build_dataset(
                    purpose=job.purpose,
                    out=job.out,
                    as_of=job.as_of,
                    format=job.format,
                    engine=job.engine,
                    progress=_JobProgress(job, self._lock),
                    actor=job.actor,
                )
        except TraingateError as exc:
            self._finish(job, error=str(exc))
        except Exception as exc:  # a worker must record every failure, not lose it
            self._finish(job, error=f"internal error: {type(exc).__name__}: {exc}")
        else:
            with self._lock:
                job.build_id, job.manifest = result.build_id, result.manifest
            self._finish(job, error=None)

    def _finish(self, job: BuildJob, *, error: str | None) -> None:
        with self._lock:
            job.status = "failed" if error else "succeeded"
            job.error = error
            job.finished_at = now_micros()

    def get(self, job_id: str) -> dict[str, Any] | None:
        """A job's state (a copy), by job id or by the build id it produced."""
        with self._lock:
            job = self._jobs.get(job_id) or next(
                (j for j in self._jobs.values() if j.build_id == job_id), None
            )
            return None if job is None else job.to_dict()

    def list(self) -> list[dict[str, Any]]:
        """Every job of this app, newest first."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)
            return [j.to_dict() for j in jobs]

    def shutdown(self, *, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)


def _manifest(path: str) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def recorded_builds(db: Database, *, limit: int = 100) -> list[dict[str, Any]]:
    """Completed builds the store records (lineage), newest first, without manifests."""
    rows = db.execute(
        f"SELECT {_BUILD_COLUMNS} FROM builds WHERE pending_scratch IS NULL"
        " ORDER BY built_at DESC, build_id LIMIT ?",
        (limit,),
    )
    return [BuildRow(*row).to_dict() for row in rows]


def recorded_build(db: Database, build_id: str) -> dict[str, Any]:
    """A completed build with its manifest (None when its directory is gone)."""
    rows = db.execute(
        f"SELECT {_BUILD_COLUMNS} FROM builds WHERE build_id = ? AND pending_scratch IS NULL",
        (build_id,),
    )
    if not rows:
        raise NotFoundError(f"no build or build job {build_id!r}")
    build = BuildRow(*rows[0])
    return {
        **build.to_dict(),
        "status": "succeeded",
        "progress": {"messages_done": None, "messages_total": None, "fraction": 1.0},
        "manifest": _manifest(build.path),
    }
