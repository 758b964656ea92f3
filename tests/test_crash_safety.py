"""Crash safety: SIGKILL a dataset build at random points, and the server under ingest load.

- ``traingate dataset build`` is killed 20 times at seeded random moments of a build that
  takes over a second; after each kill there is no DIR (or a whole one that verifies, with its
  lineage), no lineage row of an unfinished build, every lineage file a row names and no
  other, and only hidden working directories, which the next build removes. A clean rerun
  then succeeds, verifies, and leaves nothing else.
- ``traingate serve`` is killed while clients post event batches; after a restart every event
  acknowledged with a 2xx is stored (re-sending it is a duplicate), every batch in flight is
  stored whole or not at all, and the audit chain is intact. SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.budgets import budget
from tests.support import _env, _population, _server
from traingate._datasets.lineage_file import LINEAGE_DIR
from traingate._facade import Traingate
from traingate._settings import Settings

AS_OF = "2024-06-01T00:00:00Z"
KILLS = budget(quick=8, thorough=20)  # builds killed at random moments


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A SQLite store whose model_training build takes over a second (120,000 messages)."""
    root = tmp_path_factory.mktemp("big")
    settings = Settings(
        db_url=f"sqlite:///{root / 'data' / 'traingate.sqlite'}", key_file=root / "keys.json"
    )
    with Traingate.open(settings) as tg:
        summary = tg.events.ingest(_population(5000, 24), batch_size=20_000)
    assert summary.rejected == 0 and summary.accepted == 130_000
    return settings


def _build(settings: Settings, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "traingate", "dataset", "build"),
            *("--purpose", "model_training", "--as-of", AS_OF, "--out", str(out)),
        ],
        env=_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _lineage(settings: Settings) -> dict[str, tuple[str, str]]:
    with Traingate.open(settings) as tg:
        rows = tg.store.db.execute("SELECT build_id, path, manifest_sha256 FROM builds")
        return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}


def _siblings(parent: Path) -> set[str]:
    return {p.name for p in parent.iterdir()}


def _lineage_files_match(settings: Settings, parent: Path) -> None:
    """Every build's lineage file stands with the hash its row recorded, and no other file
    is in the lineage directory."""
    with Traingate.open(settings) as tg:
        rows = tg.store.db.execute("SELECT build_id, lineage_path, lineage_sha256 FROM builds")
    folder = parent / LINEAGE_DIR
    files = {p.name for p in folder.iterdir()} if folder.exists() else set()
    assert files == {f"{build_id}.parquet" for build_id, _, _ in rows}
    for _, path, digest in rows:
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest


def test_killed_builds_leave_no_partial_output_or_lineage(
    big_store: Settings, tmp_path: Path
) -> None:
    out_root = tmp_path / "datasets"
    out_root.mkdir()
    out = out_root / "train"
    started = time.monotonic()
    first = _build(big_store, out_root / "reference")
    assert first.wait(timeout=120) == 0
    duration = time.monotonic() - started
    assert duration > 1.0, f"the build took only {duration:.2f}s: the store is too small"
    reference = _lineage(big_store)
    assert len(reference) == 1
    with Traingate.open(big_store) as tg:
        assert tg.datasets.verify(path=out_root / "reference").ok

    rng = random.Random(20_240_601)
    completed = 0
    known = dict(reference)
    for _ in range(KILLS):
        process = _build(big_store, out)
        time.sleep(rng.uniform(0.05, duration * 1.05))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        lineage = _lineage(big_store)
        new = {k: v for k, v in lineage.items() if k not in known}
        if out.exists():  # it finished before the kill: whole, verified, in lineage
            completed += 1
            with Traingate.open(big_store) as tg:
                assert tg.datasets.verify(path=out).ok
            digest = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
            assert list(new.values()) == [(str(out), digest)]
            out.rename(out_root / f"done-{completed}")
        else:
            assert new == {}, "lineage rows of a build whose output does not exist"
        known = lineage
        _lineage_files_match(big_store, out_root)
        for name in _siblings(out_root) - {"reference", LINEAGE_DIR}:
            assert name.startswith(("done-", ".train.tmp-", ".train.work-")), name
    assert completed < KILLS // 2, "most kills must interrupt a running build"

    final = _build(big_store, out)
    assert final.wait(timeout=120) == 0
    _lineage_files_match(big_store, out_root)
    assert _siblings(out_root) == {"reference", "train", LINEAGE_DIR} | {
        f"done-{n}" for n in range(1, completed + 1)
    }, "the leftovers of killed builds were not removed"
    with Traingate.open(big_store) as tg:
        assert tg.datasets.verify(path=out).ok
        assert tg.audit.verify()["ok"]
        builds = [e for e in tg.audit.log.entries() if e.action == "dataset.build"]
    assert len(builds) == completed + 2  # the reference, the completed ones, the rerun
    assert len(_lineage(big_store)) == completed + 2


