"""The OpenAPI document: FastAPI's, plus the SPEC §2 event schemas for the raw bodies of
``POST /v1/events`` and ``POST /v1/feedback`` (which read their bodies themselves, to validate
them exactly as ``traingate ingest`` does)."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from traingate.events import Event

__all__ = ["event_schema", "feedback_schema", "install_openapi"]

_REF = "#/components/schemas/{model}"
_AT = {
    "type": "string",
    "format": "date-time",
    "title": "At",
    "description": "RFC 3339: YYYY-MM-DDTHH:MM:SS[.fraction] then Z or +HH:MM/-HH:MM",
}


@cache
def _definitions() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the union's schema, the schemas of every event model), with ``at`` as a date-time."""
    schema = TypeAdapter(Event).json_schema(ref_template=_REF)
    defs: dict[str, Any] = schema.pop("$defs")
    for definition in defs.values():
        properties = definition.get("properties", {})
        if "at" in properties:
            properties["at"] = dict(_AT)
    return schema, defs


def event_schema() -> dict[str, Any]:
    """Any one event (a reference into components)."""
    return copy.deepcopy(_definitions()[0])


def feedback_schema() -> dict[str, Any]:
    return {"$ref": _REF.format(model="FeedbackSubmitted")}


def install_openapi(app: FastAPI) -> None:
    """Serve FastAPI's document with the event models added to its components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(copy.deepcopy(_definitions()[1]))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
