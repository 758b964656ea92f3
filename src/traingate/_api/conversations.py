"""Conversations: explain one (``GET …/explain``), read or delete one's own."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from traingate._access.credentials import Principal
from traingate._api.access import TG, Access, require_conversation
from traingate._api.models import (
    ConversationBody,
    ConversationDeletedBody,
    ExplanationBody,
    error_responses,
)
from traingate._api.paths import MAX_ID_IN_PATH, PathId
from traingate._core.timeutil import format_instant, parse_instant

__all__ = ["AsOf", "as_of_param", "router"]

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

ConversationId = Annotated[
    PathId,
    Path(
        max_length=MAX_ID_IN_PATH,
        description="The conversation's id, percent-encoded (`/` as `%2F`).",
    ),
]
AsOf = Annotated[
    str | None,
    Query(
        max_length=64,
        description="RFC 3339 instant to answer as of [default: now], within SPEC §2's range"
        " [1970-01-01T00:00:00Z, 9000-01-01T00:00:00Z).",
        json_schema_extra={"format": "date-time"},
    ),
]


def as_of_param(as_of: str | None) -> int | None:
    """The parsed ``as_of`` query parameter (TimestampError becomes a 422)."""
    return None if as_of is None else parse_instant(as_of)


@router.get(
    "/{conversation_id}/explain",
    summary="Explain a conversation, message by message",
    response_model=ExplanationBody,
    responses=error_responses(401, 403, 404, 422),
)
def explain(
    principal: Annotated[Principal, Depends(Access("privacy_officer", user=True))],
    tg: TG,
    conversation_id: ConversationId,
    purpose: Annotated[str, Query(max_length=64, description="The purpose to decide for.")],
    as_of: AsOf = None,
) -> dict[str, Any]:
    """Whether each message may serve `purpose` as of `as_of`, with the rules that decided
    (the output of `traingate explain`). An end user may explain only their own."""
    require_conversation(tg, principal, conversation_id)
    result = tg.privacy.explain(
        conversation_id=conversation_id, purpose=purpose, as_of=as_of_param(as_of)
    )
    return result.to_dict()


@router.get(
    "/{conversation_id}",
    summary="Read one's own conversation",
    response_model=ConversationBody,
    responses=error_responses(401, 403, 404, 422),
)
def read_conversation(
    principal: Annotated[Principal, Depends(Access(user=True))],
    tg: TG,
    conversation_id: ConversationId,
    as_of: AsOf = None,
) -> dict[str, Any]:
    """The messages, style, preferences and title of the caller's own conversation."""
    require_conversation(tg, principal, conversation_id)
    return tg.privacy.conversation(
        conversation_id=conversation_id, as_of=as_of_param(as_of)
    ).to_dict()


@router.delete(
    "/{conversation_id}",
    summary="Delete one's own conversation",
    response_model=ConversationDeletedBody,
    responses=error_responses(401, 403, 404, 422),
)
def delete_conversation(
    principal: Annotated[Principal, Depends(Access(user=True))],
    tg: TG,
    conversation_id: ConversationId,
) -> dict[str, Any]:
    """Record a `conversation.deleted` event (now): from then on the conversation serves no
    purpose under consent or flag bases, and purge hard-deletes it 30 days later."""
    owner = require_conversation(tg, principal, conversation_id)
    at = tg.events.delete_conversation(
        conversation_id=conversation_id, account_id=owner, actor=principal.actor
    )
    return {"conversation_id": conversation_id, "deleted": True, "deleted_at": format_instant(at)}
