"""Property tests over the published OpenAPI document (schemathesis): for requests generated
from every operation's schema, sent with a credential the operation admits, the API never
answers 5xx, and every 4xx carries the JSON error body ``{"error": {"code", "message"}}``.

Bounded: 20 examples per operation, on SQLite (the PostgreSQL side of every endpoint is in
test_api.py and test_api_auth.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from tests.api_support import Api, history, running_api
from tests.factories import Events
from traingate.api import openapi_document
from traingate.settings import Settings

# Who calls each operation: one role it admits, or "user" (a session of account ``a``).
CALLER = {
    ("POST", "/v1/events"): "ingest",
    ("POST", "/v1/feedback"): "user",
    ("GET", "/v1/feedback/{receipt}"): "user",
    ("DELETE", "/v1/feedback/{receipt}"): "user",
    ("GET", "/v1/conversations/{conversation_id}/explain"): "privacy_officer",
    ("GET", "/v1/conversations/{conversation_id}"): "user",
    ("DELETE", "/v1/conversations/{conversation_id}"): "user",
    ("GET", "/v1/accounts/{account_id}/privacy"): "privacy_officer",
    ("PUT", "/v1/accounts/{account_id}/consent"): "user",
    ("POST", "/v1/sessions"): "ingest",
    ("DELETE", "/v1/sessions/current"): "user",
    ("GET", "/v1/me"): "analyst",
    ("POST", "/v1/datasets"): "analyst",
    ("GET", "/v1/datasets"): "analyst",
    ("GET", "/v1/datasets/{dataset_id}"): "analyst",
    ("POST", "/v1/purge"): "privacy_officer",
    ("GET", "/v1/audit/verify"): "privacy_officer",
    ("GET", "/v1/audit/entries"): "privacy_officer",
}


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> dict[str, Any]:
    if isinstance(value, str | bytes):
        return {"data": value if isinstance(value, bytes) else value.encode("utf-8")}
    return {"data": json.dumps(value).encode("utf-8")}


@pytest.fixture
def fuzz_api(tmp_path: Path) -> Iterator[Api]:
    store = Settings(db_url=f"sqlite:///{tmp_path / 'fuzz.sqlite'}", key_file=tmp_path / "keys")
    with running_api(store, tmp_path / "datasets") as api:
        api.ingest(history(Events()))
        yield api


schema = schemathesis.openapi.from_dict(openapi_document())


def _role(method: str, path: str) -> str:
    """The caller of an operation; for a method the path does not have (schemathesis tries
    some), the caller of another method of the path."""
    if (method, path) in CALLER:
        return CALLER[(method, path)]
    return next(role for (_, known), role in CALLER.items() if known == path)


def _send(api: Api, case: Any) -> Any:
    role = _role(case.method.upper(), case.path)
    credential = api.session("a") if role == "user" else api.token(role)
    kwargs = case.as_transport_kwargs(
        base_url="http://testserver", headers={"Authorization": f"Bearer {credential}"}
    )
    data = kwargs.get("data")
    form = None
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif isinstance(data, Mapping):
        form, data = dict(data), None
    elif data is not None and not isinstance(data, bytes):
        data = json.dumps(data, default=str).encode("utf-8")
    headers = dict(kwargs.get("headers") or {})
    cookies = kwargs.get("cookies") or {}
    if cookies:  # a header: per-request cookies are deprecated in the test client
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    return api.client.request(
        kwargs["method"],
        kwargs["url"],
        headers=headers,
        params=kwargs.get("params"),
        json=kwargs.get("json"),
        content=data,
        data=form,
    )


def test_every_operation_is_covered(fuzz_api: Api) -> None:
    document = fuzz_api.client.get("/openapi.json").json()
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert operations == set(CALLER)
    assert document == openapi_document()


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_json_client_errors(case: Any, fuzz_api: Api) -> None:
    response = _send(fuzz_api, case)
    where = f"{case.method} {case.formatted_path}"
    assert response.status_code < 500, (where, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["error"]["code"], str) and body["error"]["code"], where
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], where
