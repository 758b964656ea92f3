"""``POST /v1/events``: ingest a JSON array or an NDJSON body, as ``traingate ingest`` does."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from traingate._access.credentials import Principal
from traingate._api.access import TG, Access
from traingate._api.body import EVENTS_LIMIT, media_type, read_body
from traingate._api.models import INGEST_UNPROCESSABLE, IngestSummaryBody, error_responses
from traingate._api.openapi import event_schema
from traingate._api.problems import ApiError, error_body
from traingate._ingest import IngestSummary

__all__ = ["MAX_EVENTS", "EventLines", "router", "summary_response"]

MAX_EVENTS = 10_000
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-seq")

router = APIRouter(prefix="/v1", tags=["events"])


@dataclass(frozen=True, slots=True)
class EventLines:
    """The request's events as numbered text lines (line n = array element or NDJSON line n)."""

    lines: list[str]


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_body", f"the body is not UTF-8 text: {exc}") from None


def _too_many(count: int) -> ApiError:
    return ApiError(
        413,
        "too_many_events",
        f"at most {MAX_EVENTS} events per request; this one has {count}: split it",
    )


async def event_lines(request: Request) -> EventLines:
    """Read the body: ``application/json`` (an array of events) or NDJSON (one per line), at
    most 16 MiB (``_api/body.py``)."""
    media = media_type(request)
    if media not in (*NDJSON_TYPES, "application/json", ""):
        raise _unsupported(media)
    body = await read_body(request, limit=EVENTS_LIMIT)
    if media in NDJSON_TYPES:
        # As the command line reads a file or standard input: universal newlines, and bytes
        # that are not UTF-8 kept as lone surrogates, which reject only their own line (SPEC
        # §2: every valid event around it is kept).
        text = body.decode("utf-8", errors="surrogateescape")
        lines = list(io.StringIO(text, newline=None))
        count = sum(1 for line in lines if line.strip())
        if count > MAX_EVENTS:
            raise _too_many(count)
        return EventLines(lines=lines)
    if media in ("application/json", ""):
        try:
            data = json.loads(_text(body))
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, list):
            raise ApiError(
                422,
                "invalid_body",
                "an application/json body must be an array of events "
                "(send application/x-ndjson for one event per line)",
            )
        if len(data) > MAX_EVENTS:
            raise _too_many(len(data))
        try:
            return EventLines(lines=[json.dumps(item, ensure_ascii=False) for item in data])
        except RecursionError:
            raise ApiError(400, "invalid_json", "the body nests too deeply") from None
    raise _unsupported(media)


def _unsupported(media: str) -> ApiError:
    return ApiError(
        415,
        "unsupported_media_type",
        f"send events as application/json (an array) or application/x-ndjson, not {media!r}",
    )


def summary_response(summary: IngestSummary, *, receipts: bool) -> JSONResponse:
    """200 with the SPEC §4 summary when nothing was rejected; else 422 with the summary and
    an ``error`` naming how many events were rejected."""
    body: dict[str, Any] = summary.to_dict()
    if receipts:
        body["receipts"] = [
            {"line": line, "event_id": event_id, "receipt": receipt}
            for line, event_id, receipt in summary.receipts
        ]
    if summary.rejected == 0:
        return JSONResponse(body)
    total = summary.accepted + summary.duplicates + summary.rejected
    message = f"{summary.rejected} of {total} events rejected; see errors (each names its line)"
    return JSONResponse(error_body("events_rejected", message, **body), status_code=422)


_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"type": "array", "items": event_schema(), "maxItems": MAX_EVENTS}
        },
        "application/x-ndjson": {
            "schema": {"type": "string", "description": "One event (JSON object) per line."}
        },
    },
}


@router.post(
    "/events",
    summary="Ingest events",
    response_model=IngestSummaryBody,
    response_model_exclude_none=True,
    responses={**INGEST_UNPROCESSABLE, **error_responses(400, 401, 403, 413, 415)},
    openapi_extra={"requestBody": _BODY},
)
def post_events(
    principal: Annotated[Principal, Depends(Access("ingest"))],
    tg: TG,
    body: Annotated[EventLines, Depends(event_lines)],
    receipts: Annotated[
        bool, Query(description="Add the receipt of every accepted feedback report.")
    ] = False,
) -> JSONResponse:
    """Ingest a JSON array (`application/json`) or NDJSON (`application/x-ndjson`) body of at
    most 10,000 events, with the validation and the summary of `traingate ingest`."""
    # At most 10,000 events, parsed in the request's own process: no worker is ever started.
    summary = tg.events.ingest(body.lines, workers=0, actor=principal.actor)
    return summary_response(summary, receipts=receipts)
