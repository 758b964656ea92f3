"""Request bodies, read only after the caller is authenticated and never past their limit.

No route lets FastAPI read its body: each reads it in a dependency declared after the caller's
(``Access``, ``User``, ``Admin``), so an unauthenticated request is answered 401 before one
byte of its body is read. ``read_body`` refuses a declared ``Content-Length`` over the route's
limit at once and counts the bytes while they stream in (chunked bodies declare nothing),
raising ``TooLargeError`` (413, naming the limit) as soon as the count passes it.

Limits (docs/api.md): ``POST /v1/events`` 16 MiB, ``POST /v1/feedback`` 1 MiB, the other JSON
bodies 16 KiB, page forms 64 KiB.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from traingate._api.problems import ApiError
from traingate._errors import TooLargeError

__all__ = [
    "EVENTS_LIMIT",
    "FEEDBACK_LIMIT",
    "FORM_LIMIT",
    "JSON_LIMIT",
    "json_body",
    "json_request_body",
    "media_type",
    "read_body",
]

KIB = 1024
MIB = 1024 * KIB
EVENTS_LIMIT = 16 * MIB
FEEDBACK_LIMIT = 1 * MIB
JSON_LIMIT = 16 * KIB
FORM_LIMIT = 64 * KIB

M = TypeVar("M", bound=BaseModel)


def _size(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit // KIB} KiB"


def _too_large(limit: int) -> TooLargeError:
    return TooLargeError(f"the request body is larger than this route's limit of {_size(limit)}")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, *, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes; TooLargeError as soon as it is known to be more
    (from ``Content-Length``, or while it streams)."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def json_request_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route whose body ``json_body`` reads."""
    return {
        "required": required,
        "content": {"application/json": {"schema": model.model_json_schema()}},
    }


def json_body(
    model: type[M], *, limit: int = JSON_LIMIT, required: bool = True
) -> Callable[[Request], Awaitable[M | None]]:
    """A dependency reading the body as ``model`` (``application/json``, at most ``limit``
    bytes). Validation errors are the API's 422 ``invalid_request``; an empty body is None
    when the body is optional."""

    async def read(request: Request) -> M | None:
        media = media_type(request)
        raw = await read_body(request, limit=limit)
        if not raw.strip() and not required:
            return None
        if media not in ("application/json", ""):
            raise ApiError(
                415, "unsupported_media_type", f"send application/json, not {media or 'nothing'!r}"
            )
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
            raise RequestValidationError(errors) from None

    return read
