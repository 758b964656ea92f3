"""Every error the API returns is JSON: ``{"error": {"code": ..., "message": ...}}``.

``ApiError`` is raised by the routers for HTTP-only failures; traingate's own exceptions map to
a status here, once; FastAPI's and Starlette's own errors (404, 405, 422 validation) are
rewritten into the same shape.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, Response
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

__all__ = ["ApiError", "error_body", "install_handlers"]

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


def _wants_page(request: Request) -> bool:
    """A browser on a page route (docs/web.md): errors there are pages, not JSON."""
    from traingate._web.errors import wants_page

    return wants_page(request)


def install_handlers(app: FastAPI) -> None:
    """Make every error response JSON in the one shape."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        headers = _auth_headers(exc.status)
        return _json(exc.status, error_body(exc.code, exc.message, **exc.extra), headers)

    async def on_traingate_error(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, StoreError):  # the details (paths, SQL) are for the log only
            _log.warning("store error on %s: %s", _where(request), exc)
            return _json(503, error_body("store_unavailable", "the store is unavailable; retry"))
        for cls, status, code in _MAPPING:
            if isinstance(exc, cls):
                return _json(status, error_body(code, str(exc)), _auth_headers(status))
        _log.error("unmapped %s on %s: %s", type(exc).__name__, _where(request), exc)
        return _json(500, error_body("internal_error", "internal error; see the server log"))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
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
        if _wants_page(request):
            from traingate._web.errors import status_page

            shown = status_page(request, status, detail)
            shown.headers.update(headers)
            return shown
        return _json(status, error_body(code, detail), headers or _auth_headers(status))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        message = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "invalid request"
        if _wants_page(request):
            from traingate._web.errors import status_page

            return status_page(request, 422, message)
        return _json(422, error_body("invalid_request", message, problems=problems))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _json(500, error_body("internal_error", "internal error; see the server log"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(TraingateError, on_traingate_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
