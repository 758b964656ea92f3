"""Dataset builds as background jobs, for the HTTP API and the admin console.

Jobs live in the store (``build_jobs``, schema migration 13; SQL in ``_store/jobs.py``), so
every ``traingate serve`` process of a deployment answers for every job, and a restart loses
none. A process runs the jobs it queued (into its own ``--datasets-dir``), at most ``workers``
at a time, each on a worker thread with its own ``Traingate`` (its own connection). Its
``BuildJobs`` (one per app, never a module global) writes its live jobs' progress and a
heartbeat to the store about once a second (``HEARTBEAT_SECONDS``), not per batch.

A job whose process stopped (killed, crashed, its machine gone) is marked ``failed`` with the
reason, at the start of any process and whenever jobs are read: when its owner is on this
machine and its pid no longer names the same process (``stopped`` compares the pid's boot id,
pid namespace and start time), or, from anywhere, when its owner has not beaten for
``LEASE_SECONDS``. A process that shuts down cleanly fails the jobs it had not started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traingate._core.timeutil import format_instant, now_micros
from traingate._errors import TraingateError
from traingate._settings import Settings
from traingate._store import jobs as stored
from traingate._store.db import Database, connect
from traingate._store.schema import migrate

if TYPE_CHECKING:
    from traingate._facade import Traingate

__all__ = [
    "HEARTBEAT_SECONDS",
    "LEASE_SECONDS",
    "BuildJobs",
    "Owner",
    "job_dict",
    "process_identity",
    "stopped",
]

HEARTBEAT_SECONDS = 1.0  # how often a process writes its live jobs' progress
LEASE_SECONDS = 60.0  # a job whose owner has not beaten for this long is taken for stopped
LIST_LIMIT = 100
_log = logging.getLogger(__name__)


# -- who runs a job, and whether it still runs (pure but for /proc) ---------------------------


@dataclass(frozen=True, slots=True)
class Owner:
    """A process running jobs: host and pid for people, ``process`` to tell whether the pid
    is still the same process, ``token`` to tell this app from another of the same process."""

    host: str
    pid: int
    process: str | None
    token: str


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as file:
            return file.read().strip()
    except (OSError, ValueError):
        return None


def process_identity(pid: int) -> str | None:
    """``boot id/pid namespace/start time`` of the process ``pid`` of this machine, as this
    process sees it; None when no such process runs (a zombie has ended) or where /proc does
    not tell (for this process: the pid check is then skipped)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    stat = _read(f"/proc/{pid}/stat")
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    if boot is None or stat is None:
        return None
    after_name = stat.rsplit(")", 1)[-1].split()  # fields 3 on: the state, ...
    if len(after_name) < 20 or after_name[0] in ("Z", "X"):  # a zombie has ended
        return None
    return f"{boot}/{namespace}/{after_name[19]}"  # field 22 of stat: the start time


def this_process() -> Owner:
    pid = os.getpid()
    return Owner(
        host=socket.gethostname(),
        pid=pid,
        process=process_identity(pid),
        token=secrets.token_hex(12),
    )


def _space(process: str) -> str:
    return process.rsplit("/", 1)[0]


def stopped(row: stored.JobRow, *, me: Owner, now: int, lease_micros: int) -> str | None:
    """Why a live job's process has stopped (the job's error), or None while it may run."""
    if row.owner_token == me.token:
        return None
    who = f"pid {row.owner_pid} on {row.owner_host}"
    if (
        row.owner_process is not None
        and me.process is not None
        and _space(row.owner_process) == _space(me.process)
        and process_identity(row.owner_pid) != row.owner_process
    ):
        return f"the process running it stopped ({who} ended)"
    if now - row.heartbeat_at > lease_micros:
        since = format_instant(row.heartbeat_at)
        return f"the process running it stopped ({who} has not been heard from since {since})"
    return None


# -- a job as the API and the console show it --------------------------------------------------


def _time(micros: int | None) -> str | None:
    return None if micros is None else format_instant(micros)


