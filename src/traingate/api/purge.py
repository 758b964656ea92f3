"""``POST /v1/purge``: delete what has expired (the one operation the wall clock decides)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from traingate.api.auth import TG, Access
from traingate.api.body import json_body, json_request_body
from traingate.api.models import PurgeRequest, error_responses
from traingate.auth import Principal
from traingate.timeutil import parse_instant

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["retention"])


@router.post(
    "/purge",
    summary="Purge expired data",
    responses=error_responses(401, 403, 413, 415, 422),
    openapi_extra={"requestBody": json_request_body(PurgeRequest, required=False)},
)
def purge(
    principal: Annotated[Principal, Depends(Access("privacy_officer"))],
    tg: TG,
    body: Annotated[PurgeRequest | None, Depends(json_body(PurgeRequest, required=False))],
) -> dict[str, Any]:
    """Delete expired feedback reports (crypto-shredding) and the data of conversations and
    accounts deleted more than 30 days before `as_of` (default now); the counts, as
    `traingate purge` prints them. The purge is recorded in the audit log."""
    as_of = None if body is None or body.as_of is None else parse_instant(body.as_of)
    return tg.purge(as_of=as_of, actor=principal.actor).to_dict()
