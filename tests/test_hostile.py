"""Hostile use (issue 19): bounded request bodies read only after authentication, in a real
served process whose memory is watched, and in the app itself route by route."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from tests.api_support import Api, history, running_api, wait_until_serving
from tests.factories import Events, jsonl
from tests.route_matrix import PUBLIC, is_page, matrix
from traingate._access.credentials import _new_id
from traingate._api.body import EVENTS_LIMIT, FEEDBACK_LIMIT, FORM_LIMIT, JSON_LIMIT
from traingate._api.paths import path_segment
from traingate._audit.actions import DayCounts, subject_key
from traingate._cli import cli
from traingate._core.policy import bundled_policy_ids
from traingate._core.timeutil import (
    DAY,
    MAX_INSTANT,
    MIN_INSTANT,
    format_instant,
    now_micros,
    parse_instant,
    utc_date,
)
from traingate._facade import Traingate
from traingate._settings import Settings
from traingate._web.session import csrf_token

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
            wait_until_serving(base, server)
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
        tg.events.ingest([json.dumps(e) for e in history(ev)])
        roles = ("ingest", "analyst", "privacy_officer")
        tokens = {r: tg.access.create_token(role=r).token for r in roles}
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


# -- instants at the edges of SPEC §2's range ------------------------------------------------

RANGE = "[1970-01-01T00:00:00Z, 9000-01-01T00:00:00Z)"
_EPOCH = datetime(1970, 1, 1)
_SECOND = 1_000_000


@st.composite
def edge_instants(draw: st.DrawFn) -> tuple[int, str]:
    """(UTC microseconds, RFC 3339 text with an offset) within two days of either end of the
    range, the local time shifted by any offset from -23:59 to +23:59."""
    edge = draw(st.sampled_from((MIN_INSTANT, MAX_INSTANT)))
    micros = edge + draw(st.integers(-2 * DAY, 2 * DAY))
    if not draw(st.booleans()):
        micros -= micros % _SECOND
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    local = _EPOCH + timedelta(microseconds=micros, minutes=minutes)
    text = f"{local.year:04d}-" + local.strftime("%m-%dT%H:%M:%S")
    if local.microsecond:
        text += f".{local.microsecond:06d}"
    if minutes == 0 and draw(st.booleans()):
        return micros, text + "Z"
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return micros, f"{text}{sign}{hours:02d}:{rest:02d}"


def _in_range(micros: int) -> bool:
    return MIN_INSTANT <= micros < MAX_INSTANT


_EXAMPLES = examples(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_EXAMPLES
@given(instant=edge_instants())
def test_events_at_the_edges_over_http(api: Api, ev: Events, instant: tuple[int, str]) -> None:
    """An event at an instant near either end of the range: accepted inside it; outside it
    rejected with an error naming the range and the line, while the valid event sent with it
    is kept (feedback near the upper end: its 10-year expiry lies past year 9000)."""
    micros, text = instant
    name = f"edge-{ev.prefix}{next(ev._ids)}"
    if micros > MAX_INSTANT // 2:
        edge = ev.feedback(f"f-{name}", "a", "c", "m2", text)
    else:
        edge = ev.account(name, text)
    valid = ev.account(f"{name}-valid", T(0))
    done = api.client.post("/v1/events", json=[valid, edge], headers=api.as_role("ingest"))
    summary = done.json()
    if _in_range(micros):
        assert done.status_code == 200, (text, summary)
        assert summary["accepted"] == 2
    else:
        assert done.status_code == 422, (text, summary)
        assert summary["accepted"] == 1 and summary["rejected"] == 1
        assert summary["errors"][0]["line"] == 2
        assert RANGE in summary["errors"][0]["error"], summary


@_EXAMPLES
@given(instant=edge_instants())
def test_as_of_at_the_edges_over_http(api: Api, ev: Events, instant: tuple[int, str]) -> None:
    """Every as-of the API takes, near either end of the range: an answer inside it (a purge
    as of the future is refused), 422 naming the range outside it; never a 5xx, and a build
    is queued only for an instant inside the range (the job list still answers)."""
    micros, text = instant
    officer, analyst = api.as_role("privacy_officer"), api.as_role("analyst")
    user = api.as_user("a")
    params = {"as_of": text}
    answers = {
        "explain": api.client.get(
            "/v1/conversations/c/explain",
            params={**params, "purpose": "model_training"},
            headers=officer,
        ),
        "conversation": api.client.get("/v1/conversations/c", params=params, headers=user),
        "privacy": api.client.get("/v1/accounts/a/privacy", params=params, headers=officer),
        "purge": api.client.post("/v1/purge", json=params, headers=officer),
    }
    jobs_before = len(api.client.get("/v1/datasets", headers=analyst).json()["jobs"])
    if micros < MIN_INSTANT + DAY or micros >= MAX_INSTANT - DAY:  # builds are slow: the edges
        answers["datasets"] = api.client.post(
            "/v1/datasets", json={"purpose": "model_training", **params}, headers=analyst
        )
    listed = api.client.get("/v1/datasets", headers=analyst)
    assert listed.status_code == 200
    jobs = len(listed.json()["jobs"]) - jobs_before
    for route, answer in answers.items():
        assert answer.status_code < 500, (route, text, answer.text[:300])
        if not _in_range(micros):
            assert answer.status_code == 422, (route, text, answer.text[:300])
            assert RANGE in answer.json()["error"]["message"], (route, answer.text[:300])
        elif route == "purge" and micros > MAX_INSTANT // 2:
            assert answer.status_code == 422 and "future" in answer.text, answer.text
        else:
            assert answer.status_code in (200, 202), (route, text, answer.text[:300])
    assert jobs == (1 if "datasets" in answers and _in_range(micros) else 0)


@examples(max_examples=12, deadline=None)
@given(instant=edge_instants())
def test_events_and_as_of_at_the_edges_on_the_command_line(instant: tuple[int, str]) -> None:
    """The same from the command line: ingest exits 1 naming the line and the range and keeps
    the valid event; explain --as-of outside the range exits 2 naming it."""
    micros, text = instant
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "TRAINGATE_DB": f"sqlite:///{tmp}/db.sqlite",
            "TRAINGATE_KEY_FILE": f"{tmp}/keys.json",
        }
        e = Events()
        lines = [e.account("ok", T(0)), e.account("edge", text)]
        runner = CliRunner()
        done = runner.invoke(cli, ["ingest", "-"], input="\n".join(jsonl(lines)) + "\n", env=env)
        summary = json.loads(done.stdout)
        if _in_range(micros):
            assert done.exit_code == 0 and summary["accepted"] == 2, done.output
        else:
            assert done.exit_code == 1 and summary["accepted"] == 1, done.output
            assert summary["errors"][0]["line"] == 2 and RANGE in summary["errors"][0]["error"]
        args = ["explain", "--conversation", "c", "--purpose", "model_training", "--as-of", text]
        explained = runner.invoke(cli, args, env=env)
        if _in_range(micros):
            assert explained.exit_code in (0, 2), explained.output  # c is unknown: exit 2
            assert RANGE not in explained.output
        else:
            assert explained.exit_code == 2 and RANGE in explained.output, explained.output
        assert explained.exception is None or isinstance(explained.exception, SystemExit)


@pytest.mark.parametrize("text", ["9990-01-01T00:00:00Z", "0001-01-01T00:00:00+23:59"])
def test_the_console_refuses_as_of_outside_the_range(api: Api, text: str) -> None:
    """The console's explain query and build form: 422 pages naming the range, no job."""
    officer, analyst = api.token("privacy_officer"), api.token("analyst")
    api.client.cookies.clear()
    page = api.client.get(
        "/admin/explain",
        params={"conversation_id": "c", "purpose": "model_training", "as_of": text},
        headers={"Cookie": f"traingate_admin={officer}"},
    )
    assert page.status_code == 422 and RANGE in page.text
    api.client.cookies.clear()
    form = {"purpose": "model_training", "as_of": text, "csrf": csrf_token(analyst)}
    started = api.client.post(
        "/admin/builds", data=form, headers={"Cookie": f"traingate_admin={analyst}"}
    )
    assert started.status_code == 422 and RANGE in started.text
    listed = api.client.get("/v1/datasets", headers=api.as_role("analyst"))
    assert listed.status_code == 200 and listed.json()["jobs"] == []


