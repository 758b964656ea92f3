"""Who may call what: tokens, sessions, the role-by-endpoint matrix, and account isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_support import Api, free_port, history, running_api, wait_until_serving
from tests.factories import Events
from tests.route_matrix import CALLERS, PUBLIC, is_page, matrix, routes
from tests.support import run
from traingate._access.credentials import Credentials
from traingate._core.timeutil import now_micros
from traingate._facade import Traingate
from traingate._settings import Settings
from traingate._web.session import csrf_token

T = Events.t


def _request(api: Api, who: str, method: str, path: str, kwargs: dict[str, Any]) -> Any:
    """Call as ``who``: API routes with a bearer credential, pages with their cookies (and
    the form's CSRF token)."""
    credential = None
    if who == "user":
        credential = api.session("a")  # a fresh session each time: one operation ends it
    elif who != "nobody":
        credential = api.token(who)
    kwargs, headers = dict(kwargs), {}
    if credential is not None and is_page(path):
        headers["Cookie"] = f"traingate_session={credential}; traingate_admin={credential}"
        if "data" in kwargs:
            kwargs["data"] = {**kwargs["data"], "csrf": csrf_token(credential)}
    elif credential is not None:
        headers["Authorization"] = f"Bearer {credential}"
    api.client.cookies.clear()
    return api.client.request(method, path, headers=headers, follow_redirects=False, **kwargs)


def _denied(response: Any) -> bool:
    if response.status_code in (401, 403):
        return True
    location = response.headers.get("location", "")
    return response.status_code == 303 and location.startswith("/admin/login?next=")


def test_every_route_is_in_the_matrix(api: Api, ev: Events) -> None:
    """The matrix is checked against the app's route table: a new route must say who may
    call it, and an entry must name a route that exists."""
    table = set(routes(api.client.app))  # type: ignore[arg-type]
    guarded = set(matrix(ev))
    assert table - guarded - PUBLIC == set(), "routes without an entry in tests/route_matrix.py"
    assert (guarded | PUBLIC) - table == set(), "entries of tests/route_matrix.py without a route"
    assert not guarded & PUBLIC


@pytest.mark.parametrize("who", CALLERS)
def test_role_by_route_matrix(api: Api, ev: Events, who: str) -> None:
    for (method, template), (path, kwargs, allowed) in matrix(ev).items():
        done = _request(api, who, method, path, kwargs)
        where = (method, template, who, done.status_code, done.text[:300])
        assert done.status_code < 500, where
        if who in allowed:
            assert not _denied(done), where
            continue
        assert _denied(done), where
        if is_page(path):
            continue
        expected = 401 if who == "nobody" else 403
        assert done.status_code == expected, where
        assert done.json()["error"]["code"] == ("unauthorized" if expected == 401 else "forbidden")
        if expected == 401:
            assert done.headers["www-authenticate"].startswith("Bearer")


def test_public_routes_need_no_credential(api: Api) -> None:
    api.client.cookies.clear()
    for path, status in (("/openapi.json", 200), ("/docs", 200), ("/admin/login", 200)):
        assert api.client.get(path).status_code == status, path
    assert api.client.get("/", follow_redirects=False).status_code == 303
    login = api.client.get(f"/login/{api.session('a')}", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/privacy"
    api.client.cookies.clear()


def test_a_user_sees_only_their_own_account(api: Api, ev: Events) -> None:
    user = api.as_user("a")
    client = api.client
    for method, path, kwargs in [
        ("GET", "/v1/conversations/d/explain", {"params": {"purpose": "model_training"}}),
        ("GET", "/v1/conversations/d", {}),
        ("DELETE", "/v1/conversations/d", {}),
        ("GET", "/v1/conversations/unknown", {}),
    ]:
        done = client.request(method, path, headers=user, **kwargs)
        assert done.status_code == 404, (method, path, done.text)
        assert done.json()["error"]["message"].endswith("is not in the store")
    for method, path, kwargs in [
        ("GET", "/v1/accounts/b/privacy", {}),
        ("PUT", "/v1/accounts/b/consent", {"json": {"granted": True}}),
        ("POST", "/v1/feedback", {"json": ev.feedback("fx", "b", "d", "n2", T(5))}),
    ]:
        done = client.request(method, path, headers=user, **kwargs)
        assert done.status_code == 403, (method, path, done.text)
    # nothing of b changed
    officer = api.as_role("privacy_officer")
    b = client.get("/v1/accounts/b/privacy", headers=officer).json()
    assert b["consent"]["history"] == [] and b["conversations"][0]["deleted_at"] is None


def test_credentials_are_stored_hashed_and_checked(api: Api, settings: Settings) -> None:
    token = api.token("analyst")
    session = api.session("a")
    with Traingate.open(settings) as tg:
        rows = tg.store.db.execute("SELECT token_id, secret_hash FROM api_tokens")
        rows += tg.store.db.execute("SELECT session_id, secret_hash FROM sessions")
    for credential in (token, session):
        secret = credential.split(".", 1)[1]
        assert all(secret not in str(value) for row in rows for value in row)
    client = api.client
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), token + "x", "tgk_x.y", "", "a b"):
        done = client.get("/v1/me", headers={"Authorization": f"Bearer {bad}"})
        assert done.status_code == 401, bad
        assert done.json()["error"]["code"] == "unauthorized"
    basic = client.get("/v1/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401


def test_sessions_expire_and_end(api: Api, settings: Settings) -> None:
    with Traingate.open(settings) as tg:
        credentials = Credentials(tg.store.db)
        old = credentials.create_session(
            account_id="a", ttl=1_000_000, now=now_micros() - 5_000_000
        )
    expired = api.client.get("/v1/me", headers={"Authorization": f"Bearer {old.token}"})
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]

    issued = api.client.post(
        "/v1/sessions", json={"account_id": "a", "ttl_seconds": 600}, headers=api.as_role("ingest")
    ).json()
    assert issued["login_path"] == f"/login/{issued['session']}"
    user = {"Authorization": f"Bearer {issued['session']}"}
    me = api.client.get("/v1/me", headers=user).json()
    assert (me["kind"], me["account_id"], me["expires_at"]) == (
        "session",
        "a",
        issued["expires_at"],
    )
    assert api.client.delete("/v1/sessions/current", headers=user).json() == {"revoked": True}
    assert api.client.get("/v1/me", headers=user).status_code == 401


