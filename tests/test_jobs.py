"""Build jobs in the store (issue 20): every app and every ``traingate serve`` process of one
store answers for every job, with its progress; a process killed mid-build leaves its job
failed with the reason at the next start; a restart loses no job. SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_support import Api, history, running_api
from tests.factories import Events
from tests.support import _population, _server
from traingate._api.jobs import BuildJobs, Owner, job_dict, process_identity, stopped
from traingate._core.timeutil import now_micros, parse_instant
from traingate._datasets.progress import Progress
from traingate._facade import Traingate
from traingate._facade.datasets import Datasets
from traingate._settings import Settings
from traingate._store import jobs as stored

T = Events.t
SECOND = 1_000_000
LEASE = 60 * SECOND


def _until(
    get: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        body = get()
        if done(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.02)


def _job(api: Api, key: str) -> Callable[[], dict[str, Any]]:
    def get() -> dict[str, Any]:
        answer = api.client.get(f"/v1/datasets/{key}", headers=api.as_role("analyst"))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    return get


class _Gate:
    """A build's progress that holds the build after its first batch until released."""

    def __init__(self, inner: Progress, reached: threading.Event, release: threading.Event):
        self.inner, self.reached, self.release = inner, reached, release

    def start(self, total: int) -> None:
        self.inner.start(total)

    def advance(self, messages: int) -> None:
        self.inner.advance(messages)
        self.reached.set()
        assert self.release.wait(120)


Gate = tuple[threading.Event, threading.Event]


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Gate:
    """Builds that stop after their first batch (``reached``) until ``release`` is set: the
    real build, holding on to its progress."""
    reached, release = threading.Event(), threading.Event()
    build = Datasets.build

    def gated(self: Datasets, *, progress: Progress, **kwargs: Any) -> Any:
        return build(self, progress=_Gate(progress, reached, release), **kwargs)

    monkeypatch.setattr(Datasets, "build", gated)
    return reached, release


def test_two_apps_on_one_store_answer_for_each_others_jobs(
    settings: Settings, tmp_path: Path, ev: Events, gate: Gate
) -> None:
    reached, release = gate
    with running_api(settings, tmp_path / "a") as a, running_api(settings, tmp_path / "b") as b:
        a.ingest(history(ev))
        started = a.client.post(
            "/v1/datasets",
            json={"purpose": "model_training", "as_of": T(9), "format": "jsonl"},
            headers=a.as_role("analyst"),
        )
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        assert reached.wait(120)
        # B sees A's job running, with the progress A's heartbeat wrote (about once a second)
        seen = _until(_job(b, job_id), lambda j: j["progress"]["messages_done"] > 0)
        assert seen["status"] == "running"
        assert seen["progress"]["messages_total"] >= seen["progress"]["messages_done"]
        assert seen["runner"] == {"host": socket.gethostname(), "pid": os.getpid()}
        assert seen["requested_by"] == "analyst"
        listed = b.client.get("/v1/datasets", headers=b.as_role("analyst")).json()["jobs"]
        assert [(j["job_id"], j["status"]) for j in listed] == [(job_id, "running")]
        console = {"Cookie": f"traingate_admin={b.token('analyst')}"}
        status = b.client.get(f"/admin/builds/{job_id}/status", headers=console).json()
        assert (status["status"], status["progress"]) == ("running", seen["progress"])

        release.set()
        done = _until(_job(b, job_id), lambda j: j["status"] != "running")
        assert done["status"] == "succeeded", done["error"]
        assert Path(done["path"]).parent == (tmp_path / "a").absolute()
        assert done["manifest"] == json.loads((Path(done["path"]) / "manifest.json").read_text())
        assert done["progress"]["messages_done"] == done["progress"]["messages_total"] > 0
        assert _job(b, done["build_id"])() == done
        b.client.cookies.clear()
        page = b.client.get("/admin/builds", headers=console)
        assert page.status_code == 200 and job_id in page.text
        b.client.cookies.clear()
        page = b.client.get(f"/admin/builds/{job_id}", headers=console)
        assert page.status_code == 200 and done["build_id"] in page.text
        assert f"{socket.gethostname()}</code>, pid {os.getpid()}" in page.text
    # neither app runs now: a new one finds the job as it ended
    with running_api(settings, tmp_path / "c") as c:
        assert _job(c, job_id)() == done
        assert [
            j["job_id"]
            for j in c.client.get("/v1/datasets", headers=c.as_role("analyst")).json()["jobs"]
        ] == [job_id]


