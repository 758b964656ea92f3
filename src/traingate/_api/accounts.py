"""Accounts: the privacy answer (``GET …/privacy``) and the user's own training toggle."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from traingate._access.credentials import Principal
from traingate._api.access import TG, Access, require_account
from traingate._api.body import json_body, json_request_body
from traingate._api.conversations import AsOf, as_of_param
from traingate._api.models import ConsentRequest, PrivacyAnswerBody, error_responses
from traingate._api.paths import MAX_ID_IN_PATH, PathId
from traingate._errors import NotFoundError

__all__ = ["router"]

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])

AccountId = Annotated[
    PathId,
    Path(
        max_length=MAX_ID_IN_PATH,
        description="The account's id, percent-encoded (`/` as `%2F`).",
    ),
]


@router.get(
    "/{account_id}/privacy",
    summary='The account\'s answer to "Is my data used for model training?"',
    response_model=PrivacyAnswerBody,
    responses=error_responses(401, 403, 404, 422),
)
def privacy(
    principal: Annotated[Principal, Depends(Access("privacy_officer", user=True))],
    tg: TG,
    account_id: AccountId,
    as_of: AsOf = None,
) -> dict[str, Any]:
    """The answer of `traingate privacy` (SPEC §4), from the same function: `purposes` maps
    every purpose to `{used, bases, conversations}`; beside it the policies used, the plan
    history, every consent ledger the bases read, the account's conversations (how each
    purpose judges them, the builds holding them) and per purpose which builds hold how many
    of them. An end user may read only their own; an account the store has no record of is
    404."""
    require_account(principal, account_id)
    report = tg.privacy.answer(account_id=account_id, as_of=as_of_param(as_of))
    if not report.known:
        raise NotFoundError(f"account {account_id!r} is not in the store")
    return report.to_dict()


@router.put(
    "/{account_id}/consent",
    summary="Set one's own model-training consent",
    response_model=PrivacyAnswerBody,
    responses=error_responses(401, 403, 404, 413, 415, 422),
    openapi_extra={"requestBody": json_request_body(ConsentRequest)},
)
def set_consent(
    principal: Annotated[Principal, Depends(Access(user=True))],
    tg: TG,
    account_id: AccountId,
    body: Annotated[ConsentRequest, Depends(json_body(ConsentRequest))],
) -> dict[str, Any]:
    """The privacy center's toggle: records a `consent.updated` event (scope `account`,
    source `privacy_settings`, now) and returns the new privacy answer."""
    require_account(principal, account_id)
    at = tg.events.record_consent(
        account_id=account_id, granted=body.granted, actor=principal.actor
    )
    return tg.privacy.answer(account_id=account_id, as_of=at).to_dict()
