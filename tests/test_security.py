"""Security: account isolation over every route that names an account or a conversation, no
way to list feedback reports, reports reach analysts only through builds, and no secret,
receipt, token or session credential in any log (in-process loggers and a served process's
output). The role-by-route matrix itself is tests/test_api_auth.py over tests/route_matrix.py.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_support import Api, history, user_report, wait_until_serving
from tests.factories import Events
from tests.route_matrix import CALLERS, is_page, matrix, routes
from traingate._errors import StoreError
from traingate._facade import Traingate
from traingate._facade.feedback import Feedback
from traingate._settings import Settings
from traingate._web.session import csrf_token

T = Events.t


def _call(
    api: Api, credential: str | None, method: str, path: str, follow: bool = False, **kwargs: Any
) -> Any:
    headers: dict[str, str] = {}
    if credential is not None and is_page(path):
        headers["Cookie"] = f"traingate_session={credential}; traingate_admin={credential}"
        if "data" in kwargs:
            kwargs["data"] = {**kwargs["data"], "csrf": csrf_token(credential)}
    elif credential is not None:
        headers["Authorization"] = f"Bearer {credential}"
    api.client.cookies.clear()
    return api.client.request(method, path, headers=headers, follow_redirects=follow, **kwargs)


def test_a_session_cannot_reach_another_account_on_any_route(api: Api, ev: Events) -> None:
    """Every route naming an account or a conversation, called by a session of ``a`` with
    the ids of ``b`` (account ``b``, conversation ``d``): refused or not found, and nothing of
    ``b`` changes."""
    named = {
        route: call
        for route, call in matrix(ev).items()
        if "{account_id}" in route[1] or "{conversation_id}" in route[1]
    }
    assert len(named) >= 8  # the API's and the pages'
    for (method, template), (_, kwargs, _) in named.items():
        path = template.format(account_id="b", conversation_id="d")
        if "json" in kwargs and method == "POST":
            kwargs = {"json": ev.feedback("fx", "b", "d", "n2", T(5))}
        data = kwargs.get("data")
        if data is not None and "message_id" in data:
            kwargs = {"data": {**data, "message_id": "n2"}}
        done = _call(api, api.session("a"), method, path, **kwargs)
        assert done.status_code in (403, 404), (method, template, done.status_code, done.text)
        assert "n1" not in done.text and "Trip" not in done.text
    refused = _call(
        api, api.session("a"), "POST", "/v1/feedback", json=ev.feedback("fy", "b", "d", "n2", T(5))
    )
    assert refused.status_code == 403
    officer = api.as_role("privacy_officer")
    b = api.client.get("/v1/accounts/b/privacy", headers=officer).json()
    assert b["consent"]["history"] == []
    assert b["conversations"][0]["deleted_at"] is None
    with Traingate.open(api.settings) as tg:
        assert tg.store.db.execute("SELECT COUNT(*) FROM report_events")[0][0] == 0


def _credential(api: Api, who: str) -> str | None:
    if who == "nobody":
        return None
    return api.session("a") if who == "user" else api.token(who)


def test_no_route_lists_reports_and_analysts_read_them_only_through_builds(
    api: Api, ev: Events, tmp_path: Path
) -> None:
    """No route takes feedback without its receipt (nothing lists reports); every other
    read route, for every caller, shows nothing of a report; an analyst gets it only in the
    records of a build."""
    for method, template in routes(api.client.app):  # type: ignore[arg-type]
        if "feedback" in template and method != "POST":
            assert "{receipt}" in template, (method, template)
    comment = f"only-in-the-vault-{secrets.token_hex(6)}"
    submitted = api.client.post(
        "/v1/feedback",
        json=user_report(ev.feedback("f-secret", "a", "c", "m2", T(5), comment=comment)),
        headers=api.as_user("a"),
    ).json()
    receipt, report_id = submitted["receipt"], submitted["report"]["report_id"]
    for who in CALLERS:
        for listing in ("/v1/feedback", "/v1/feedback/"):
            done = _call(api, _credential(api, who), "GET", listing, follow=True)
            assert done.status_code == 405, (who, listing, done.status_code)
        for (method, template), (path, kwargs, _) in matrix(ev).items():
            if method != "GET":
                continue
            done = _call(api, _credential(api, who), method, path, **kwargs)
            for secret in (comment, report_id, receipt):
                assert secret not in done.text, (who, template)

    analyst = api.as_role("analyst")
    job = api.client.post(
        "/v1/datasets",
        json={"purpose": "model_training", "format": "jsonl"},  # now: the report is dated now
        headers=analyst,
    ).json()
    for _ in range(300):
        state = api.client.get(f"/v1/datasets/{job['job_id']}", headers=analyst).json()
        if state["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.05)
    assert state["status"] == "succeeded", state
    assert comment not in json.dumps(state)
    records = "".join(p.read_text() for p in Path(state["path"]).glob("data/*.jsonl"))
    assert comment in records  # through the build, de-linked
    assert receipt not in records and report_id not in records


def _secrets_of(*credentials: str) -> list[str]:
    """Each credential and its secret half (what must never be written to a log)."""
    found = []
    for credential in credentials:
        found.append(credential)
        found.append(credential.split(".", 1)[1])
    return found


def _flow(client: httpx.Client | Any, tokens: dict[str, str], ev: Events) -> list[str]:
    """Open a session and use its login link, submit feedback, read and delete the report,
    sign in to the console: returns every credential and receipt the flow handled."""

    def bearer(credential: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {credential}"}

    opened = client.post("/v1/sessions", json={"account_id": "a"}, headers=bearer(tokens["ingest"]))
    session = opened.json()["session"]
    link = client.get(f"/login/{session}", follow_redirects=False)
    assert link.status_code == 303
    user = client.post("/v1/sessions", json={"account_id": "a"}, headers=bearer(tokens["ingest"]))
    user_session = user.json()["session"]
    report = client.post(
        "/v1/feedback",
        json=user_report(ev.feedback("f-flow", "a", "c", "m2", T(5), comment="x")),
        headers=bearer(user_session),
    )
    receipt = report.json()["receipt"]
    assert client.get(f"/v1/feedback/{receipt}", headers=bearer(user_session)).status_code == 200
    assert client.delete(f"/v1/feedback/{receipt}", headers=bearer(user_session)).status_code == 200
    gone = client.get(f"/v1/feedback/{receipt}", headers=bearer(user_session))
    assert gone.status_code == 404
    wrong = client.get(f"/v1/feedback/{receipt[:-2]}xx", headers=bearer(tokens["analyst"]))
    assert wrong.status_code == 404
    console = client.post("/admin/login", data={"token": tokens["analyst"]}, follow_redirects=False)
    assert console.status_code == 303
    bad = client.get("/v1/me", headers=bearer(tokens["ingest"][:-3] + "abc"))
    assert bad.status_code == 401
    return [*_secrets_of(session, user_session, *tokens.values()), receipt, receipt.split(".")[1]]


def test_secrets_never_reach_the_in_process_logs(
    api: Api, ev: Events, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = {role: api.token(role) for role in ("ingest", "analyst", "privacy_officer")}
    handled = _flow(api.client, tokens, ev)
    # failures are logged (store errors, bugs): by route template, never by path
    session = api.session("a")
    receipt = api.client.post(
        "/v1/feedback",
        json=user_report(ev.feedback("f-log", "a", "c", "m2", T(5))),
        headers={"Authorization": f"Bearer {session}"},
    ).json()["receipt"]
    handled += [receipt, *_secrets_of(session)]

    def broken(self: Feedback, receipt: str, **_: Any) -> Any:
        raise StoreError("SQLite /data/traingate-vault.sqlite: disk I/O error")

    monkeypatch.setattr(Feedback, "show", broken)
    done = api.client.get(f"/v1/feedback/{receipt}", headers={"Authorization": f"Bearer {session}"})
    assert done.status_code == 503 and receipt not in done.text
    client_side = ("httpx", "httpcore")  # the test's own HTTP client logs what it sends
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith(client_side)
    )
    assert "store error on GET /v1/feedback/{receipt}: SQLite" in logged
    assert [s for s in handled if s in logged] == []
    with Traingate.open(api.settings) as tg:
        audit = "\n".join(line for e in tg.audit.log.entries() for line in (e.details, e.actor))
    assert [s for s in handled if s in audit] == []


def test_secrets_never_reach_the_served_process_output(
    settings: Settings, tmp_path: Path, ev: Events
) -> None:
    """``traingate serve`` (default logging: uvicorn's error log, no access log) through a
    flow over loopback HTTP: nothing of any credential or receipt in its output."""
    with Traingate.open(settings) as tg:
        tg.events.ingest([json.dumps(e) for e in history(ev)])
        tokens = {
            r: tg.access.create_token(role=r).token
            for r in ("ingest", "analyst", "privacy_officer")
        }
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")}
    env |= {"TRAINGATE_DB": settings.db_url, "TRAINGATE_KEY_FILE": str(settings.key_file)}
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "traingate", "serve", "--port", str(port)),
                *("--datasets-dir", str(tmp_path / "datasets")),
            ],
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base, server)
            with httpx.Client(base_url=base, timeout=10) as client:
                handled = _flow(client, tokens, ev)
        finally:
            server.terminate()
            server.wait(timeout=30)
    output = out.read_text(errors="replace") + err.read_text(errors="replace")
    assert "Uvicorn running" in output or "Application startup complete" in output  # captured
    assert [s for s in handled if s in output] == []
