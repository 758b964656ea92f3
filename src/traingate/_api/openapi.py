"""The OpenAPI document: FastAPI's, plus the SPEC §2 event schemas for the raw bodies of
``POST /v1/events`` and ``POST /v1/feedback`` (which read their bodies themselves, to validate
them exactly as ``traingate ingest`` does), made as strict as the server (issue 19, finding 11).

What the server checks, the document states:

- every instant is a ``date-time`` (``as_of`` parameters and bodies, event ``at``);
- ``purpose``, ``plan`` and consent ``setting`` are enums of what the app's policies declare
  (read from the ``PolicySet`` the app was created with: no id is written here), ``engine``
  the build engines;
- every error status an operation can answer, each with the one error body: ``401`` (with
  ``WWW-Authenticate``) and ``503`` everywhere, ``403`` where a role or the CSRF check can
  refuse, ``413`` and ``415`` where a body is read, ``422`` where a parameter or a body is
  validated; FastAPI's own validation-error schema is replaced by the body the API really
  sends. ``405`` (with ``Allow``) answers a method a path does not have: see the description.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import cache
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from traingate._api.models import REPORTED, IngestRejectedBody
from traingate._core.events import Event
from traingate._core.policy.versions import PolicySet
from traingate._datasets import ENGINES

__all__ = ["event_schema", "feedback_schema", "install_openapi", "strict_document"]

_REF = "#/components/schemas/{model}"
_AT = {
    "type": "string",
    "format": "date-time",
    "title": "At",
    "description": "RFC 3339: YYYY-MM-DDTHH:MM:SS[.fraction] then Z or +HH:MM/-HH:MM, within"
    " SPEC §2's range [1970-01-01T00:00:00Z, 9000-01-01T00:00:00Z)",
}
_ERROR = {"$ref": _REF.format(model="ErrorBody")}
_UNSAFE = frozenset({"post", "put", "patch", "delete"})  # the CSRF check applies (403)
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
_FASTAPI_422 = {"$ref": _REF.format(model="HTTPValidationError")}


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
    """The body of ``POST /v1/feedback``: the event as the backend sends it (a token), or the
    report as an end user sends it (a session; the server assigns the rest)."""
    return {
        "oneOf": [
            {"$ref": _REF.format(model="FeedbackReport")},
            {"$ref": _REF.format(model="EndUserReport")},
        ]
    }


# What an end user's report leaves to the server (_api/feedback.py refuses them: 422
# ``server_assigned``).
SERVER_ASSIGNED = ("event_id", "feedback_id", "at")


def _feedback_bodies() -> dict[str, Any]:
    """``FeedbackReport`` (a feedback.submitted event whose ``type`` may be left out, as the
    route fills it in) and ``EndUserReport`` (the same without the fields the server assigns),
    from the event's own schema."""
    event = _definitions()[1]["FeedbackSubmitted"]
    report = copy.deepcopy(event)
    report["required"] = [name for name in event["required"] if name != "type"]
    report["title"] = "FeedbackReport"
    report["description"] = "A token's report: one feedback.submitted event (SPEC §2)."
    user = copy.deepcopy(report)
    for name in SERVER_ASSIGNED:
        user["properties"].pop(name)
    user["required"] = [name for name in report["required"] if name not in SERVER_ASSIGNED]
    user["title"] = "EndUserReport"
    user["description"] = (
        "A session's report, for its own account: the server assigns event_id, feedback_id"
        " and the time (a body that sets them is 422 server_assigned)."
    )
    return {"FeedbackReport": report, "EndUserReport": user}