def test_a_stopping_app_finishes_its_running_build_and_fails_its_queued_ones(
    settings: Settings, tmp_path: Path, ev: Events, gate: Gate
) -> None:
    reached, release = gate
    with running_api(settings, tmp_path / "a") as a:  # one build at a time
        a.ingest(history(ev))
        body = {"purpose": "model_training", "as_of": T(9)}
        running = a.client.post("/v1/datasets", json=body, headers=a.as_role("analyst")).json()
        assert reached.wait(120)
        queued = a.client.post("/v1/datasets", json=body, headers=a.as_role("analyst")).json()
        assert _job(a, queued["job_id"])()["status"] == "queued"
        threading.Timer(0.5, release.set).start()  # once the app is stopping
    with Traingate.open(settings) as tg:
        rows = {
            key: stored.job(tg.store.db, job["job_id"])
            for key, job in (("running", running), ("queued", queued))
        }
    assert rows["running"] and (rows["running"].state, rows["running"].error) == ("succeeded", None)
    assert rows["queued"] and (rows["queued"].state, rows["queued"].error) == (
        "failed",
        "the server stopped before the build started",
    )


def test_progress_is_written_by_the_heartbeat_not_per_batch(
    settings: Settings, tmp_path: Path, ev: Events, gate: Gate
) -> None:
    """A batch counts in memory; only the heartbeat (here: none until the end) writes it."""
    reached, release = gate
    with Traingate.open(settings) as tg:
        assert tg.events.ingest(json.dumps(e) for e in history(ev)).rejected == 0
        jobs = BuildJobs(settings=settings, datasets_dir=tmp_path / "d", heartbeat_seconds=3600)
        try:
            job = jobs.submit(
                tg=tg,
                purpose="model_training",
                as_of=parse_instant(T(9)),
                format="jsonl",
                engine="duckdb",
                requested_by="analyst",
                actor="system",
            )
            assert reached.wait(120)
            time.sleep(0.5)
            row = stored.job(tg.store.db, job["job_id"])
            assert row and (row.state, row.messages_done, row.messages_total) == (
                "running",
                0,
                None,
            )
            assert jobs.get(tg=tg, key=job["job_id"]) == job_dict(row)
        finally:
            release.set()
            jobs.shutdown()
        row = stored.job(tg.store.db, job["job_id"])
    assert row and row.state == "succeeded"
    assert row.messages_total and row.messages_done == row.messages_total  # written at the end


