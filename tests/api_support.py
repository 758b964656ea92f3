"""Helpers of the API tests: an app on a test store, with a client and credentials."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.factories import Events
from traingate._server import create_app
from traingate._settings import Settings

T = Events.t


@dataclass
class Api:
    """A test client plus a way to mint credentials against the app's own store."""

    client: TestClient
    settings: Settings
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, role: str) -> str:
        if role not in self.tokens:
            with self.client.app.state.traingate_pool.lease() as tg:  # type: ignore[attr-defined]
                self.tokens[role] = tg.access.create_token(role=role, name=f"test-{role}").token
        return self.tokens[role]

    def as_role(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role)}"}

    def session(self, account_id: str, *, ttl_seconds: int | None = None) -> str:
        body: dict[str, Any] = {"account_id": account_id}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        done = self.client.post("/v1/sessions", json=body, headers=self.as_role("ingest"))
        assert done.status_code == 201, done.text
        session: str = done.json()["session"]
        return session

    def as_user(self, account_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session(account_id)}"}

    def ingest(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        done = self.client.post("/v1/events", json=events, headers=self.as_role("ingest"))
        assert done.status_code == 200, done.text
        summary: dict[str, Any] = done.json()
        return summary


def user_report(event: dict[str, Any]) -> dict[str, Any]:
    """A feedback.submitted event as an end user sends it: without the event_id, feedback_id
    and time that the server assigns to a session's report."""
    return {k: v for k, v in event.items() if k not in ("event_id", "feedback_id", "at")}


@contextlib.contextmanager
def running_api(settings: Settings, datasets_dir: Path) -> Iterator[Api]:
    app = create_app(settings=settings, datasets_dir=datasets_dir, pool_size=2)
    with TestClient(app) as client:
        yield Api(client=client, settings=settings)


def history(e: Events) -> list[dict[str, Any]]:
    """Two consumer accounts: ``a`` opted in with conversation ``c`` (m1 user, m2 assistant),
    ``b`` not opted in with conversation ``d``; one commercial account ``t`` of org ``o``."""
    return [
        e.account("a", T(0)),
        e.consent("a", T(1), True),
        e.conversation("c", "a", T(1), title="Trip plans"),
        e.message("m1", "c", "a", T(2), content="write to me at a@example.com"),
        e.message("m2", "c", "a", T(3), role="assistant", content="sure"),
        e.account("b", T(0)),
        e.conversation("d", "b", T(1)),
        e.message("n1", "d", "b", T(2)),
        e.message("n2", "d", "b", T(3), role="assistant"),
        e.account("t", T(0), plan="team", organization_id="o"),
        e.consent("o", T(1), True, scope="organization", source="development_partner_program"),
        e.message("t1", "x", "t", T(2)),
    ]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server process of a test)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_serving(
    base: str, server: subprocess.Popen[Any], *, seconds: float = 30
) -> httpx.Response:
    """Poll ``base``'s OpenAPI document until the server process answers; its response.
    Raises the last connection error when ``server`` exits or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    # One client for every poll: a new one sets up TLS (~46 ms of CPU, measured, taken from
    # the server starting beside it) each time.
    with httpx.Client(timeout=2) as client:
        while True:
            try:
                return client.get(f"{base}/openapi.json")
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
