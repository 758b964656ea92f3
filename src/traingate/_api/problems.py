"""Every error the API returns is JSON: ``{"error": {"code": ..., "message": ...}}``.

``ApiError`` is raised by the routers for HTTP-only failures; traingate's own exceptions map to
a status here, once; FastAPI's and Starlette's own errors (404, 405, 422 validation) are
rewritten into the same shape (``Problem``). The app's handlers (``traingate._server.errors``)
answer with these, or a browser on a page route with a page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from traingate._errors import (
    AccessDeniedError,
    AuthenticationError,
    BuildError,
    EventError,
    NotFoundError,
    PolicyError,
    ReceiptError,
    StoreError,
    TimestampError,
    TooLargeError,
    TraingateError,
)

__all__ = [
    "ApiError",
    "Problem",
    "api_error_response",
    "error_body",
    "http_problem",
    "traingate_error_response",
    "unexpected_error_response",
    "validation_problem",
]

_log = logging.getLogger("traingate._api")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}

# traingate's exceptions, most specific first: (class, status, code)
_MAPPING: tuple[tuple[type[TraingateError], int, str], ...] = (
    (AuthenticationError, 401, "unauthorized"),
    (AccessDeniedError, 403, "forbidden"),
    (ReceiptError, 404, "receipt_not_found"),
    (NotFoundError, 404, "not_found"),
    (TooLargeError, 413, "too_large"),
    (TimestampError, 422, "invalid_time"),
    (EventError, 422, "invalid_event"),
    (PolicyError, 422, "invalid_policy_value"),
    (BuildError, 422, "build_refused"),
)


class ApiError(Exception):
    """An HTTP failure raised by a router: status, machine code, human message, and extra
    top-level fields of the body (e.g. the ingest summary beside the error)."""

    def __init__(
        self, status: int, code: str, message: str, *, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {**extra, "error": {"code": code, "message": message}}


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=body, headers=headers)


def _auth_headers(status: int) -> dict[str, str] | None:
    return {"WWW-Authenticate": 'Bearer realm="traingate"'} if status == 401 else None


def _field(loc: tuple[int | str, ...] | list[int | str]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"query", "path", "header", "cookie"}:
        return f"{parts[0]} parameter {'.'.join(parts[1:])!r}"
    if parts and parts[0] == "body":
        return f"body field {'.'.join(parts[1:]) or '(body)'!r}"
    return ".".join(parts)


def _where(request: Request) -> str:
    """The request as the log names it: method and route template, never the path (paths
    carry feedback receipts and login links)."""
    route = getattr(request.scope.get("route"), "path", None)
    return f"{request.method} {route or '(no route)'}"


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route takes on this path (Starlette names only the first route's)."""
    from fastapi.routing import iter_route_contexts

    path = request.scope.get("path", request.url.path)
    methods: set[str] = set()
    for context in iter_route_contexts(request.app.routes):
        regex = getattr(context, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= set(getattr(context, "methods", None) or ())
    return sorted(methods - {"HEAD"})


@dataclass(frozen=True)
class Problem:
    """An HTTP failure outside traingate's own errors (an unknown URL, a method the path does
    not take, a value that failed validation), as the API states it. The app
    (``traingate._server``) answers it in JSON here, or a browser on a page route with a page."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    problems: list[dict[str, str]] | None = None  # a validation error's fields

    def response(self) -> JSONResponse:
        extra = {} if self.problems is None else {"problems": self.problems}
        body = error_body(self.code, self.message, **extra)
        return _json(self.status, body, self.headers or _auth_headers(self.status))


def http_problem(request: Request, exc: StarletteHTTPException) -> Problem:
    """FastAPI's and Starlette's own HTTP errors (404, 405 with ``Allow``, ...)."""
    status = exc.status_code
    code = _CODES.get(status, "error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    if status == 404 and detail == "Not Found":
        detail = f"no such resource: {request.method} {request.url.path}"
    headers = dict(exc.headers or {})
    if status == 405:
        allowed = _allowed_methods(request)
        detail = (
            f"method {request.method} is not allowed on {request.url.path};"
            f" allowed: {', '.join(allowed)}"
        )
        headers["Allow"] = ", ".join(allowed)
    return Problem(status, code, detail, headers)


def validation_problem(exc: RequestValidationError) -> Problem:
    """A request that failed validation: every field named, in ``problems`` too."""
    problems = [
        {"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
        for e in exc.errors()
    ]
    message = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "invalid request"
    return Problem(422, "invalid_request", message, problems=problems)


async def api_error_response(request: Request, exc: Exception) -> JSONResponse:
    """An ``ApiError`` a router raised."""
    assert isinstance(exc, ApiError)
    headers = _auth_headers(exc.status)
    return _json(exc.status, error_body(exc.code, exc.message, **exc.extra), headers)


async def traingate_error_response(request: Request, exc: Exception) -> JSONResponse:
    """One of traingate's errors, at its status (a store failure is 503, its details logged)."""
    if isinstance(exc, StoreError):  # the details (paths, SQL) are for the log only
        _log.warning("store error on %s: %s", _where(request), exc)
        return _json(503, error_body("store_unavailable", "the store is unavailable; retry"))
    for cls, status, code in _MAPPING:
        if isinstance(exc, cls):
            return _json(status, error_body(code, str(exc)), _auth_headers(status))
    _log.error("unmapped %s on %s: %s", type(exc).__name__, _where(request), exc)
    return _json(500, error_body("internal_error", "internal error; see the server log"))


async def unexpected_error_response(request: Request, exc: Exception) -> JSONResponse:
    """Anything else: a bug, told the caller without its details."""
    return _json(500, error_body("internal_error", "internal error; see the server log"))