@pytest.fixture(scope="module")
def ended() -> tuple[int, str]:
    """The pid and identity of a process of this machine that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    identity = process_identity(child.pid)
    child.kill()
    child.wait()
    if identity is None:
        pytest.skip("no /proc here: only the heartbeat tells a process stopped")
    return child.pid, identity


@pytest.fixture(scope="module")
def children() -> Iterator[dict[str, tuple[int, str]]]:
    """Pids and identities of a running child process and of a killed one not yet reaped."""
    live, zombie = (
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) for _ in "lz"
    )
    try:
        found = {"live": live.pid, "zombie": zombie.pid}
        identities = {name: process_identity(pid) for name, pid in found.items()}
        zombie.kill()  # not waited for: a zombie until the end
        deadline = time.monotonic() + 30
        while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield {name: (found[name], str(identities[name])) for name in found}
    finally:
        for child in (live, zombie):
            child.kill()
            child.wait()


def _row(**changes: Any) -> stored.JobRow:
    now = now_micros()
    row = stored.JobRow(
        job_id=f"job-{now:x}",
        state="running",
        purpose="research",
        as_of=now,
        format="jsonl",
        shape="records",
        engine="duckdb",
        path="/nowhere",
        requested_by="analyst",
        created_at=now,
        started_at=now,
        finished_at=None,
        messages_done=5,
        messages_total=10,
        build_id=None,
        manifest=None,
        error=None,
        owner_host="build-host-2",
        owner_pid=4242,
        owner_process=None,
        owner_token="other-app",
        heartbeat_at=now,
    )
    return dataclasses.replace(row, **changes)


def _me() -> Owner:
    return Owner(
        host=socket.gethostname(),
        pid=os.getpid(),
        process=process_identity(os.getpid()),
        token="me",
    )


@pytest.mark.parametrize(
    ("owner", "beat_ago", "why"),
    [
        ("this app", 10 * LEASE, None),  # its own jobs: it runs them
        ("this process, another app", 0, None),
        ("this process, another app", LEASE + SECOND, "has not been heard from since"),
        ("an ended process here", 0, "ended"),
        ("a killed process here, not yet reaped", 0, "ended"),
        ("a live process here", 0, None),
        ("a live process here", LEASE + SECOND, "has not been heard from since"),
        ("another process here under an ended one's pid", 0, "ended"),
        ("another machine", LEASE - SECOND, None),
        ("another machine", LEASE + SECOND, "has not been heard from since"),
        ("unknown process here", 0, None),  # /proc told nothing: the heartbeat decides
        ("unknown process here", LEASE + SECOND, "has not been heard from since"),
    ],
)
def test_when_a_jobs_process_has_stopped(
    ended: tuple[int, str],
    children: dict[str, tuple[int, str]],
    owner: str,
    beat_ago: int,
    why: str | None,
) -> None:
    me, now = _me(), now_micros()
    pid, identity = ended
    (live, live_identity), (zombie, zombie_identity) = children["live"], children["zombie"]
    owners: dict[str, dict[str, Any]] = {
        "this app": {"owner_token": me.token, "owner_pid": me.pid, "owner_process": me.process},
        "this process, another app": {"owner_pid": me.pid, "owner_process": me.process},
        "an ended process here": {"owner_pid": pid, "owner_process": identity},
        "a killed process here, not yet reaped": {
            "owner_pid": zombie,
            "owner_process": zombie_identity,
        },
        "a live process here": {"owner_pid": live, "owner_process": live_identity},
        "another process here under an ended one's pid": {
            "owner_pid": live,  # the same pid, started at another time: not the same process
            "owner_process": f"{live_identity.rsplit('/', 1)[0]}/1",
        },
        "another machine": {"owner_process": "other-boot/1/2"},
        "unknown process here": {"owner_pid": pid},
    }
    row = _row(heartbeat_at=now - beat_ago, **owners[owner])
    reason = stopped(row, me=me, now=now, lease_micros=LEASE)
    if why is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith("the process running it stopped (")
        assert why in reason and f"pid {row.owner_pid} on {row.owner_host}" in reason


def test_a_starting_app_fails_the_jobs_of_stopped_processes(
    settings: Settings, tmp_path: Path, ended: tuple[int, str]
) -> None:
    pid, identity = ended
    now = now_micros()
    rows = {
        "silent": _row(job_id="job-silent", heartbeat_at=now - 2 * LEASE),
        "ended": _row(job_id="job-ended", owner_pid=pid, owner_process=identity, state="queued"),
        "alive": _row(job_id="job-alive", heartbeat_at=now + 3600 * SECOND),
        "done": _row(job_id="job-done", state="succeeded", heartbeat_at=now - 2 * LEASE),
    }
    with Traingate.open(settings) as tg:
        for row in rows.values():
            stored.insert_job(tg.store.db, row)
    with running_api(settings, tmp_path / "datasets") as api:
        with Traingate.open(settings) as tg:  # as the start left them, before any listing
            after = {name: stored.job(tg.store.db, row.job_id) for name, row in rows.items()}
        assert {name: row.state for name, row in after.items() if row} == {
            "silent": "failed",
            "ended": "failed",
            "alive": "running",
            "done": "succeeded",
        }
        assert (
            after["silent"]
            and after["silent"].error
            and "not been heard from" in after["silent"].error
        )
        assert after["ended"] and after["ended"].error == (
            f"the process running it stopped (pid {pid} on build-host-2 ended)"
        )
        listed = api.client.get("/v1/datasets", headers=api.as_role("analyst")).json()["jobs"]
        assert {j["job_id"]: j["status"] for j in listed} == {
            "job-silent": "failed",
            "job-ended": "failed",
            "job-alive": "running",
            "job-done": "succeeded",
        }


# -- real processes ----------------------------------------------------------------------------


def _http(http: httpx.Client, base: str, token: str) -> Callable[..., dict[str, Any]]:
    """The datasets API of the server at ``base``, through ``http`` (one client for the
    polling: a new client sets up TLS, ~46 ms of CPU, every time)."""

    def call(key: str | None = None, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url, auth = f"{base}/v1/datasets" + (f"/{key}" if key else ""), f"Bearer {token}"
        if body is None:
            answer = http.get(url, headers={"Authorization": auth})
        else:
            answer = http.post(url, json=body, headers={"Authorization": auth})
        assert answer.status_code in (200, 202), answer.text
        result: dict[str, Any] = answer.json()
        return result

    return call


def test_a_killed_server_leaves_its_job_failed_and_a_restart_loses_none(
    settings: Settings, tmp_path: Path
) -> None:
    """Two ``traingate serve`` processes of one store: B answers for A's jobs; A is killed
    (SIGKILL) mid-build; A restarted marks its job failed with the reason, before anyone lists
    it; both list every job."""
    with Traingate.open(settings) as tg:
        assert tg.events.ingest(_population(800, 20), batch_size=20_000).rejected == 0
        analyst = tg.access.create_token(role="analyst").token
    build = {"purpose": "model_training", "as_of": "2024-06-01T00:00:00Z"}
    with (
        _server(settings, tmp_path / "a") as (a, base_a),
        _server(settings, tmp_path / "b") as (
            _,
            base_b,
        ),
        httpx.Client(timeout=30) as http,
    ):
        on_a, on_b = _http(http, base_a, analyst), _http(http, base_b, analyst)
        first = on_a(body=build)["job_id"]
        finished = _until(lambda: on_b(first), lambda j: j["status"] == "succeeded")
        assert finished["runner"]["pid"] == a.pid and finished["manifest"]["counts"]["records"]
        for _attempt in range(5):
            job_id = on_a(body=build)["job_id"]
            _until(lambda: on_b(job_id), lambda j: j["status"] != "queued")  # noqa: B023
            a.send_signal(signal.SIGSTOP)
            if on_b(job_id)["status"] == "running":  # A is stopped mid-build: kill it
                break
            a.send_signal(signal.SIGCONT)  # it finished first: again
        else:
            pytest.fail("five builds finished before they could be stopped")
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
        with _server(settings, tmp_path / "a") as (a2, base_a2):
            with Traingate.open(settings) as tg:  # as A's restart left it, before any listing
                row = stored.job(tg.store.db, job_id)
            reason = f"the process running it stopped (pid {a.pid} on {socket.gethostname()} ended)"
            assert row is not None and (row.state, row.error) == ("failed", reason)
            for on in (_http(http, base_a2, analyst), on_b):
                jobs = {j["job_id"]: j for j in on()["jobs"]}
                assert jobs[first] == finished and jobs[job_id]["error"] == reason
                assert jobs[job_id]["status"] == "failed" and jobs[job_id]["manifest"] is None
                assert len(jobs) == _attempt + 2  # every job started, none lost
            datasets = tmp_path / "a" / "datasets"
            hidden = [p.name for p in datasets.iterdir() if p.name.startswith(".job-")]
            assert hidden == [], "the killed build's working directories are left"
            assert a2.poll() is None
