"""The audit log for privacy officers: verify the chain, read its entries (docs/audit.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from traingate._access.credentials import Principal
from traingate._api.access import TG, Access
from traingate._api.models import AuditEntriesBody, AuditVerifyBody, error_responses

__all__ = ["router"]

router = APIRouter(prefix="/v1/audit", tags=["audit"])

Officer = Annotated[Principal, Depends(Access("privacy_officer"))]


@router.get(
    "/verify",
    summary="Verify the audit chain",
    response_model=AuditVerifyBody,
    response_model_exclude_unset=True,  # `warning` only when there is one
    responses=error_responses(401, 403),
)
def verify(_: Officer, tg: TG) -> dict[str, Any]:
    """Check every entry's keyed hash, the chain and the signed head: `ok`, the number of
    entries by action, the head, and each problem with its `seq` and `kind` (`edited`,
    `deleted`, `inserted`, `reordered`, `truncated`, `head`). Always 200: a broken chain is
    an answer, not an error."""
    return tg.audit.verify()


@router.get(
    "/entries",
    summary="Read audit entries in order",
    response_model=AuditEntriesBody,
    responses=error_responses(401, 403, 422),
)
def entries(
    _: Officer,
    tg: TG,
    after: Annotated[
        int, Query(ge=0, le=2**62, description="Only entries with a greater seq.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="At most this many.")] = 1000,
) -> dict[str, Any]:
    """Entries with `seq > after`, oldest first, as `traingate audit export` writes them;
    `next_after` is the `after` of the next page (null on the last)."""
    found = tg.audit.entries(after=after, limit=limit + 1)
    page = found[:limit]
    return {
        "entries": [entry.to_dict() for entry in page],
        "next_after": page[-1].seq if len(found) > limit else None,
    }
