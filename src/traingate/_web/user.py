"""The end user's pages: the login link, the privacy center and the conversation view.

Each view parses, calls one ``Traingate`` method, and renders. A user sees only their own
account and conversations: another account's conversation is "not found", as an unknown one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from traingate._api.access import TG, require_conversation
from traingate._api.paths import MAX_ID_IN_PATH, PathId
from traingate._audit.actions import END_USER
from traingate._errors import ConfigError
from traingate._web.answer import answer_for
from traingate._web.errors import PageRoute
from traingate._web.render import SECURITY_HEADERS, page
from traingate._web.session import (
    SESSION_COOKIE,
    Form,
    User,
    check_form,
    exchange_login,
    read_form,
    set_user_cookie,
)
from traingate._web.words import policy_rules, retention_phrase, rule_refs

__all__ = ["DOWN_CATEGORIES", "UP_CATEGORIES", "router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Posted = Annotated[Form, Depends(read_form)]
ConversationId = Annotated[PathId, Path(max_length=MAX_ID_IN_PATH)]

DOWN_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("not_factual", "Not factually correct"),
    ("harmful", "Harmful or unsafe"),
    ("ignored_instructions", "Didn't follow instructions"),
    ("unhelpful", "Not helpful"),
    ("other", "Something else"),
)
UP_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("helpful", "Helpful"),
    ("accurate", "Accurate"),
    ("well_written", "Well written"),
)
MAX_COMMENT = 4000

_NOTICES = {
    "training_on": "Model training is now on. The answer below is already up to date.",
    "training_off": "Model training is now off. The answer below is already up to date.",
    "deleted": "The conversation was deleted. It is left out of every dataset built from now on.",
}


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


@router.get("/")
def home() -> RedirectResponse:
    return _see_other("/privacy")


@router.get("/login/{session_token}")
def login(
    request: Request, tg: TG, session_token: Annotated[str, Path(max_length=128)]
) -> Response:
    """Exchange a login link's session for the session cookie; on to the privacy center."""
    credential, seconds = exchange_login(tg, session_token)
    response = _see_other("/privacy")
    set_user_cookie(request, response, session=credential, max_age=seconds)
    return response


@router.post("/logout")
def logout(request: Request, tg: TG, user: User, form: Posted) -> Response:
    check_form(request, form, user)
    tg.access.revoke_session(session_id=user.principal.credential_id)
    response = page(request, "signed_out.html", {})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/privacy")
def privacy_center(request: Request, tg: TG, user: User, done: str = "") -> Response:
    """Is my data used for model training? The live answer, the toggle, reports, conversations."""
    report = tg.privacy.answer(account_id=user.account_id)
    feedback = report.policy.feedback_basis
    return page(
        request,
        "privacy.html",
        {
            "user": user,
            "report": report,
            "answer": answer_for(report),
            "notice": _NOTICES.get(done),
            "focus_switch": done in ("training_on", "training_off"),
            "feedback_rule": next(iter(rule_refs(report.policy, feedback.id)), None)
            if feedback is not None
            else None,
            "feedback_retention": retention_phrase(
                None if feedback is None else feedback.retention
            ),
        },
    )


@router.post("/privacy/consent")
def set_training(request: Request, tg: TG, user: User, form: Posted) -> Response:
    """The training toggle: a consent.updated event through ingest."""
    check_form(request, form, user)
    value = form.get("granted")
    if value not in ("true", "false"):
        raise ConfigError("granted must be true or false")
    tg.events.record_consent(
        account_id=user.account_id, granted=value == "true", actor=user.principal.actor
    )
    # The page comes back with the switch focused (privacy.js), where the keyboard left it;
    # no #fragment: scrolling to one moves the focus to the document.
    return _see_other(f"/privacy?done=training_{'on' if value == 'true' else 'off'}")


@router.post("/conversations/{conversation_id}/delete")
def delete_conversation(
    request: Request, tg: TG, user: User, form: Posted, conversation_id: ConversationId
) -> Response:
    """A conversation.deleted event through ingest."""
    check_form(request, form, user)
    owner = require_conversation(tg, user.principal, conversation_id)
    tg.events.delete_conversation(
        conversation_id=conversation_id, account_id=owner, actor=user.principal.actor
    )
    return _see_other("/privacy?done=deleted#conversations")


@router.get("/conversations/{conversation_id}")
def conversation(request: Request, tg: TG, user: User, conversation_id: ConversationId) -> Response:
    """The messages, with thumbs up and down on every assistant message."""
    require_conversation(tg, user.principal, conversation_id)
    view = tg.privacy.conversation(conversation_id=conversation_id)
    basis = tg.policy.feedback_basis
    return page(
        request,
        "conversation.html",
        {
            "user": user,
            "conversation": view,
            "feedback_basis": basis,
            "expires_at": tg.policy.feedback_expiry(view.as_of),
            "feedback_purposes": basis.purposes if basis else (),
            "rules": policy_rules(tg.policy),
            "down_categories": DOWN_CATEGORIES,
            "up_categories": UP_CATEGORIES,
        },
    )


def _feedback_fields(form: Form) -> dict[str, Any]:
    rating = form.get("rating")
    if rating not in ("up", "down"):
        raise ConfigError("choose a rating: thumbs up or thumbs down")
    message_id = form.get("message_id")
    if not message_id:
        raise ConfigError("the form names no message")
    comment = form.get("comment").strip()
    if len(comment) > MAX_COMMENT:
        raise ConfigError(f"the comment is longer than {MAX_COMMENT} characters")
    known = {name for name, _ in (DOWN_CATEGORIES if rating == "down" else UP_CATEGORIES)}
    categories = form.all("categories")
    unknown = sorted(set(categories) - known)
    if unknown:
        raise ConfigError(f"unknown categories for a thumbs {rating}: {', '.join(unknown)}")
    return {
        "message_id": message_id,
        "rating": rating,
        "comment": comment or None,
        "categories": list(dict.fromkeys(categories)),
    }


@router.post("/conversations/{conversation_id}/feedback")
def submit_feedback(
    request: Request, tg: TG, user: User, form: Posted, conversation_id: ConversationId
) -> Response:
    """A feedback.submitted event through ingest; answers the receipt (JSON for the dialog's
    script, a page otherwise)."""
    check_form(request, form, user)
    fields = _feedback_fields(form)
    require_conversation(tg, user.principal, conversation_id)
    receipt, info = tg.feedback.submit(
        account_id=user.account_id,
        conversation_id=conversation_id,
        actor=END_USER,  # not the session: nothing joins the report to its account
        **fields,
    )
    body = {"receipt": receipt, "report": info.to_dict(), "rating": fields["rating"]}
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(body, status_code=201, headers=SECURITY_HEADERS)
    return page(
        request,
        "feedback_receipt.html",
        {"user": user, "conversation_id": conversation_id, **body},
        status_code=201,
    )
