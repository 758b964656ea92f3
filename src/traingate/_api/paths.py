"""Ids in paths: every id SPEC §2 accepts (``/``, ``%``, ``?``, ``#``, spaces, non-ASCII, up to
512 characters) works as one path segment, percent-encoded by the caller.

The server decodes the whole path before routing, so an encoded ``/`` (``%2F``) would split
the id into two segments and match no route. ``KeepEncodedSlashes`` (ASGI middleware) rebuilds
the routed path from the raw one segment by segment, leaving ``/`` and ``%`` inside a segment
encoded (``%2F``, ``%25``); the path parameters typed ``PathId`` decode those two back. Links
the pages write quote every character but the unreserved ones (``render.py``'s ``urlencode``).

An id that is exactly ``.`` or ``..`` cannot travel as itself: browsers and HTTP clients
resolve such a segment before sending, encoded (``%2E``) or not. It travels as ``%C0%AE``
(``.``) or ``%C0%AE%C0%AE`` (``..``), the overlong UTF-8 form of the dot, which no client
resolves and which names no other id (every id is valid UTF-8, and these bytes are not).
``path_segment`` writes an id so (the pages' links use it); the middleware reads it back.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any
from urllib.parse import quote, unquote

from pydantic import AfterValidator

__all__ = ["MAX_ID_IN_PATH", "KeepEncodedSlashes", "PathId", "decode_segment", "path_segment"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_ID_IN_PATH = 3 * 512  # an id of 512 characters, each ``/`` or ``%`` kept as three
_KEPT = re.compile(r"%(25|2F)")


# The ids that are dot segments, as they travel (overlong UTF-8 of "."), and back.
_DOT = "%C0%AE"
_DOTS = {".": _DOT, "..": _DOT * 2}
_FROM_DOTS = {sent: name for name, sent in _DOTS.items()}


def path_segment(value: str) -> str:
    """An id as one path segment: every character but the unreserved ones percent-encoded
    (``/`` included), and ``.`` / ``..`` as their overlong forms (module docstring)."""
    return _DOTS.get(value) or quote(value, safe="")


def _keep(segment: str) -> str:
    dots = _FROM_DOTS.get(segment.upper())
    if dots is not None:
        return dots
    return unquote(segment).replace("%", "%25").replace("/", "%2F")


def decode_segment(value: str) -> str:
    """A path parameter as the caller meant it: ``%2F`` and ``%25`` (kept by the
    middleware) become ``/`` and ``%``."""
    return _KEPT.sub(lambda m: "/" if m.group(1) == "2F" else "%", value)


PathId = Annotated[str, AfterValidator(decode_segment)]


class KeepEncodedSlashes:
    """Route on the raw path's segments, each decoded but for its ``/`` and ``%``."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] in ("http", "websocket") else None
        if raw and b"%" in raw:
            text = raw.decode("latin-1").split("?", 1)[0]
            scope = dict(scope)
            scope["path"] = "/".join(_keep(segment) for segment in text.split("/"))
        await self.app(scope, receive, send)