# -- CSRF on the cookie-authenticated API ----------------------------------------------------

UP = {"rating": "up"}


def test_cookie_authenticated_api_changes_need_the_csrf_token(api: Api, ev: Events) -> None:
    """Every API route that changes something and accepts an end-user session, called with
    the session cookie: refused (403) without the page's CSRF token, or with it from another
    site, and nothing changes; accepted with the token from this site. Bearer calls need no
    token. Issue 19 finding 3: a same-site page could file a report with the cookie alone."""
    session = api.session("a")
    cookie = {"Cookie": f"traingate_session={session}"}
    receipt = api.client.post(
        "/v1/feedback",
        json=ev.feedback("f-csrf-0", "a", "c", "m2", T(5)),
        headers=api.as_role("ingest"),
    ).json()["receipt"]
    calls: list[tuple[str, str, dict[str, Any]]] = [
        (
            "POST",
            "/v1/feedback",
            {"json": {"conversation_id": "c", "message_id": "m2", "rating": "up"}},
        ),
        ("PUT", "/v1/accounts/a/consent", {"json": {"granted": False}}),
        ("DELETE", f"/v1/feedback/{receipt}", {}),
        ("DELETE", "/v1/conversations/c", {}),
        ("DELETE", "/v1/sessions/current", {}),
    ]
    for method, path, kwargs in calls:
        for extra in (
            {},
            {"X-CSRF-Token": "0" * 40},
            {"X-CSRF-Token": csrf_token(session), "Origin": "https://evil.example"},
        ):
            api.client.cookies.clear()
            refused = api.client.request(method, path, headers={**cookie, **extra}, **kwargs)
            assert refused.status_code == 403, (method, path, extra, refused.text)
    with Traingate.open(api.settings) as tg:
        assert tg.privacy.conversation_owner("c") == "a"
        assert tg.privacy.answer(account_id="a").to_dict()["conversations"]
        tg.feedback.info(receipt)  # still stored
    for method, path, kwargs in calls:
        api.client.cookies.clear()
        headers = {**cookie, "X-CSRF-Token": csrf_token(session), "Origin": "http://testserver"}
        done = api.client.request(method, path, headers=headers, **kwargs)
        assert done.status_code in (200, 201), (method, path, done.text)


