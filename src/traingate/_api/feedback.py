"""Feedback reports: submit one (``POST /v1/feedback``), then read or delete it by receipt."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from traingate._access.credentials import Principal
from traingate._api.access import TG, Access, Caller, require_conversation
from traingate._api.body import FEEDBACK_LIMIT, media_type, read_body
from traingate._api.events import summary_response
from traingate._api.models import (
    INGEST_UNPROCESSABLE,
    FeedbackBody,
    FeedbackDeletedBody,
    FeedbackReceipt,
    error_responses,
)
from traingate._api.openapi import SERVER_ASSIGNED, feedback_schema
from traingate._api.problems import ApiError
from traingate._audit.actions import END_USER

__all__ = ["router"]

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])

Receipt = Annotated[
    str, Path(description="The receipt returned when the report was submitted.", max_length=256)
]


async def feedback_event(request: Request) -> dict[str, Any]:
    """The body: one ``feedback.submitted`` event as a JSON object, at most 1 MiB."""
    media = media_type(request)
    if media not in ("application/json", ""):
        raise ApiError(415, "unsupported_media_type", f"send application/json, not {media!r}")
    body = await read_body(request, limit=FEEDBACK_LIMIT)
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.setdefault("type", "feedback.submitted") != (
        "feedback.submitted"
    ):
        raise ApiError(422, "invalid_body", "the body must be one feedback.submitted event")
    return data


@router.post(
    "",
    summary="Submit one feedback report",
    status_code=201,
    response_model=FeedbackReceipt,
    responses={**INGEST_UNPROCESSABLE, **error_responses(400, 401, 403, 404, 409, 413, 415)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": feedback_schema()}},
        }
    },
)
def submit_feedback(
    principal: Annotated[Principal, Depends(Access("ingest", user=True))],
    tg: TG,
    event: Annotated[dict[str, Any], Depends(feedback_event)],
) -> Any:
    """Ingest one `feedback.submitted` event and return the receipt of its vaulted snapshot.

    An end user (a session) submits only for their own account, and only what a user chooses:
    `conversation_id`, `message_id`, `rating`, `comment`, `categories` (and `account_id`,
    their own, if at all). The server assigns `event_id`, `feedback_id` and the time, as for
    the conversation page's form: a body that sets them is refused (422), so a user can
    neither squat the backend's ids nor date a report. Another account's conversation and an
    unknown one give the same 404."""
    if principal.is_user and event.get("account_id", principal.account_id) != principal.account_id:
        raise ApiError(403, "forbidden", "a session may only submit feedback for its own account")
    if principal.is_user:
        return _submit_as_user(tg, principal, event)
    try:
        line = json.dumps(event, ensure_ascii=False)
    except RecursionError:
        raise ApiError(400, "invalid_json", "the body nests too deeply") from None
    summary = tg.events.ingest([line], actor=principal.actor)
    if summary.rejected:
        return summary_response(summary, receipts=False)
    if not summary.receipts:
        raise ApiError(
            409,
            "duplicate_feedback",
            f"event {event.get('event_id')!r} was already accepted; its receipt was returned "
            "then and cannot be issued again",
        )
    receipt = summary.receipts[0][2]
    info = tg.feedback.info(receipt)
    return JSONResponse({"receipt": receipt, "report": info.to_dict()}, status_code=201)


_USER_FIELDS = frozenset(
    {"type", "account_id", "conversation_id", "message_id", "rating", "comment", "categories"}
)


def _submit_as_user(tg: TG, principal: Principal, event: dict[str, Any]) -> JSONResponse:
    chosen = [name for name in SERVER_ASSIGNED if name in event]
    if chosen:
        raise ApiError(
            422,
            "server_assigned",
            f"an end user's report gets its event_id, feedback_id and time from the server:"
            f" leave out {', '.join(chosen)}",
        )
    unknown = sorted(set(event) - _USER_FIELDS)
    if unknown:
        raise ApiError(422, "invalid_body", f"unknown fields: {', '.join(unknown)}")
    conversation_id, categories = event.get("conversation_id"), event.get("categories", [])
    if not isinstance(conversation_id, str) or not isinstance(categories, list):
        raise ApiError(
            422, "invalid_body", "conversation_id must be a string and categories a list"
        )
    require_conversation(tg, principal, conversation_id)  # another's is unknown: one 404
    assert principal.account_id is not None
    receipt, info = tg.feedback.submit(
        account_id=principal.account_id,
        conversation_id=conversation_id,
        message_id=event.get("message_id"),  # type: ignore[arg-type]  # ingest validates
        rating=event.get("rating"),  # type: ignore[arg-type]
        comment=event.get("comment"),
        categories=categories,
        actor=END_USER,  # not the session: nothing joins the report to its account
    )
    return JSONResponse({"receipt": receipt, "report": info.to_dict()}, status_code=201)


@router.get(
    "/{receipt}",
    summary="Show a feedback report by its receipt",
    response_model=FeedbackBody,
    responses=error_responses(401, 404),
)
def show_feedback(principal: Caller, tg: TG, receipt: Receipt, request: Request) -> dict[str, Any]:
    """The stored, de-identified snapshot and its submission and expiry times. Audited as a
    count of the day's reads, with no report and no caller (docs/audit.md)."""
    info, snapshot = tg.feedback.show(
        receipt, actor=principal.actor, tally=request.app.state.receipt_uses
    )
    return {"report": info.to_dict(), "snapshot": snapshot.to_dict()}


@router.delete(
    "/{receipt}",
    summary="Delete a feedback report by its receipt",
    response_model=FeedbackDeletedBody,
    responses=error_responses(401, 404),
)
def delete_feedback(
    principal: Caller, tg: TG, receipt: Receipt, request: Request
) -> dict[str, Any]:
    """Crypto-shred the report: its data key and ciphertext are destroyed. Audited as a
    count of the day's deletions, with no report and no caller."""
    info = tg.feedback.delete(receipt, actor=principal.actor, tally=request.app.state.receipt_uses)
    return {"deleted": True, "report_id": info.report_id}
