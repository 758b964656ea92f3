"""End-user sessions (issued by the product backend) and ``GET /v1/me``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from traingate._access.credentials import Principal
from traingate._api.access import TG, Access, Caller
from traingate._api.body import json_body, json_request_body
from traingate._api.models import (
    PrincipalBody,
    RevokedBody,
    SessionBody,
    SessionRequest,
    error_responses,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["sessions"])


@router.post(
    "/sessions",
    summary="Open a session for an end user",
    status_code=201,
    response_model=SessionBody,
    responses=error_responses(401, 403, 404, 413, 415, 422),
    openapi_extra={"requestBody": json_request_body(SessionRequest)},
)
def create_session(
    principal: Annotated[Principal, Depends(Access("ingest"))],
    tg: TG,
    body: Annotated[SessionRequest, Depends(json_body(SessionRequest))],
) -> JSONResponse:
    """A session bound to one known account. `session` is shown only here: give it to the user
    as a bearer credential, or send them to `login_path` (the web login link, which sets an
    HttpOnly cookie)."""
    ttl = None if body.ttl_seconds is None else body.ttl_seconds * 1_000_000
    issued = tg.access.create_session(account_id=body.account_id, ttl=ttl, actor=principal.actor)
    return JSONResponse(issued.to_dict(), status_code=201)


@router.delete(
    "/sessions/current",
    summary="End the caller's own session",
    response_model=RevokedBody,
    responses=error_responses(401, 403),
)
def end_session(principal: Annotated[Principal, Depends(Access(user=True))], tg: TG) -> Any:
    """Log out: the session credential stops working at once."""
    tg.access.revoke_session(session_id=principal.credential_id)
    return {"revoked": True}


@router.get(
    "/me", summary="Who the caller is", response_model=PrincipalBody, responses=error_responses(401)
)
def me(principal: Caller) -> dict[str, Any]:
    """The caller's kind (`token` or `session`), role or account, and session expiry."""
    return principal.to_dict()