def job_dict(row: stored.JobRow) -> dict[str, Any]:
    total = row.messages_total
    fraction = 1.0 if row.state == "succeeded" else None
    if fraction is None and total:
        fraction = min(1.0, row.messages_done / total)
    return {
        "job_id": row.job_id,
        "build_id": row.build_id,
        "status": row.state,
        "purpose": row.purpose,
        "as_of": format_instant(row.as_of),
        "format": row.format,
        "shape": row.shape,
        "since": row.since,
        "engine": row.engine,
        "path": row.path,
        "requested_by": row.requested_by,
        "runner": {"host": row.owner_host, "pid": row.owner_pid},
        "created_at": format_instant(row.created_at),
        "started_at": _time(row.started_at),
        "finished_at": _time(row.finished_at),
        "progress": {
            "messages_done": row.messages_done,
            "messages_total": total,
            "fraction": fraction,
        },
        "error": row.error,
        "manifest": None if row.manifest is None else json.loads(row.manifest),
    }


# -- this process's jobs -----------------------------------------------------------------------


@dataclass(slots=True)
class _Live:
    """A job this process queued and has not yet recorded as finished."""

    row: stored.JobRow
    actor: str  # who asked for it, as the audit log names it (kept in memory only)
    done: int = 0
    total: int | None = None
    started: bool = False
    outcome: tuple[str | None, str | None, str | None] | None = None  # error, build, manifest


class _JobProgress:
    """The builder's ``Progress``: counters in memory, written by the heartbeat."""

    def __init__(self, live: _Live, lock: threading.Lock) -> None:
        self.live, self.lock = live, lock

    def start(self, total: int) -> None:
        with self.lock:
            self.live.total = total

    def advance(self, messages: int) -> None:
        with self.lock:
            self.live.done += messages


