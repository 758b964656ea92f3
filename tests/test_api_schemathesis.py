"""Property tests over the published OpenAPI document (schemathesis), with every check it has.

The document is the one the app serves, built from the app's policies (the enums of
``purpose``, ``plan`` and ``setting``). Every operation's generated requests, positive and
negative, are sent by every kind of caller there is: no credential, a token of each role, an
end-user session as a bearer credential, and the session cookie (with its CSRF token). Every
response is checked with all of schemathesis's checks: no 5xx, a status the document lists,
the content type and the body schema it states, declared headers, invalid data rejected,
valid data accepted, authentication enforced (re-sent without it), 405 with ``Allow`` for
other methods.

One check is narrowed, with its reason. ``positive_data_acceptance`` is replaced by
``valid_data_is_accepted_or_refused_by_a_rule``: schema-valid data may still be refused with
422 by a rule no schema states (SPEC §2's store rules: an unknown message, another account's
conversation, a reused id; an instant whose offset takes it out of the range; a purge as of
the future; a session's report that sets what the server assigns, since a JSON Schema cannot
make a body depend on the credential); such a 422 must name the rule (its code), never
``invalid_request`` or ``invalid_body``, which would mean the server refuses what its document
allows.

Bounded for CI: 4 examples per operation and caller (18 operations, 7 callers: about 500
requests plus the probes the checks re-send), on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import CheckContext
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.api_support import Api, history, running_api
from tests.factories import Events
from traingate._api.access import SESSION_COOKIE, csrf_token
from traingate._server import openapi_document
from traingate._settings import Settings

# Every operation, with one caller it admits (a role, "session" or "cookie": account a).
ADMITTED = {
    ("POST", "/v1/events"): "ingest",
    ("POST", "/v1/feedback"): "session",
    ("GET", "/v1/feedback/{receipt}"): "session",
    ("DELETE", "/v1/feedback/{receipt}"): "cookie",
    ("GET", "/v1/conversations/{conversation_id}/explain"): "privacy_officer",
    ("GET", "/v1/conversations/{conversation_id}"): "cookie",
    ("DELETE", "/v1/conversations/{conversation_id}"): "session",
    ("GET", "/v1/accounts/{account_id}/privacy"): "privacy_officer",
    ("PUT", "/v1/accounts/{account_id}/consent"): "cookie",
    ("POST", "/v1/sessions"): "ingest",
    ("DELETE", "/v1/sessions/current"): "cookie",
    ("GET", "/v1/me"): "analyst",
    ("POST", "/v1/datasets"): "analyst",
    ("GET", "/v1/datasets"): "analyst",
    ("GET", "/v1/datasets/{dataset_id}"): "analyst",
    ("POST", "/v1/purge"): "privacy_officer",
    ("GET", "/v1/audit/verify"): "privacy_officer",
    ("GET", "/v1/audit/entries"): "privacy_officer",
}
# Who sends a request: nobody, a token of each role, a session (header or cookie). Each
# operation is run as each of them, and once more as the one it admits ("admitted"), so that
# more of its examples reach its code.
CALLERS = ("none", "ingest", "analyst", "privacy_officer", "session", "cookie")
RULE_CODES = frozenset(
    {
        "events_rejected",
        "invalid_time",
        "invalid_event",
        "invalid_policy_value",
        "build_refused",
        "server_assigned",  # a session's report may not set what the server assigns
    }
)


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> dict[str, Any]:
    if isinstance(value, str | bytes):
        return {"data": value if isinstance(value, bytes) else value.encode("utf-8")}
    return {"data": json.dumps(value).encode("utf-8")}


class Server:
    """The app as schemathesis's ASGI transport sees it: requests go to the running app;
    lifespan messages are answered here, so the transport's client never shuts it down."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One app for the module (each test's examples change its store: sessions end,
    conversations are deleted, reports submitted; every example still has a fresh session)."""
    tmp_path = tmp_path_factory.mktemp("schemathesis")
    store = Settings(db_url=f"sqlite:///{tmp_path / 'fuzz.sqlite'}", key_file=tmp_path / "keys")
    with running_api(store, tmp_path / "datasets") as api:
        api.ingest(history(Events()))
        yield api


@pytest.fixture(scope="module")
def server(fuzz_api: Api) -> Server:
    """One per module: schemathesis keeps a lifespan per ASGI app until the process ends."""
    return Server(fuzz_api.client.app)


# The document of the default policy, which the test app runs (the first test checks that it
# is the one the app serves). Requests go to each test's app (``_send``).
schema = schemathesis.openapi.from_dict(
    openapi_document(),
    config=schemathesis.config.SchemathesisConfig.from_dict(
        {
            "checks": {"positive_data_acceptance": {"enabled": False}},
            # A write can wait for a build the examples queued (SQLite's busy timeout is 30 s)
            # on a loaded machine: the default 10 s made a purge time out.
            "request-timeout": 60,
        }
    ),
)


def test_every_operation_is_covered_and_the_document_is_the_apps(fuzz_api: Api) -> None:
    document = fuzz_api.client.get("/openapi.json").json()
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert operations == set(ADMITTED)
    assert document == openapi_document()


def valid_data_is_accepted_or_refused_by_a_rule(
    ctx: CheckContext, response: Any, case: Any
) -> bool | None:
    """``positive_data_acceptance``, but a 422 naming a rule (``RULE_CODES``) is an answer."""
    if response.status_code == 422:
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if code in RULE_CODES:
            return None
    return positive_data_acceptance(ctx, response, case)


def _credentials(api: Api, caller: str) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, cookies) of a caller; a fresh session each time (a case may end its own)."""
    if caller == "none":
        return {}, {}
    if caller in ("session", "cookie"):
        session = api.session("a")
        if caller == "session":
            return {"Authorization": f"Bearer {session}"}, {}
        return {"X-CSRF-Token": csrf_token(session)}, {SESSION_COOKIE: session}
    return {"Authorization": f"Bearer {api.token(caller)}"}, {}


@pytest.mark.parametrize("caller", ["admitted", *CALLERS])
@schema.parametrize()
@settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_its_document_says(
    case: Any, caller: str, fuzz_api: Api, server: Server
) -> None:
    if caller == "admitted":
        caller = ADMITTED[(case.method.upper(), case.path)]
    if isinstance(case.body, dict) and case.body.get("engine") == "spark":
        # A Spark build starts a JVM in the background: too slow for this bounded run on a
        # shared machine. The route is the same for every engine (tests/test_spark.py builds
        # with Spark); the request stays schema-valid.
        case.body["engine"] = "duckdb"
    headers, cookies = _credentials(fuzz_api, caller)
    case.operation.schema.app = server  # the in-process (ASGI) transport
    case.call_and_validate(
        app=server,
        headers={**(case.headers or {}), **headers},
        cookies=cookies or None,
        additional_checks=[valid_data_is_accepted_or_refused_by_a_rule],
    )