# -- the server, killed under ingest load -----------------------------------------------------


def _batch(client: int, number: int) -> list[str]:
    acc, conv = f"load-{client}-{number}", f"conv-{client}-{number}"
    prefix = f"ld-{client}-{number}"
    lines = [
        json.dumps(
            {
                "type": "account.updated",
                "event_id": f"{prefix}-a",
                "at": "2024-01-01T00:00:00Z",
                "account_id": acc,
                "email": f"{acc}@example.com",
                "plan": "free",
                "organization_id": None,
            }
        )
    ]
    for m in range(19):
        lines.append(
            json.dumps(
                {
                    "type": "message.created",
                    "event_id": f"{prefix}-m{m}",
                    "at": f"2024-01-02T00:00:{m:02d}Z",
                    "conversation_id": conv,
                    "message_id": f"{conv}-{m}",
                    "account_id": acc,
                    "role": "user",
                    "content": f"load {client} {number} {m}",
                    "attachments": [],
                }
            )
        )
    return lines


@dataclass
class _Load:
    base: str
    token: str
    stop: threading.Event = field(default_factory=threading.Event)
    acked: list[list[str]] = field(default_factory=list)
    unsure: list[list[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, number: int) -> None:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/x-ndjson",
        }
        with httpx.Client(timeout=10) as http:
            for count in range(2000):  # bounded: the kill ends it long before
                if self.stop.is_set():
                    return
                batch = _batch(number, count)
                try:
                    done = http.post(
                        f"{self.base}/v1/events", content="\n".join(batch), headers=headers
                    )
                except httpx.TransportError:
                    with self.lock:
                        self.unsure.append(batch)
                    return
                with self.lock:
                    if 200 <= done.status_code < 300:
                        self.acked.append(batch)
                    else:
                        self.unsure.append(batch)


def _post(base: str, token: str, lines: list[str]) -> dict[str, Any]:
    done = httpx.post(
        f"{base}/v1/events",
        content="\n".join(lines),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
        timeout=60,
    )
    assert done.status_code == 200, done.text
    summary: dict[str, Any] = done.json()
    return summary


def test_a_killed_server_keeps_every_acknowledged_event(settings: Settings, tmp_path: Path) -> None:
    with Traingate.open(settings) as tg:
        ingest = tg.access.create_token(role="ingest").token
        officer = tg.access.create_token(role="privacy_officer").token
    with _server(settings, tmp_path) as (server, base):
        load = _Load(base=base, token=ingest)
        clients = [threading.Thread(target=load.client, args=(n,)) for n in range(4)]
        for thread in clients:
            thread.start()
        started = time.monotonic()
        while time.monotonic() < started + 20:  # a second of load, and 40 batches at least
            with load.lock:
                if len(load.acked) >= 40 and time.monotonic() > started + 1:
                    break
            time.sleep(0.02)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        load.stop.set()
        for thread in clients:
            thread.join(timeout=30)
    assert len(load.acked) >= 40, "the load did not get going"

    with _server(settings, tmp_path) as (_, base):
        acked = [line for batch in load.acked for line in batch]
        for start in range(0, len(acked), 10_000):
            chunk = acked[start : start + 10_000]
            again = _post(base, ingest, chunk)
            assert (again["accepted"], again["duplicates"]) == (0, len(chunk)), again
        for batch in load.unsure:  # in flight at the kill: all there, or none of it
            again = _post(base, ingest, batch)
            assert (again["accepted"], again["duplicates"]) in ((0, 20), (20, 0)), again
        audit = httpx.get(
            f"{base}/v1/audit/verify", headers={"Authorization": f"Bearer {officer}"}, timeout=30
        ).json()
        assert audit["ok"], audit["problems"]
        assert audit["actions"]["ingest.batch"] >= len(load.acked)


def test_only_the_leftovers_of_dead_builds_are_removed(tmp_path: Path) -> None:
    from traingate._datasets.staging import claim, remove_leftovers

    for name in (".x.work-live", ".x.tmp-live", ".x.work-dead", ".x.tmp-dead", ".x.tmp-lone"):
        (tmp_path / name).mkdir()
    (tmp_path / ".x.tmp-dead" / "part").write_text("half")
    (tmp_path / ".y.tmp-other").mkdir()
    held = claim(tmp_path / ".x.work-live")  # a running build (flock: per open file)
    try:
        removed = remove_leftovers(tmp_path / "x")
    finally:
        held.release()
    assert sorted(p.name for p in removed) == [".x.tmp-dead", ".x.tmp-lone", ".x.work-dead"]
    assert _siblings(tmp_path) == {".x.work-live", ".x.tmp-live", ".y.tmp-other"}
    assert remove_leftovers(tmp_path / "x") != []  # released: now a leftover too
    assert _siblings(tmp_path) == {".y.tmp-other"}