class BuildJobs:
    """The build jobs of one app: its own run here, every process's are read from the store."""

    def __init__(
        self,
        *,
        settings: Settings,
        datasets_dir: Path,
        workers: int = 1,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        from traingate._datasets.staging import remove_all_leftovers

        self.settings = settings
        self.datasets_dir = datasets_dir
        self.owner = this_process()
        self._lease = int(lease_seconds * 1_000_000)
        self._interval = heartbeat_seconds
        remove_all_leftovers(datasets_dir)  # at start-up: what killed builds left
        db = connect(settings.db_url)
        try:
            migrate(db)
            self.reap(db)  # at start-up: the jobs of processes that stopped
        finally:
            db.close()
        self._lock = threading.Lock()  # guards _live and the counters in it
        self._live: dict[str, _Live] = {}
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tg-build")
        # This app's own connection for its job writes and the heartbeat thread: both from its
        # first job on (an app that never builds holds neither).
        self._db: Database | None = None
        self._db_lock = threading.Lock()
        self._stop = threading.Event()
        self._beater = threading.Thread(target=self._beat, name="tg-build-heartbeat", daemon=True)

    @contextlib.contextmanager
    def _writer(self) -> Iterator[Database]:
        """This app's connection for its job writes, one write at a time."""
        with self._db_lock:
            if self._db is None:
                self._db = connect(self.settings.db_url)
            yield self._db

    def reap(self, db: Database) -> list[str]:
        """Mark failed the live jobs whose process stopped; returns their ids."""
        now = now_micros()
        dead = []
        for row in stored.live_jobs(db):
            reason = stopped(row, me=self.owner, now=now, lease_micros=self._lease)
            if reason is not None:
                dead.append((row, reason))
        return stored.fail_stopped(db, stopped=dead, now=now) if dead else []

    def submit(
        self,
        *,
        tg: Traingate,
        purpose: str,
        as_of: int | None,
        format: str,
        engine: str,
        requested_by: str,
        actor: str,
        shape: str = "records",
        since: str | None = None,
    ) -> dict[str, Any]:
        """Queue a build; what can be checked at once (purpose, format, engine) raises here."""
        from traingate._datasets.engines import engine_named
        from traingate._datasets.shapes import as_shape
        from traingate._datasets.writer import as_format

        tg.policy.require_purpose(purpose)
        as_format(format)
        as_shape(shape)
        engine_named(engine)
        job_id = f"job-{secrets.token_hex(8)}"
        now = now_micros()
        row = stored.JobRow(
            job_id=job_id,
            state="queued",
            purpose=purpose,
            as_of=now if as_of is None else as_of,
            format=format,
            shape=shape,
            engine=engine,
            path=str((self.datasets_dir / job_id).absolute()),
            requested_by=requested_by,
            created_at=now,
            started_at=None,
            finished_at=None,
            messages_done=0,
            messages_total=None,
            build_id=None,
            manifest=None,
            error=None,
            owner_host=self.owner.host,
            owner_pid=self.owner.pid,
            owner_process=self.owner.process,
            owner_token=self.owner.token,
            heartbeat_at=now,
            since=since,
        )
        stored.insert_job(tg.store.db, row)
        with self._lock:
            self._live[job_id] = _Live(row=row, actor=actor)
            if self._beater.ident is None and not self._stop.is_set():
                self._beater.start()  # the first job's: it beats until shutdown
        self._executor.submit(self._run, job_id)
        return job_dict(row)

    def _run(self, job_id: str) -> None:
        from traingate._facade import Traingate  # the facade runs the build; jobs are its edge

        live = self._live[job_id]
        try:
            with self._writer() as db:
                started = stored.start_job(
                    db, job_id=job_id, token=self.owner.token, now=now_micros()
                )
        except TraingateError as exc:  # the store is away: the heartbeat records the outcome
            with self._lock:
                live.outcome = (f"the build could not start: {exc}", None, None)
            return
        with self._lock:
            if not started:  # another process took it for stopped
                del self._live[job_id]
                return
            live.started = True
        job = live.row
        try:
            with Traingate.open(self.settings) as tg:
                result = tg.datasets.build(
                    purpose=job.purpose,
                    out=Path(job.path),
                    as_of=job.as_of,
                    format=job.format,
                    shape=job.shape,
                    engine=job.engine,
                    progress=_JobProgress(live, self._lock),
                    actor=live.actor,
                    since=job.since,
                )
        except TraingateError as exc:
            outcome: tuple[str | None, str | None, str | None] = (str(exc), None, None)
        except Exception as exc:  # a worker must record every failure, not lose it
            outcome = (f"internal error: {type(exc).__name__}: {exc}", None, None)
        else:
            outcome = (None, result.build_id, json.dumps(result.manifest))
        with self._lock:
            live.outcome = outcome
        self._record_outcomes()

    def _record_outcomes(self) -> None:
        """Write the finished jobs' outcomes (retried by the heartbeat if the store refuses)."""
        with self._lock:
            finished = [(j, live) for j, live in self._live.items() if live.outcome is not None]
        for job_id, live in finished:
            assert live.outcome is not None
            error, build_id, manifest = live.outcome
            with self._writer() as db:
                stored.finish_job(
                    db,
                    job_id=job_id,
                    token=self.owner.token,
                    now=now_micros(),
                    error=error,
                    build_id=build_id,
                    manifest=manifest,
                    progress=(live.done, live.total),
                )
            with self._lock:
                self._live.pop(job_id, None)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._record_outcomes()
                with self._lock:
                    beats = [(j, live.done, live.total) for j, live in self._live.items()]
                if beats:
                    with self._writer() as db:
                        stored.heartbeat(
                            db, token=self.owner.token, now=now_micros(), progress=beats
                        )
            except TraingateError as exc:  # the store is away: try again at the next beat
                _log.warning("build jobs: cannot write the heartbeat: %s", exc)

    def get(self, *, tg: Traingate, key: str) -> dict[str, Any] | None:
        """A job of any process, by job id or by the build id it produced."""
        self.reap(tg.store.db)
        row = stored.job(tg.store.db, key)
        return None if row is None else job_dict(row)

    def list(self, *, tg: Traingate, limit: int = LIST_LIMIT) -> list[dict[str, Any]]:
        """The newest jobs of every process, newest first."""
        self.reap(tg.store.db)
        return [job_dict(row) for row in stored.jobs(tg.store.db, limit=limit)]

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop: running builds finish (unless not ``wait``), queued ones are failed with the
        reason, and this app's connection closes (when it waited for the builds)."""
        self._executor.shutdown(wait=wait, cancel_futures=True)
        with self._lock:
            self._stop.set()
        if self._beater.is_alive():
            self._beater.join()
        if not wait:  # builds still run and will record their outcomes
            return
        with self._lock:
            for live in self._live.values():
                if live.outcome is None and not live.started:
                    live.outcome = ("the server stopped before the build started", None, None)
        try:
            self._record_outcomes()
        finally:
            with self._db_lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None