def test_a_malformed_authorization_header_is_refused_even_with_a_cookie(api: Api) -> None:
    session = api.session("a")
    for header in ("Basic YTpi", "Bearer", "tgk_x"):
        api.client.cookies.clear()
        answer = api.client.get(
            "/v1/me",
            headers={"Authorization": header, "Cookie": f"traingate_session={session}"},
        )
        assert answer.status_code == 401, (header, answer.text)


# -- revocable tokens, deleted accounts -------------------------------------------------------


def test_tokens_are_listed_and_revoked_from_the_command_line(api: Api) -> None:
    """``token list`` shows every token without its secret; ``token revoke`` ends one at once
    (401 on its next request, audited ``token.revoke``); an unknown or revoked id exits 2."""
    officer = api.token("privacy_officer")
    token_id = officer.split(".", 1)[0].removeprefix("tgk_")
    env = {"TRAINGATE_DB": api.settings.db_url, "TRAINGATE_KEY_FILE": str(api.settings.key_file)}
    runner = CliRunner()
    listed = runner.invoke(cli, ["token", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)["tokens"]
    assert next(r for r in rows if r["token_id"] == token_id)["revoked_at"] is None
    assert officer.split(".", 1)[1] not in listed.stdout
    assert api.client.get("/v1/audit/verify", headers=api.as_role("privacy_officer")).is_success
    revoked = runner.invoke(cli, ["token", "revoke", token_id], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.stdout)["revoked_at"] is not None
    answer = api.client.post("/v1/purge", headers={"Authorization": f"Bearer {officer}"})
    assert answer.status_code == 401
    again = runner.invoke(cli, ["token", "revoke", token_id], env=env)
    assert again.exit_code == 2 and "no live token" in again.output
    with Traingate.open(api.settings) as tg:
        assert [e.details for e in tg.audit.log.entries() if e.action == "token.revoke"]


def test_a_token_id_that_begins_with_a_dash_is_revoked_from_the_command_line(api: Api) -> None:
    """Token ids are command-line arguments: a new one never begins with '-' (one in 64 did,
    and ``token revoke`` read it as an unknown option), and ``token revoke`` takes an older
    one that does as the id it is."""
    assert not [i for i in (_new_id() for _ in range(5_000)) if i.startswith("-")]
    officer = api.token("privacy_officer")
    token_id, secret = officer.removeprefix("tgk_").split(".", 1)
    dashed = "-h" + token_id[2:]  # the worst: -h is every other command's help
    with Traingate.open(api.settings) as tg, tg.store.db.transaction():
        tg.store.db.execute(
            "UPDATE api_tokens SET token_id = ? WHERE token_id = ?", (dashed, token_id)
        )
    bearer = {"Authorization": f"Bearer tgk_{dashed}.{secret}"}
    assert api.client.get("/v1/audit/verify", headers=bearer).is_success
    env = {"TRAINGATE_DB": api.settings.db_url, "TRAINGATE_KEY_FILE": str(api.settings.key_file)}
    revoked = CliRunner().invoke(cli, ["token", "revoke", dashed], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.stdout)["token_id"] == dashed
    assert api.client.get("/v1/audit/verify", headers=bearer).status_code == 401


def test_sessions_of_a_deleted_account_stop_working(api: Api, ev: Events) -> None:
    """Deleting an account (an accepted account.deleted) ends its sessions at once."""
    session = api.session("a")
    me = api.client.get("/v1/me", headers={"Authorization": f"Bearer {session}"})
    assert me.status_code == 200
    api.ingest([ev.account_deleted("a", T(30))])
    me = api.client.get("/v1/me", headers={"Authorization": f"Bearer {session}"})
    assert me.status_code == 401
    api.client.cookies.clear()
    page = api.client.get("/privacy", headers={"Cookie": f"traingate_session={session}"})
    assert page.status_code == 401


# -- file modes ------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", ["000", "022"])
def test_the_data_directory_and_its_files_are_private_whatever_the_umask(
    tmp_path: Path, ev: Events, umask: str
) -> None:
    """The default traingate-data/ is 0700 and the store, the vault, their WAL and SHM files
    and the key file 0600, under umask 000 and 022 (issue 19: 0755 and 0644 before)."""
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(jsonl(history(ev))) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")}
    script = f'umask {umask} && exec "$0" -m traingate ingest "$1"'
    done = subprocess.run(
        ["sh", "-c", script, sys.executable, str(events)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = tmp_path / "traingate-data"
    modes = {p.name: p.stat().st_mode & 0o777 for p in [data, *data.iterdir()]}
    assert modes.pop("traingate-data") == 0o700
    assert {"traingate.sqlite", "traingate-vault.sqlite", "keys.json"} <= set(modes), modes
    assert {name: mode for name, mode in modes.items() if mode != 0o600} == {}
    from traingate._store.db import private_file

    loose = tmp_path / "loose.sqlite"
    loose.write_bytes(b"")
    loose.chmod(0o644)
    private_file(loose)  # what an older version left behind is tightened at open
    assert loose.stat().st_mode & 0o777 == 0o600


def test_wal_and_shm_files_are_private_while_the_store_is_open(tmp_path: Path, ev: Events) -> None:
    """While a store is open its -wal and -shm files exist: 0600 too, under umask 000."""
    previous = os.umask(0)
    try:
        settings = Settings(
            db_url=f"sqlite:///{tmp_path}/d/store.sqlite", key_file=tmp_path / "d" / "k.json"
        )
        with Traingate.open(settings) as tg:
            tg.events.ingest(jsonl(history(ev)))
            files = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "d").iterdir()}
    finally:
        os.umask(previous)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o700
    assert {"store.sqlite-wal", "store.sqlite-shm", "store-vault.sqlite-wal"} <= set(files)
    assert {name: mode for name, mode in files.items() if mode != 0o600} == {}


# -- ids that are not path-safe --------------------------------------------------------------

ODD_IDS = [
    "a/b",
    "../../etc/passwd",
    "q?x=1&y=2",
    "h#frag",
    "50%",
    "50%2F",
    "with space",
    "naïve-会話-🙂",
    "..x",
    "/",
    ".",
    "..",
]


@pytest.mark.parametrize("odd", ODD_IDS)
def test_ids_with_odd_characters_work_in_every_route_and_link(
    api: Api, ev: Events, odd: str
) -> None:
    """An account and a conversation whose ids hold '/', '..', '?', '#', '%', spaces or
    non-ASCII, or are exactly '.' or '..': every API route and page for them answers
    (percent-encoded; a dot segment as its overlong form, _api/paths.py), every link the
    pages write encodes the id as one segment and leads back to it, and the user can give
    feedback on it and delete it (issue 19: 404 everywhere, '../../etc/passwd' in an href)."""
    account, conversation = f"acct {odd}", odd
    api.ingest(
        [
            ev.account(account, T(0)),
            ev.conversation(conversation, account, T(1), title="Odd"),
            ev.message(f"m {odd}", conversation, account, T(2)),
            ev.message(f"m2 {odd}", conversation, account, T(3), role="assistant"),
        ]
    )
    c, a = path_segment(conversation), path_segment(account)
    user = api.as_user(account)
    officer = api.as_role("privacy_officer")
    read = api.client.get(f"/v1/conversations/{c}", headers=user)
    assert read.status_code == 200 and read.json()["conversation_id"] == conversation, read.text
    explained = api.client.get(
        f"/v1/conversations/{c}/explain", params={"purpose": "model_training"}, headers=officer
    )
    assert explained.status_code == 200, explained.text
    privacy = api.client.get(f"/v1/accounts/{a}/privacy", headers=officer)
    assert privacy.status_code == 200 and conversation in privacy.text, privacy.text[:300]
    consent = api.client.put(f"/v1/accounts/{a}/consent", json={"granted": True}, headers=user)
    assert consent.status_code == 200, consent.text
    session = api.session(account)
    api.client.cookies.clear()
    cookie = {"Cookie": f"traingate_session={session}"}
    center = api.client.get("/privacy", headers=cookie)
    assert center.status_code == 200
    hrefs = re.findall(r'href="(/conversations/[^"]*)"', center.text)
    assert hrefs == [f"/conversations/{c}"], hrefs
    page = api.client.get(hrefs[0], headers=cookie)
    assert page.status_code == 200, page.text[:300]
    actions = re.findall(r'action="(/conversations/[^"]*)"', page.text)
    assert f"/conversations/{c}/feedback" in actions, actions
    form = {"message_id": f"m2 {odd}", "rating": "up", "csrf": csrf_token(session)}
    sent = api.client.post(f"/conversations/{c}/feedback", data=form, headers=cookie)
    assert sent.status_code == 201, sent.text[:300]
    back = re.findall(r'href="(/conversations/[^"]*)"', sent.text)
    assert back == [f"/conversations/{c}"], back
    deleted = api.client.delete(f"/v1/conversations/{c}", headers=user)
    assert deleted.status_code == 200 and deleted.json()["conversation_id"] == conversation


def test_a_browser_keeps_every_id_segment_as_written() -> None:
    """What the pages write for each odd id (path_segment) is the path chromium requests: no
    segment is resolved away, '.' and '..' included (as %2E would be)."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{chromium} is missing (CI=true)")
        pytest.skip(f"{chromium} is missing")
    from playwright.sync_api import sync_playwright

    links = [f"/conversations/{path_segment(odd)}/feedback" for odd in ODD_IDS]
    naive = "/conversations/%2E%2E/feedback"  # '..' percent-encoded: still resolved
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            resolved = browser.new_page().evaluate(
                "links => links.map(l => new URL(l, 'http://h/privacy').pathname)",
                [*links, naive],
            )
        finally:
            browser.close()
    assert resolved == [*links, "/feedback"]


# -- the command line under damage -----------------------------------------------------------


def _traingate(args: list[str], cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "traingate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        **kwargs,
    )


def test_damaged_gzip_files_keep_what_came_before(tmp_path: Path) -> None:
    """A file named .gz that is not gzip, and a truncated .gz: one clear line, exit 2, the
    summary of the lines read before the damage on standard output, those lines kept."""
    import gzip

    e = Events()
    lines = [json.dumps(e.account(f"acct-{i}", T(0))) for i in range(3000)]
    plain = tmp_path / "plain.gz"
    plain.write_text("\n".join(lines) + "\n")
    done = _traingate(["ingest", str(plain)], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "plain.gz cannot be read past line 0" in done.stderr
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    done = _traingate(["ingest", str(cut)], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Aborted" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "cut.jsonl.gz cannot be read past line" in done.stderr
    kept = json.loads(done.stdout)["accepted"]
    assert 0 < kept < len(lines)
    full = tmp_path / "full.jsonl.gz"
    full.write_bytes(whole)
    again = json.loads(_traingate(["ingest", str(full)], tmp_path).stdout)
    assert again["duplicates"] == kept and again["accepted"] == len(lines) - kept


def test_a_build_where_nothing_may_be_written_is_one_line(tmp_path: Path) -> None:
    _traingate(["sample", "load"], tmp_path)
    for out in ("/proc/x", "/proc/self/x/y"):
        args = ["dataset", "build", "--purpose", "model_training", "--out", out]
        done = _traingate(args, tmp_path)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert out in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_killing_an_ingest_leaves_no_traceback_from_its_parse_worker(tmp_path: Path) -> None:
    """SIGKILL to an ingest while its parse worker runs: the worker leaves silently (it
    printed a BrokenPipeError traceback), and what was committed stays."""
    e = Events()
    events = tmp_path / "big.jsonl"
    with events.open("w") as out:
        for i in range(150_000):
            out.write(json.dumps(e.account(f"acct-{i}", T(0))) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")}
    ingest = subprocess.Popen(
        [sys.executable, "-m", "traingate", "ingest", str(events), "--workers", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    children = Path(f"/proc/{ingest.pid}/task/{ingest.pid}/children")
    deadline = time.monotonic() + 120
    worker = None
    while worker is None and time.monotonic() < deadline and ingest.poll() is None:
        for pid in children.read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"traingate._ingest.worker" in cmdline:
                worker = int(pid)
        time.sleep(0.01)
    assert worker is not None, "no parse worker started"
    time.sleep(0.3)
    ingest.kill()
    assert ingest.stderr is not None
    with ingest.stderr:
        err = ingest.stderr.read().decode(errors="replace")  # until the worker closes it too
    ingest.wait(timeout=30)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


# -- end users choose nothing the backend owns -----------------------------------------------


def test_end_user_reports_get_server_ids_and_time_and_learn_nothing(api: Api, ev: Events) -> None:
    """A session's POST /v1/feedback may not choose event_id, feedback_id or at (squatting
    the backend's id 'backend-fb-1001' made the backend's own event rejected); the server
    assigns them and the time. Another account's conversation and an unknown one give the
    same answer."""
    user = api.as_user("a")
    squat = ev.feedback("backend-fb-1001", "a", "c", "m2", T(5))
    squat["event_id"] = "backend-fb-1001"
    refused = api.client.post("/v1/feedback", json=squat, headers=user)
    assert refused.status_code == 422 and "leave out event_id, feedback_id, at" in refused.text
    assert refused.json()["error"]["code"] == "server_assigned"
    backend = {**squat}
    summary = api.ingest([backend])
    assert summary["accepted"] == 1
    before = now_micros()
    mine = api.client.post(
        "/v1/feedback",
        json={"conversation_id": "c", "message_id": "m2", "rating": "up", "comment": "ok"},
        headers=user,
    )
    assert mine.status_code == 201, mine.text
    assert parse_instant(mine.json()["report"]["submitted_at"]) >= before - 1_000_000
    answers = []
    for conversation, message in (("d", "n2"), ("nope", "n2")):  # b's, and nobody's
        answer = api.client.post(
            "/v1/feedback",
            json={"conversation_id": conversation, "message_id": message, "rating": "up"},
            headers=user,
        )
        answers.append((answer.status_code, answer.text.replace(repr(conversation), "ID")))
    assert answers[0] == answers[1] and answers[0][0] == 404, answers


# -- the audit log's own verification ---------------------------------------------------------


def _audited(tg: Traingate, ev: Events) -> dict[str, Any]:
    tg.events.ingest(jsonl(history(ev)))
    tg.access.create_token(role="analyst")
    summary = tg.audit.verify()
    assert summary["ok"] and summary["entries"] >= 2
    head: dict[str, Any] = summary["head"]
    return head


def test_a_wiped_audit_log_is_caught_with_an_expected_head(tg: Traingate, ev: Events) -> None:
    """Both tables emptied: 'ok, 0 entries' says so (a warning) and, given the head recorded
    earlier, fails naming what was expected."""
    head = _audited(tg, ev)
    tg.store.db.execute("DELETE FROM audit_log")
    tg.store.db.execute("DELETE FROM audit_head")
    plain = tg.audit.verify()
    assert plain["entries"] == 0 and "wiped" in plain["warning"]
    expected = tg.audit.verify(expect_head=(head["seq"], head["hash"]))
    assert not expected["ok"]
    assert [p["kind"] for p in expected["problems"]] == ["head"]
    assert f"seq {head['seq']} was expected" in expected["problems"][0]["message"]


def test_an_entry_appended_after_the_head_is_inserted(tg: Traingate, ev: Events) -> None:
    head = _audited(tg, ev)
    tg.store.db.execute(
        "INSERT INTO audit_log (seq, at, actor, action, details, prev_hash, hash)"
        " SELECT seq + 1, at, actor, action, details, hash, hash FROM audit_log WHERE seq = ?",
        (head["seq"],),
    )
    problems = tg.audit.verify()["problems"]
    assert [(p["seq"], p["kind"]) for p in problems] == [(head["seq"] + 1, "inserted")]


def test_a_dropped_head_table_is_named(tg: Traingate, ev: Events, settings: Settings) -> None:
    _audited(tg, ev)
    tg.store.db.execute("DROP TABLE audit_head")
    summary = tg.audit.verify()
    assert not summary["ok"]
    assert "audit_head cannot be read" in summary["problems"][0]["message"]
    env = {"TRAINGATE_DB": settings.db_url, "TRAINGATE_KEY_FILE": str(settings.key_file)}
    done = CliRunner().invoke(cli, ["audit", "verify"], env=env)
    assert done.exit_code == 1 and "audit_head" in done.output, done.output


# -- pages answer pages -----------------------------------------------------------------------


def test_pages_answer_unknown_urls_and_bad_values_with_pages(api: Api) -> None:
    """A browser (Accept: text/html) gets an HTML error page for an unknown URL, a method a
    page does not take and a value that fails validation; the API keeps its JSON."""
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    session = api.session("a")
    api.client.cookies.clear()
    for method, path, status in (
        ("GET", "/no-such-page", 404),
        ("GET", "/admin/no-such-section", 404),
        ("DELETE", "/privacy", 405),
        ("GET", "/conversations/" + "x" * 2000, 422),
    ):
        answer = api.client.request(
            method, path, headers={**browser, "Cookie": f"traingate_session={session}"}
        )
        assert answer.status_code == status, (path, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html"), (path, answer.text[:100])
        assert "<h1>" in answer.text
    for path in ("/v1/no-such-route", "/no-such-page"):
        answer = api.client.get(path, headers={"Accept": "application/json"})
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert api.client.get("/v1/nothing", headers=browser).json()["error"]["code"] == "not_found"


# -- the audit log keeps reports de-linked ----------------------------------------------------


def test_the_audit_log_never_joins_a_report_to_its_reader(api: Api, ev: Events) -> None:
    """A session submits two reports, reads them (as the privacy center does on every visit)
    and deletes one. While the server still runs (a kill loses nothing), the store already
    holds the day's counts; once the day is over they are sealed into the chain. The exported
    log names no report, receipt or account beside the session: session.create carries no
    account key, no entry of the session's actor touches the vault or a report, and end users'
    submissions and receipt holders' reads and deletions appear only as counts of a day,
    written after that day (their time and place in the chain say nothing finer)."""
    session = api.session("a")
    user = {"Authorization": f"Bearer {session}"}
    receipts = []
    for message in ("m2", "m1"):
        sent = api.client.post(
            "/v1/feedback",
            json={"conversation_id": "c", "message_id": message, "rating": "up"},
            headers=user,
        )
        assert sent.status_code == 201, sent.text
        receipts.append(sent.json()["receipt"])
    for receipt in receipts:
        assert api.client.get(f"/v1/feedback/{receipt}", headers=user).status_code == 200
    assert api.client.delete(f"/v1/feedback/{receipts[0]}", headers=user).status_code == 200
    today = utc_date(now_micros())
    with Traingate.open(api.settings) as tg:  # the server is still up: nothing flushed yet
        assert DayCounts(tg.audit.log).pending() == [
            (today, "end-user", "ingest.day", {"accepted": 2, "duplicates": 0, "rejected": 0}),
            (today, "receipt-holders", "vault.uses", {"reads": 2, "deletions": 1}),
        ]
        assert [(p["actor"], p["day"]) for p in tg.audit.verify()["pending"]] == [
            ("end-user", today),
            ("receipt-holders", today),
        ]  # what audit verify shows of counts not yet in the chain
        tomorrow = utc_date(now_micros() + DAY)
        sealed = DayCounts(tg.audit.log).seal(before=tomorrow)
        assert [utc_date(e.at) >= today for e in sealed] == [True, True]
        assert DayCounts(tg.audit.log).pending() == []
        account_key = subject_key(tg.keys, scope="account", subject="a")
        report_ids = [tg.feedback.info(r).report_id for r in receipts[1:]]
    env = {"TRAINGATE_DB": api.settings.db_url, "TRAINGATE_KEY_FILE": str(api.settings.key_file)}
    exported = CliRunner().invoke(cli, ["audit", "export"], env=env)
    assert exported.exit_code == 0, exported.output
    entries = [json.loads(line) for line in exported.stdout.splitlines()]
    text = json.dumps(entries)
    secrets_ = [*receipts, *(r.split(".")[0] for r in receipts), *report_ids]
    assert [s for s in secrets_ if s in text] == []
    session_id = session.split(".")[0].removeprefix("tgs_")
    naming_session = [e for e in entries if session_id in json.dumps(e)]
    assert [e["action"] for e in naming_session] == ["session.create"]
    assert [e for e in naming_session if account_key in json.dumps(e)] == []
    by_people = [e for e in entries if e["actor"] in ("end-user", "receipt-holders")]
    assert [(e["actor"], e["action"], e["details"]) for e in by_people] == [
        ("end-user", "ingest.day", {"day": today, "accepted": 2, "duplicates": 0, "rejected": 0}),
        ("receipt-holders", "vault.uses", {"day": today, "reads": 2, "deletions": 1}),
    ]
    assert tg_verify_ok(api)


def test_only_the_api_refuses_a_purge_as_of_the_future(api: Api) -> None:
    """POST /v1/purge refuses an as_of in the future (a token must not end every retention);
    `traingate purge --as-of` takes it, as SPEC §4 defines the command over SPEC §2's range
    (docs/operations.md: whoever runs it holds the store and the key file)."""
    future = format_instant(now_micros() + 400 * DAY)
    refused = api.client.post(
        "/v1/purge", json={"as_of": future}, headers=api.as_role("privacy_officer")
    )
    assert refused.status_code == 422 and "in the future" in refused.json()["error"]["message"]
    env = {"TRAINGATE_DB": api.settings.db_url, "TRAINGATE_KEY_FILE": str(api.settings.key_file)}
    done = CliRunner().invoke(cli, ["purge", "--as-of", future], env=env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["as_of"] == future


def tg_verify_ok(api: Api) -> bool:
    with Traingate.open(api.settings) as tg:
        return bool(tg.audit.verify()["ok"])


def test_a_killed_server_keeps_the_days_counts_and_seals_them_at_start_up(
    settings: Settings, tmp_path: Path, ev: Events
) -> None:
    """Counts of an earlier day that a server never sealed (it was killed) are in the store
    and become one entry per day and actor when the next server starts."""
    with Traingate.open(settings) as tg:
        tg.events.ingest(jsonl(history(ev)))
        earlier = now_micros() - 3 * DAY
        counts = DayCounts(tg.audit.log)
        counts.add(actor="receipt-holders", action="vault.uses", counts={"reads": 1}, now=earlier)
        counts.add(actor="receipt-holders", action="vault.uses", counts={"reads": 2}, now=earlier)
        counts.add(actor="end-user", action="ingest.day", counts={"accepted": 1}, now=earlier)
        assert [p[0] for p in counts.pending()] == [utc_date(earlier)] * 2
        before = tg.audit.log.head()
    with running_api(settings, tmp_path / "datasets"), Traingate.open(settings) as tg:
        assert DayCounts(tg.audit.log).pending() == []
        assert before is not None
        new = [e.to_dict() for e in tg.audit.log.entries(after=before[0])]
    day = utc_date(earlier)
    assert [(e["actor"], e["details"]) for e in new] == [
        ("end-user", {"day": day, "accepted": 1, "duplicates": 0, "rejected": 0}),
        ("receipt-holders", {"day": day, "reads": 3, "deletions": 0}),
    ]


# -- the published contract ---------------------------------------------------------------------


def test_the_openapi_document_states_instants_and_every_allowed_method(api: Api) -> None:
    """as_of parameters and bodies are date-times (generated clients and fuzzers produce the
    instants that matter); a 405 names every method the path takes, in Allow too."""
    document = api.client.get("/openapi.json").json()
    explain = document["paths"]["/v1/conversations/{conversation_id}/explain"]["get"]
    as_of = next(p for p in explain["parameters"] if p["name"] == "as_of")
    assert "date-time" in json.dumps(as_of["schema"])
    purge = document["paths"]["/v1/purge"]["post"]["requestBody"]
    assert "date-time" in json.dumps(purge)
    officer = api.as_role("analyst")
    for path, methods in (
        ("/v1/datasets", "GET, POST"),
        ("/v1/conversations/c", "DELETE, GET"),
        ("/v1/feedback/abc", "DELETE, GET"),
    ):
        answer = api.client.patch(path, headers=officer)
        assert answer.status_code == 405
        assert answer.headers["allow"] == methods, (path, answer.headers["allow"])
        assert f"allowed: {methods}" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    "policy",
    [*bundled_policy_ids(), str(Path(__file__).parent / "policies" / "mechanisms.toml")],
)
def test_the_openapi_document_states_what_the_app_checks(policy: str, tmp_path: Path) -> None:
    """Built at app creation from the app's policies: purpose, plan and consent setting are
    enums of what they declare; every operation lists 401 and 503, every body 413 and 415,
    every validated input 422 with the body the API sends (FastAPI's own validation schema is
    gone); /v1/events and /v1/feedback document their 422 as one of the ingest summary with
    its error or the error body."""
    store = Settings(
        db_url=f"sqlite:///{tmp_path / 'db.sqlite'}", key_file=tmp_path / "keys", policy=policy
    )
    with running_api(store, tmp_path / "datasets") as api, Traingate.open(store) as tg:
        document = api.client.get("/openapi.json").json()
        policies = tg.policies
    schemas = document["components"]["schemas"]
    assert schemas["AccountUpdated"]["properties"]["plan"]["enum"] == list(policies.plans)
    assert schemas["ConsentUpdated"]["properties"]["setting"]["enum"] == list(policies.settings)
    explain = document["paths"]["/v1/conversations/{conversation_id}/explain"]["get"]
    purpose = next(p for p in explain["parameters"] if p["name"] == "purpose")
    assert purpose["schema"]["enum"] == list(policies.purposes)
    build = document["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]
    assert build["application/json"]["schema"]["properties"]["purpose"]["enum"] == list(
        policies.purposes
    )
    assert "HTTPValidationError" not in json.dumps(document)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"401", "503"} <= statuses, (method, path)
            if "requestBody" in operation:
                assert {"413", "415", "422"} <= statuses, (method, path)
            if operation.get("parameters"):
                assert "422" in statuses, (method, path)
            if method != "get":
                assert "403" in statuses, (method, path)
    for path in ("/v1/events", "/v1/feedback"):
        rejected = document["paths"][path]["post"]["responses"]["422"]
        assert rejected["content"]["application/json"]["schema"]["oneOf"] == [
            {"$ref": "#/components/schemas/IngestRejectedBody"},
            {"$ref": "#/components/schemas/ErrorBody"},
        ]


# -- leftovers of killed builds ---------------------------------------------------------------


def test_leftovers_of_killed_builds_go_at_any_build_and_at_start_up(
    tg: Traingate, settings: Settings, ev: Events, tmp_path: Path
) -> None:
    """What killed builds left beside their --out is removed by the next build into the same
    directory whatever its name, and by the server's start-up in its datasets directory;
    a live build's directories and files that only look alike are kept."""
    from traingate._datasets.staging import claim

    tg.events.ingest(jsonl(history(ev)))
    parent = tmp_path / "out"
    parent.mkdir()
    dead = [".old.work-0123456789ab", ".old.tmp-0123456789ab", ".other.tmp-ba9876543210"]
    for name in [*dead, ".live.work-aaaaaaaaaaaa", ".live.tmp-aaaaaaaaaaaa", ".not.tmp-ours"]:
        (parent / name).mkdir()
    (parent / ".notes.tmp-0123456789ab").write_text("a file, not a build's")
    held = claim(parent / ".live.work-aaaaaaaaaaaa")
    try:
        tg.datasets.build(purpose="model_training", out=parent / "new", as_of=parse_instant(T(9)))
    finally:
        held.release()
    left = {p.name for p in parent.iterdir()}
    assert not left & set(dead), left
    assert {".live.work-aaaaaaaaaaaa", ".live.tmp-aaaaaaaaaaaa", ".not.tmp-ours"} <= left
    assert ".notes.tmp-0123456789ab" in left and "new" in left
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    (datasets / ".job-1.work-0123456789ab").mkdir()
    (datasets / ".job-1.tmp-0123456789ab" / "data").mkdir(parents=True)
    with running_api(settings, datasets):
        assert [p.name for p in datasets.iterdir()] == []
