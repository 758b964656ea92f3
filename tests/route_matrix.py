"""Who may call every route of the app: the role-by-route matrix (docs/api.md, docs/web.md).

``MATRIX`` maps each route of the app's route table, as ``(method, path template)``, to the
path to call, the request's keywords, and the callers allowed. A route missing from it fails
``test_every_route_is_in_the_matrix``: a new route must say who may call it.

Callers: ``nobody``, the token roles ``ingest``, ``analyst``, ``privacy_officer``, and
``user`` (a session of account ``a``, the owner of conversation ``c``). ``PUBLIC`` routes need
no credential (the login forms, the login link, whose path is its own credential, and the
API's documentation). API routes take the credential as a bearer token; pages take it from
their cookies (the session cookie on the end-user pages, the console's cookie under /admin).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from tests.factories import Events

T = Events.t

ROLES = ("ingest", "analyst", "privacy_officer")
CALLERS = ("nobody", *ROLES, "user")
EVERYONE = frozenset({*ROLES, "user"})

Route = tuple[str, str]  # method, path template
Call = tuple[str, dict[str, Any], frozenset[str]]  # path, request keywords, callers allowed

PUBLIC: frozenset[Route] = frozenset(
    {
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"),
        ("GET", "/docs-assets"),
        ("GET", "/static"),
        ("GET", "/"),
        ("GET", "/login/{session_token}"),
        ("GET", "/admin/login"),
        ("POST", "/admin/login"),
    }
)


def _allow(*callers: str) -> frozenset[str]:
    return frozenset(callers)


def matrix(ev: Events) -> dict[Route, Call]:
    """Every guarded route; destructive calls (deleting ``c``) come last."""
    feedback = ev.feedback("f-matrix", "a", "c", "m2", T(5))
    api: dict[Route, Call] = {
        ("POST", "/v1/events"): ("/v1/events", {"json": []}, _allow("ingest")),
        ("POST", "/v1/feedback"): ("/v1/feedback", {"json": feedback}, _allow("ingest", "user")),
        ("POST", "/v1/sessions"): ("/v1/sessions", {"json": {"account_id": "a"}}, _allow("ingest")),
        ("GET", "/v1/feedback/{receipt}"): ("/v1/feedback/abc", {}, EVERYONE),
        ("DELETE", "/v1/feedback/{receipt}"): ("/v1/feedback/abc", {}, EVERYONE),
        ("GET", "/v1/me"): ("/v1/me", {}, EVERYONE),
        ("DELETE", "/v1/sessions/current"): ("/v1/sessions/current", {}, _allow("user")),
        ("GET", "/v1/datasets"): ("/v1/datasets", {}, _allow("analyst")),
        ("GET", "/v1/datasets/{dataset_id}"): ("/v1/datasets/job-none", {}, _allow("analyst")),
        ("POST", "/v1/datasets"): ("/v1/datasets", {"json": {"purpose": "no"}}, _allow("analyst")),
        ("GET", "/v1/conversations/{conversation_id}/explain"): (
            "/v1/conversations/c/explain",
            {"params": {"purpose": "model_training"}},
            _allow("privacy_officer", "user"),
        ),
        ("GET", "/v1/conversations/{conversation_id}"): ("/v1/conversations/c", {}, _allow("user")),
        ("GET", "/v1/accounts/{account_id}/privacy"): (
            "/v1/accounts/a/privacy",
            {},
            _allow("privacy_officer", "user"),
        ),
        ("PUT", "/v1/accounts/{account_id}/consent"): (
            "/v1/accounts/a/consent",
            {"json": {"granted": True}},
            _allow("user"),
        ),
        ("POST", "/v1/purge"): ("/v1/purge", {"json": {"as_of": T(0)}}, _allow("privacy_officer")),
        ("GET", "/v1/audit/verify"): ("/v1/audit/verify", {}, _allow("privacy_officer")),
        ("GET", "/v1/audit/entries"): ("/v1/audit/entries", {}, _allow("privacy_officer")),
    }
    console = _allow("analyst", "privacy_officer")
    pages: dict[Route, Call] = {
        ("GET", "/privacy"): ("/privacy", {}, _allow("user")),
        ("POST", "/privacy/consent"): (
            "/privacy/consent",
            {"data": {"granted": "true"}},
            _allow("user"),
        ),
        ("GET", "/conversations/{conversation_id}"): ("/conversations/c", {}, _allow("user")),
        ("POST", "/conversations/{conversation_id}/feedback"): (
            "/conversations/c/feedback",
            {"data": {"message_id": "m2", "rating": "up"}},
            _allow("user"),
        ),
        ("POST", "/logout"): ("/logout", {"data": {}}, _allow("user")),
        ("POST", "/admin/logout"): ("/admin/logout", {"data": {}}, console),
        ("GET", "/admin"): ("/admin", {}, console),
        ("GET", "/admin/builds"): ("/admin/builds", {}, _allow("analyst")),
        ("POST", "/admin/builds"): (
            "/admin/builds",
            {"data": {"purpose": "no"}},
            _allow("analyst"),
        ),
        ("GET", "/admin/builds/{build_id}"): ("/admin/builds/b-none", {}, _allow("analyst")),
        ("GET", "/admin/builds/{build_id}/status"): (
            "/admin/builds/b-none/status",
            {},
            _allow("analyst"),
        ),
        ("GET", "/admin/builds/{build_id}/verify"): (
            "/admin/builds/b-none/verify",
            {},
            _allow("analyst"),
        ),
        ("GET", "/admin/explain"): ("/admin/explain", {}, _allow("privacy_officer")),
        ("GET", "/admin/policy"): ("/admin/policy", {}, console),
        ("GET", "/admin/retention"): ("/admin/retention", {}, _allow("privacy_officer")),
        ("POST", "/admin/purge"): ("/admin/purge", {"data": {}}, _allow("privacy_officer")),
    }
    last: dict[Route, Call] = {
        ("POST", "/conversations/{conversation_id}/delete"): (
            "/conversations/c/delete",
            {"data": {}},
            _allow("user"),
        ),
        ("DELETE", "/v1/conversations/{conversation_id}"): (
            "/v1/conversations/c",
            {},
            _allow("user"),
        ),
    }
    return api | pages | last


def routes(app: FastAPI) -> Iterator[Route]:
    """Every (method, path template) of the app's route table (HEAD aside)."""
    for context in iter_route_contexts(app.routes):
        methods = getattr(context, "methods", None) or {"GET"}
        for method in sorted(methods - {"HEAD"}):
            yield method, context.path


def is_page(path: str) -> bool:
    return not path.startswith("/v1/")
