"""Errors on pages are pages: a route class that turns traingate's exceptions into HTML.

The API answers every error in JSON (``traingate._api.problems``); a person in a browser gets a
page instead, with the same message: the page routes' own errors here (``PageRoute``), the
HTTP failures no route raises through the app's handlers (``traingate._server.errors``, which
ask ``wants_page`` and show ``status_page``). On the admin console a missing or expired
credential sends the browser to the console's login form; on the end-user pages it explains
how to get a new login link.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.routing import APIRoute

from traingate._errors import (
    AccessDeniedError,
    AuthenticationError,
    NotFoundError,
    ReceiptError,
    StoreError,
    TooLargeError,
    TraingateError,
)
from traingate._web.render import SECURITY_HEADERS, page

__all__ = ["PageRoute", "error_page", "status_page", "wants_page"]

ADMIN_PREFIX = "/admin"

_TITLES = {
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    413: "Too large",
    422: "That did not work",
    503: "Temporarily unavailable",
}


_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    413: "too_large",
    422: "invalid_value",
    503: "store_unavailable",
}


def _status(exc: TraingateError) -> int:
    if isinstance(exc, AuthenticationError):
        return 401
    if isinstance(exc, AccessDeniedError):
        return 403
    if isinstance(exc, NotFoundError | ReceiptError):
        return 404
    if isinstance(exc, StoreError):
        return 503
    if isinstance(exc, TooLargeError):
        return 413
    return 422


def error_page(request: Request, exc: TraingateError) -> Response:
    """The page for one of traingate's errors (or the admin login, for a missing credential)."""
    status = _status(exc)
    if "application/json" in request.headers.get("accept", ""):  # the pages' own scripts
        body = {"error": {"code": _CODES.get(status, "error"), "message": str(exc)}}
        return JSONResponse(body, status_code=status, headers=SECURITY_HEADERS)
    admin = request.url.path.startswith(ADMIN_PREFIX)
    if status == 401 and admin and request.method == "GET":
        target = quote(request.url.path, safe="/")
        return RedirectResponse(
            f"{ADMIN_PREFIX}/login?next={target}", status_code=303, headers=SECURITY_HEADERS
        )
    return page(
        request,
        "error.html",
        {
            "status": status,
            "title": _TITLES.get(status, "Error"),
            "message": str(exc),
            "admin": admin,
        },
        status_code=status,
    )


def wants_page(request: Request) -> bool:
    """A browser asking for something that is not the API: it gets pages, not JSON (the API,
    its document and its docs keep their JSON errors)."""
    path = request.url.path
    api = path.startswith(("/v1/", "/openapi.json", "/docs")) or path == "/v1"
    return not api and "text/html" in request.headers.get("accept", "")


def status_page(request: Request, status: int, message: str) -> Response:
    """An error page for an HTTP failure outside traingate's own errors (an unknown URL, a
    method the path does not take, a value that failed validation)."""
    titles = {**_TITLES, 404: "Not found", 405: "Not allowed", 422: "That did not work"}
    return page(
        request,
        "error.html",
        {
            "status": status,
            "title": titles.get(status, "Error"),
            "message": message,
            "admin": request.url.path.startswith(ADMIN_PREFIX),
        },
        status_code=status,
    )


class PageRoute(APIRoute):
    """An APIRoute whose traingate errors, raised by the view or its dependencies, render
    ``error.html`` instead of the API's JSON error body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except TraingateError as exc:
                return error_page(request, exc)

        return handle
