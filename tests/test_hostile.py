"""Hostile use (issue 19): bounded request bodies read only after authentication, in a real
served process whose memory is watched, and in the app itself route by route."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api_support import Api, history, running_api
from tests.factories import Events
from tests.route_matrix import PUBLIC, is_page, matrix
from traingate.api.body import EVENTS_LIMIT, FEEDBACK_LIMIT, FORM_LIMIT, JSON_LIMIT
from traingate.app import Traingate
from traingate.settings import Settings
from traingate.web.session import csrf_token

T = Events.t
MIB = 1024 * 1024

# The routes that read a body, and their limits (docs/api.md).
BODY_LIMITS: dict[tuple[str, str], int] = {
    ("POST", "/v1/events"): EVENTS_LIMIT,
    ("POST", "/v1/feedback"): FEEDBACK_LIMIT,
    ("POST", "/v1/sessions"): JSON_LIMIT,
    ("POST", "/v1/datasets"): JSON_LIMIT,
    ("POST", "/v1/purge"): JSON_LIMIT,
    ("PUT", "/v1/accounts/{account_id}/consent"): JSON_LIMIT,
    ("POST", "/admin/login"): FORM_LIMIT,
    ("POST", "/admin/logout"): FORM_LIMIT,
    ("POST", "/admin/builds"): FORM_LIMIT,
    ("POST", "/admin/purge"): FORM_LIMIT,
    ("POST", "/logout"): FORM_LIMIT,
    ("POST", "/privacy/consent"): FORM_LIMIT,
    ("POST", "/conversations/{conversation_id}/feedback"): FORM_LIMIT,
    ("POST", "/conversations/{conversation_id}/delete"): FORM_LIMIT,
}


def _limit_text(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit // 1024} KiB"


def _media(path: str) -> str:
    return "application/x-www-form-urlencoded" if is_page(path) else "application/json"


@pytest.fixture
def api(settings: Settings, tmp_path: Path, ev: Events) -> Iterator[Api]:
    with running_api(settings, tmp_path / "datasets") as running:
        running.ingest(history(ev))
        yield running


def _credential(api: Api, allowed: frozenset[str]) -> str:
    for role in ("ingest", "analyst", "privacy_officer"):
        if role in allowed:
            return api.token(role)
    return api.session("a")


def test_every_body_route_answers_401_before_reading_and_413_past_its_limit(
    api: Api, ev: Events
) -> None:
    """Each route that reads a body, with a body one byte over its limit: 401 without a
    credential (the body is never looked at: it is not even JSON), and 413 naming the limit
    with one, whether the length is declared or the body is streamed in chunks."""
    calls = matrix(ev)
    calls[("POST", "/admin/login")] = ("/admin/login", {}, frozenset({"nobody"}))
    for route, limit in BODY_LIMITS.items():
        path, _, allowed = calls[route]
        body = b"x" * (limit + 1)
        headers = {"Content-Type": _media(path)}
        api.client.cookies.clear()
        if route not in PUBLIC:
            anonymous = api.client.request(route[0], path, content=body, headers=headers)
            assert anonymous.status_code == 401, (route, anonymous.text[:200])
        credential = _credential(api, allowed)
        if is_page(path):
            headers["Cookie"] = f"traingate_session={credential}; traingate_admin={credential}"
        else:
            headers["Authorization"] = f"Bearer {credential}"
        for content in (body, iter([body[:1000], body[1000:]])):  # declared, then chunked
            api.client.cookies.clear()
            answer = api.client.request(route[0], path, content=content, headers=headers)
            assert answer.status_code == 413, (route, answer.text[:200])
            assert _limit_text(limit) in answer.text, (route, answer.text[:200])


def test_bodies_within_their_limit_still_work(api: Api, ev: Events) -> None:
    """The limits leave room for what the routes are for: 10,000 events in one request, a
    report with a long comment, a form near 64 KiB."""
    events = [ev.account(f"bulk-{i}", T(0)) for i in range(10_000)]
    body = json.dumps(events).encode()
    assert len(body) < EVENTS_LIMIT
    done = api.client.post(
        "/v1/events",
        content=body,
        headers={**api.as_role("ingest"), "Content-Type": "application/json"},
    )
    assert done.status_code == 200 and done.json()["accepted"] == 10_000
    report = ev.feedback("f-long", "a", "c", "m2", T(5), comment="x" * 500_000)
    sent = api.client.post("/v1/feedback", json=report, headers=api.as_role("ingest"))
    assert sent.status_code == 201, sent.text[:300]
    session = api.session("a")
    api.client.cookies.clear()
    form = {"granted": "true", "csrf": csrf_token(session), "pad": "y" * 60_000}
    toggled = api.client.post(
        "/privacy/consent",
        data=form,
        headers={"Cookie": f"traingate_session={session}"},
        follow_redirects=False,
    )
    assert toggled.status_code == 303


def test_a_bad_body_of_an_unauthenticated_call_is_401(api: Api) -> None:
    """Authentication comes first: a malformed body without a credential is 401, not 422."""
    for method, path in (
        ("POST", "/v1/sessions"),
        ("POST", "/v1/purge"),
        ("POST", "/v1/datasets"),
        ("PUT", "/v1/accounts/a/consent"),
        ("POST", "/v1/events"),
        ("POST", "/v1/feedback"),
    ):
        answer = api.client.request(
            method, path, content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 401, (method, path, answer.text)


def test_forms_refuse_invalid_utf8(api: Api) -> None:
    """A form's bytes, raw or percent-encoded, must be UTF-8: nothing becomes U+FFFD."""
    session = api.session("a")
    for raw in (b"granted=true&csrf=%FF", b"granted=true&csrf=\xff"):
        api.client.cookies.clear()
        answer = api.client.post(
            "/privacy/consent",
            content=raw,
            headers={
                "Cookie": f"traingate_session={session}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        assert answer.status_code == 422, answer.text[:200]
        assert "cannot be read" in answer.text


# -- a served process, watched -------------------------------------------------------------


@dataclass
class Served:
    base: str
    port: int
    pid: int

    def memory(self, field: str) -> int:
        """VmRSS (now) or VmHWM (the peak), in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} for {self.pid}")


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[Served]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")}
    env |= {"TRAINGATE_DB": settings.db_url, "TRAINGATE_KEY_FILE": str(settings.key_file)}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "traingate", "serve", "--port", str(port)),
                *("--datasets-dir", str(tmp_path / "datasets")),
            ],
            env=env,
            stdout=output,
            stderr=output,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{base}/openapi.json", timeout=2)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.05)
            yield Served(base=base, port=port, pid=server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)


def _send_large(
    served: Served, method: str, path: str, headers: dict[str, str], *, total: int, chunked: bool
) -> tuple[int, int]:
    """Send a body of ``total`` bytes of 'x' in 64 KiB pieces, stopping as soon as the server
    answers; (the status, the bytes sent)."""
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{served.port}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    piece = b"x" * 65536
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    sent = 0
    with socket.create_connection(("127.0.0.1", served.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            while sent < total:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(frame)
                sent += len(piece)
            else:
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, sent


def test_large_bodies_to_every_route_leave_the_server_memory_bounded(
    served: Served, settings: Settings, ev: Events
) -> None:
    """800 MB announced (and streamed until the server answers) to every route of the
    route table, without a credential and with an allowed one, then chunked without a
    length: every answer comes early (401 before the body, 413 at the limit, or the route's
    own answer when it reads no body), never a 5xx, and the server's peak RSS grows by less
    than 100 MiB (before issue 19: 262 MB to 1.77 GB for one POST /admin/login)."""
    with Traingate.open(settings) as tg:
        tg.ingest([json.dumps(e) for e in history(ev)])
        roles = ("ingest", "analyst", "privacy_officer")
        tokens = {r: tg.create_token(role=r).token for r in roles}
    with httpx.Client(base_url=served.base, timeout=30) as client:
        sessions = [
            client.post(
                "/v1/sessions",
                json={"account_id": "a"},
                headers={"Authorization": f"Bearer {tokens['ingest']}"},
            ).json()["session"]
            for _ in range(len(matrix(ev)))
        ]
        client.get("/v1/me", headers={"Authorization": f"Bearer {tokens['analyst']}"})
    before = served.memory("VmRSS")
    calls = matrix(ev)
    calls[("POST", "/admin/login")] = ("/admin/login", {}, frozenset({"nobody"}))
    total = 800 * 1000 * 1000
    answers: dict[tuple[str, str, str], int] = {}
    for route, (path, _, allowed) in calls.items():
        method = route[0]
        if route in BODY_LIMITS:
            headers = {"Content-Type": _media(path)}
        else:
            headers = {"Content-Type": "application/octet-stream"}
        status, sent = _send_large(served, method, path, headers, total=total, chunked=False)
        answers[(method, path, "nobody")] = status
        refused = status in (401, 413) or (method == "GET" and status == 303)  # to the login
        assert refused or (route in PUBLIC and 0 < status < 500), (route, status)
        assert sent < 64 * MIB, (route, sent)
        if route in PUBLIC or ("user" in allowed and route[1].endswith("delete")):
            continue
        user = "user" in allowed and not any(r in allowed for r in tokens)
        credential = sessions.pop() if user else next(tokens[r] for r in tokens if r in allowed)
        if is_page(path):
            headers["Cookie"] = f"traingate_session={credential}; traingate_admin={credential}"
        else:
            headers["Authorization"] = f"Bearer {credential}"
        for chunked in (False, True):
            status, sent = _send_large(served, method, path, headers, total=total, chunked=chunked)
            answers[(method, path, "chunked" if chunked else "declared")] = status
            assert 0 < status < 500, (route, chunked, status)
            if route in BODY_LIMITS:
                assert status == 413, (route, chunked, status)
                assert sent <= BODY_LIMITS[route] + 64 * MIB, (route, sent)
    peak = served.memory("VmHWM")
    growth = peak - before
    print(f"RSS before {before / MIB:.0f} MiB, peak after {peak / MIB:.0f} MiB")
    assert growth < 100 * MIB, f"RSS {before / MIB:.0f} MiB -> peak {peak / MIB:.0f} MiB"
    assert len(answers) > 2 * len(BODY_LIMITS)


def test_status_of_answers_is_json_with_the_limit(api: Api) -> None:
    """The 413 is the API's one error shape, code ``too_large``."""
    answer = api.client.post(
        "/v1/purge",
        content=b"{" + b" " * JSON_LIMIT + b"}",
        headers={**api.as_role("privacy_officer"), "Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_large"
    assert "16 KiB" in answer.json()["error"]["message"]