def test_session_cookie_authenticates(api: Api) -> None:
    session = api.session("a")
    api.client.cookies.set("traingate_session", session)
    try:
        me = api.client.get("/v1/me")
        assert me.status_code == 200 and me.json()["account_id"] == "a"
        assert api.client.get("/v1/accounts/a/privacy").status_code == 200
    finally:
        api.client.cookies.clear()


def test_sessions_only_for_known_live_accounts(api: Api, ev: Events) -> None:
    ingest = api.as_role("ingest")
    unknown = api.client.post("/v1/sessions", json={"account_id": "ghost"}, headers=ingest)
    assert unknown.status_code == 404
    api.ingest([ev.account_deleted("b", T(6))])
    deleted = api.client.post("/v1/sessions", json={"account_id": "b"}, headers=ingest)
    assert deleted.status_code == 403
    too_long = api.client.post(
        "/v1/sessions", json={"account_id": "a", "ttl_seconds": 10**9}, headers=ingest
    )
    assert too_long.status_code == 422


def test_cli_token_and_session_create(tmp_path: Path, ev: Events) -> None:
    done = run(["token", "create", "--role", "privacy_officer", "--name", "dpo"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    issued = json.loads(done.stdout)
    assert issued["role"] == "privacy_officer" and issued["token"].startswith("tgk_")
    refused = run(["token", "create", "--role", "root"], cwd=tmp_path)
    assert refused.returncode == 2
    events = "\n".join(json.dumps(e) for e in history(ev))
    assert run(["ingest", "-"], cwd=tmp_path, stdin=events).returncode == 0
    login = run(["session", "create", "--account", "a", "--ttl", "600"], cwd=tmp_path)
    assert login.returncode == 0, login.stderr
    assert json.loads(login.stdout)["login_path"].startswith("/login/tgs_")
    ghost = run(["session", "create", "--account", "ghost"], cwd=tmp_path)
    assert ghost.returncode == 2 and "not in the store" in ghost.stderr

    settings = Settings.resolve(
        db_url=f"sqlite:///{tmp_path / 'traingate-data' / 'traingate.sqlite'}",
        key_file=tmp_path / "traingate-data" / "keys.json",
    )
    with running_api(settings, tmp_path / "ds") as api:
        me = api.client.get("/v1/me", headers={"Authorization": f"Bearer {issued['token']}"})
        assert me.json()["role"] == "privacy_officer" and me.json()["name"] == "dpo"


def test_serve_runs_the_api(tmp_path: Path) -> None:
    token = json.loads(run(["token", "create", "--role", "analyst"], cwd=tmp_path).stdout)["token"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "traingate", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        spec = wait_until_serving(base, server)
        assert spec.json()["info"]["title"] == "traingate"
        me = httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert me.json()["role"] == "analyst"
        assert httpx.get(f"{base}/v1/me", timeout=5).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stderr is not None:
            server.stderr.close()
