"""Build jobs in the store (schema migration 13): their rows, their owners' heartbeats, and the
reads the API and the console answer from. SQL only: ``traingate._api.jobs`` runs the jobs and
decides when an owner has stopped.

Every write here is one statement on one job's row (or its owner's rows), outside the store's
write transaction: nothing else reads ``build_jobs``, so a heartbeat never waits for an ingest
batch on PostgreSQL (on SQLite every write takes the database's lock for an instant). The
state moves only forward: ``queued`` -> ``running`` -> ``succeeded`` | ``failed``, each
step conditioned on the row's current state and owner, so two processes never both decide a
job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from typing import Literal

from traingate._store.db import Database

__all__ = [
    "JobRow",
    "JobState",
    "fail_stopped",
    "finish_job",
    "heartbeat",
    "insert_job",
    "job",
    "jobs",
    "live_jobs",
    "start_job",
]

JobState = Literal["queued", "running", "succeeded", "failed"]
_LIVE = "state IN ('queued', 'running')"


@dataclass(frozen=True, slots=True)
class JobRow:
    """One row of ``build_jobs``; the field names are its columns."""

    job_id: str
    state: JobState
    purpose: str
    as_of: int
    format: str
    shape: str  # the rows' shape (_datasets/shapes.py)
    engine: str
    path: str
    requested_by: str  # the caller's role
    created_at: int
    started_at: int | None
    finished_at: int | None
    messages_done: int
    messages_total: int | None
    build_id: str | None
    manifest: str | None  # the signed manifest's JSON, once succeeded
    error: str | None
    owner_host: str
    owner_pid: int
    owner_process: str | None  # boot id / pid namespace / start time of the pid, if known
    owner_token: str
    heartbeat_at: int
    since: str | None = None  # the base build of an incremental build (migration 17)


_COLUMNS = tuple(f.name for f in fields(JobRow))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM build_jobs"


def _rows(db: Database, sql: str, params: Sequence[object] = ()) -> list[JobRow]:
    return [JobRow(*row) for row in db.execute(f"{_SELECT} {sql}", params)]


def insert_job(db: Database, row: JobRow) -> None:
    marks = ", ".join("?" * len(_COLUMNS))
    db.execute(f"INSERT INTO build_jobs ({', '.join(_COLUMNS)}) VALUES ({marks})", astuple(row))


def start_job(db: Database, *, job_id: str, token: str, now: int) -> bool:
    """Queued -> running, by its owner; False when it is no longer queued (marked failed)."""
    started = db.execute(
        "UPDATE build_jobs SET state = 'running', started_at = ?, heartbeat_at = ?"
        " WHERE job_id = ? AND owner_token = ? AND state = 'queued' RETURNING job_id",
        (now, now, job_id, token),
    )
    return bool(started)


def heartbeat(
    db: Database, *, token: str, now: int, progress: Sequence[tuple[str, int, int | None]]
) -> None:
    """The owner is alive: its live jobs' heartbeat and progress (job id, done, total)."""
    db.executemany(
        "UPDATE build_jobs SET heartbeat_at = ?, messages_done = ?, messages_total = ?"
        f" WHERE job_id = ? AND owner_token = ? AND {_LIVE}",
        [(now, done, total, job_id, token) for job_id, done, total in progress],
    )


def finish_job(
    db: Database,
    *,
    job_id: str,
    token: str,
    now: int,
    error: str | None,
    build_id: str | None,
    manifest: str | None,
    progress: tuple[int, int | None],
) -> None:
    """Running -> succeeded (with its build) or failed (with its error), by its owner. The
    owner knows best: a job another process took for stopped (a heartbeat that could not be
    written in time) gets its real outcome."""
    db.execute(
        "UPDATE build_jobs SET state = ?, finished_at = ?, heartbeat_at = ?, error = ?,"
        " build_id = ?, manifest = ?, messages_done = ?, messages_total = ?"
        " WHERE job_id = ? AND owner_token = ?",
        (
            "failed" if error is not None else "succeeded",
            now,
            now,
            error,
            build_id,
            manifest,
            *progress,
            job_id,
            token,
        ),
    )


def live_jobs(db: Database) -> list[JobRow]:
    """Every queued or running job, of every process."""
    return _rows(db, f"WHERE {_LIVE} ORDER BY created_at, job_id")


def fail_stopped(db: Database, *, stopped: Sequence[tuple[JobRow, str]], now: int) -> list[str]:
    """Mark failed, with their reasons, jobs whose owner stopped; a row whose owner beat in
    the meantime, or that finished, is left alone. Returns the job ids marked."""
    marked: list[str] = []
    for row, reason in stopped:
        done = db.execute(
            "UPDATE build_jobs SET state = 'failed', error = ?, finished_at = ?"
            f" WHERE job_id = ? AND owner_token = ? AND heartbeat_at = ? AND {_LIVE}"
            " RETURNING job_id",
            (reason, now, row.job_id, row.owner_token, row.heartbeat_at),
        )
        marked.extend(str(r[0]) for r in done)
    return marked


def job(db: Database, key: str) -> JobRow | None:
    """A job by its id, or by the build id it produced."""
    found = _rows(db, "WHERE job_id = ? OR build_id = ? ORDER BY created_at LIMIT 1", (key, key))
    return found[0] if found else None


def jobs(db: Database, *, limit: int) -> list[JobRow]:
    """The newest jobs of every process, newest first."""
    return _rows(db, "ORDER BY created_at DESC, job_id LIMIT ?", (limit,))
