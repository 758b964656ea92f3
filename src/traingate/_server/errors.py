"""The app's error handlers: where the API and the pages meet on a failure.

The API answers every error in its one JSON shape (``traingate._api.problems``). An HTTP
failure outside traingate's own errors (an unknown URL, a method the path does not take, a
value that failed validation) asked for by a browser on a page route is a page instead
(``traingate._web.errors``), with the same status, message and headers. The page routes turn
traingate's own errors into pages themselves (``PageRoute``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from traingate._api.problems import (
    ApiError,
    Problem,
    api_error_response,
    http_problem,
    traingate_error_response,
    unexpected_error_response,
    validation_problem,
)
from traingate._errors import TraingateError
from traingate._web.errors import status_page, wants_page

__all__ = ["install_handlers"]


def install_handlers(app: FastAPI) -> None:
    """Every error response in the API's one JSON shape, or a page for a browser on a page."""

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return _answer(request, http_problem(request, exc))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _answer(request, validation_problem(exc))

    app.add_exception_handler(ApiError, api_error_response)
    app.add_exception_handler(TraingateError, traingate_error_response)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, unexpected_error_response)


def _answer(request: Request, problem: Problem) -> Response:
    """A page for a browser on a page route (docs/web.md), the API's JSON for anyone else."""
    if wants_page(request):
        shown = status_page(request, problem.status, problem.message)
        shown.headers.update(problem.headers)
        return shown
    return problem.response()
