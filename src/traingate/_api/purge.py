"""``POST /v1/purge``: delete what has expired (the one operation the wall clock decides)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from traingate._access.credentials import Principal
from traingate._api.access import TG, Access
from traingate._api.body import json_body, json_request_body
from traingate._api.models import PurgeBody, PurgeRequest, error_responses
from traingate._core.timeutil import format_instant, now_micros, parse_instant
from traingate._errors import TimestampError

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["retention"])


@router.post(
    "/purge",
    summary="Purge expired data",
    response_model=PurgeBody,
    responses=error_responses(401, 403, 413, 415, 422),
    openapi_extra={"requestBody": json_request_body(PurgeRequest, required=False)},
)
def purge(
    principal: Annotated[Principal, Depends(Access("privacy_officer"))],
    tg: TG,
    body: Annotated[PurgeRequest | None, Depends(json_body(PurgeRequest, required=False))],
) -> dict[str, Any]:
    """Delete expired feedback reports (crypto-shredding) and the data of conversations and
    accounts deleted more than 30 days before `as_of` (default now; a time in the future is
    refused, 422); the counts, as `traingate purge` prints them. The purge is recorded in the
    audit log."""
    as_of = None if body is None or body.as_of is None else parse_instant(body.as_of)
    if as_of is not None and as_of > now_micros():
        # A purge as of the future shreds reports that have not expired yet: whoever holds a
        # privacy_officer token must not be able to end every retention at once (issue 19).
        raise TimestampError(
            f"as_of {format_instant(as_of)} is in the future: a purge deletes what has expired"
            " by now or earlier"
        )
    return tg.retention.purge(as_of=as_of, actor=principal.actor).to_dict()