def _enums(policies: PolicySet) -> dict[str, list[str]]:
    """The values each policy-declared field may take: property or parameter name -> enum."""
    return {
        "purpose": list(policies.purposes),
        "plan": list(policies.plans),
        "setting": list(policies.settings),
        "engine": list(ENGINES),
    }


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in ``node``, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def _string_schemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The string schemas of a property (``anyOf`` branches too: nullable fields)."""
    if schema.get("type") == "string":
        yield schema
    for branch in schema.get("anyOf", ()):
        if isinstance(branch, dict) and branch.get("type") == "string":
            yield branch


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without FastAPI's ``null`` branch (a query parameter is absent or
    a string, never null), its outer keywords (``format``) moved into the one branch left."""
    branches = [b for b in schema.get("anyOf", ()) if b != {"type": "null"}]
    if "anyOf" not in schema or len(branches) != 1:
        return schema
    outer = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**outer, **branches[0]}


def _add_enums(document: dict[str, Any], enums: dict[str, list[str]]) -> None:
    """The enums on every property and parameter so named, but those of the objects nested in
    response bodies (marked ``REPORTED``: the store's values, which policies since may not
    declare; the mark is dropped)."""
    for node in list(_objects(document)):
        properties = node.get("properties")
        if node.pop(REPORTED, False):
            continue
        if isinstance(properties, dict):
            for name, values in enums.items():
                if isinstance(properties.get(name), dict):
                    for schema in _string_schemas(properties[name]):
                        schema["enum"] = list(values)
        if node.get("in") in ("query", "path"):
            node["schema"] = _not_null(node.get("schema", {}))
        if node.get("in") in ("query", "path") and node.get("name") in enums:
            for schema in _string_schemas(node.get("schema", {})):
                schema["enum"] = list(enums[node["name"]])


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": dict(_ERROR)}},
    }
    if headers:
        response["headers"] = headers
    return response


_UNAUTHORIZED = _error(
    "No credential, or one that is not valid (unknown, expired, revoked, malformed).",
    {
        "WWW-Authenticate": {
            "description": 'Always `Bearer realm="traingate"`.',
            "schema": {"type": "string"},
        }
    },
)
_FORBIDDEN = _error(
    "The caller's role or session may not do this, or a request authenticated by the session"
    " cookie lacks the X-CSRF-Token header or comes from another site."
)
_UNAVAILABLE = _error("The store is unavailable; retry.")
_TOO_LARGE = _error("The body is larger than the route's limit (named in the message).")
_UNSUPPORTED = _error("The body's Content-Type is not one the route reads.")
_INVALID = _error(
    "A parameter or body failed validation (each problem in `problems`), an instant is"
    " outside SPEC §2's range, or a value names nothing the policies declare."
)


def _add_errors(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            wanted = {"401": _UNAUTHORIZED, "503": _UNAVAILABLE}
            if method in _UNSAFE or "403" in responses:  # the CSRF check, or a role (Access)
                wanted["403"] = _FORBIDDEN
            if "requestBody" in operation:
                wanted |= {"413": _TOO_LARGE, "415": _UNSUPPORTED, "422": _INVALID}
            if operation.get("parameters"):
                wanted["422"] = _INVALID
            for status, response in wanted.items():
                if _schema_of(responses.get(status)) in (None, _ERROR, _FASTAPI_422):
                    responses[status] = copy.deepcopy(response)
            for status, response in list(responses.items()):  # FastAPI's own 422 schema
                if _schema_of(response) == _FASTAPI_422:
                    responses[status] = copy.deepcopy(_INVALID)


def _schema_of(response: dict[str, Any] | None) -> Any:
    if response is None:
        return None
    return response.get("content", {}).get("application/json", {}).get("schema", {})


def strict_document(document: dict[str, Any], *, policies: PolicySet) -> dict[str, Any]:
    """``document`` with the event models, the policies' enums and every error response."""
    document = copy.deepcopy(document)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(copy.deepcopy(_definitions()[1]))
    schemas.update(_feedback_bodies())
    rejected = IngestRejectedBody.model_json_schema(ref_template=_REF)
    schemas.update(rejected.pop("$defs", {}))
    schemas["IngestRejectedBody"] = rejected
    _add_enums(document, _enums(policies))
    _add_errors(document)
    return document


def install_openapi(app: FastAPI, *, policies: PolicySet) -> None:
    """Serve FastAPI's document made strict (``strict_document``) for ``policies``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = strict_document(document, policies=policies)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
