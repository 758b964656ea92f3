"""Who is calling, and may they: FastAPI dependencies over ``traingate._access.credentials``.

A caller is resolved from ``Authorization: Bearer <credential>`` or, failing that, from the
session cookie ``traingate_session`` (what the web pages set after a login link). An
``Authorization`` header that is not a well-formed Bearer credential is refused (401), cookie or
not. A request authenticated by the cookie that may change something (any method but GET, HEAD
and OPTIONS) must carry what the page forms carry: the CSRF token of the cookie's credential
(header ``X-CSRF-Token``) and, when the browser names one, this site as its origin; else 403. Either
credential may be an API token (``tgk_…``, with a role) or an end-user session (``tgs_…``,
bound to one account). The web pages reuse ``caller``/``Access`` on their own routes, and
``set_session_cookie`` to log a browser in.

Role matrix (docs/api.md): ``ingest`` posts events, feedback and sessions; ``analyst`` runs
and reads dataset builds; ``privacy_officer`` explains any conversation, reads any account's
privacy answer and purges; an end user reads and changes only their own account and
conversations, and submits feedback for them. A feedback receipt is its own authority.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from traingate._access.credentials import Principal
from traingate._api.pool import TraingatePool
from traingate._api.usage import TokenUses
from traingate._errors import AccessDeniedError, AuthenticationError, NotFoundError
from traingate._facade import Traingate

__all__ = [
    "SESSION_COOKIE",
    "TG",
    "Access",
    "Caller",
    "caller",
    "check_csrf",
    "csrf_token",
    "lease",
    "optional_caller",
    "require_account",
    "require_conversation",
    "same_origin",
    "set_session_cookie",
]

SESSION_COOKIE = "traingate_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CSRF = b"traingate/_web/csrf/v1"

_bearer = HTTPBearer(
    auto_error=False,
    description="An API token (tgk_…) or an end-user session (tgs_…).",
)
_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="The end-user session cookie the web login link sets.",
)


def lease(request: Request) -> Iterator[Traingate]:
    """One ``Traingate`` of the app's pool for the duration of the request."""
    pool: TraingatePool = request.app.state.traingate_pool
    with pool.lease() as tg:
        yield tg


TG = Annotated[Traingate, Depends(lease)]


def csrf_token(credential: str) -> str:
    """The CSRF token of a cookie's credential (an HMAC under the credential itself): what the
    pages put in their forms, and what cookie-authenticated API calls send as X-CSRF-Token."""
    return hmac.new(credential.encode("utf-8"), _CSRF, hashlib.sha256).hexdigest()[:40]


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (Origin, else
    Referer); True when it says nothing (a non-browser client: the token decides)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", request.url.netloc)


def check_csrf(request: Request, credential: str, sent: str | None) -> None:
    """AccessDeniedError unless ``sent`` is the credential's CSRF token and the request does
    not come from another site."""
    if not same_origin(request):
        raise AccessDeniedError("the request was sent from another site")
    if sent is None or not hmac.compare_digest(sent.encode(), csrf_token(credential).encode()):
        raise AccessDeniedError(
            "a request authenticated by the session cookie that changes something must carry"
            " the page's CSRF token in the X-CSRF-Token header (or send Authorization: Bearer)"
        )


def _credential(
    request: Request, bearer: HTTPAuthorizationCredentials | None, cookie: str | None
) -> str | None:
    if bearer is not None and bearer.credentials:
        return bearer.credentials
    if request.headers.get("authorization") is not None:
        raise AuthenticationError(
            "the Authorization header is not a bearer credential: send 'Bearer <token>'"
        )
    return cookie or None


def optional_caller(
    request: Request,
    tg: TG,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal | None:
    """The caller, or None when no credential was sent (pages that offer a login). A token's
    use is counted for the audit log (``_api/usage.py``)."""
    credential = _credential(request, bearer, cookie)
    if credential is None:
        return None
    principal = tg.access.authenticate(credential)
    from_cookie = bearer is None or not bearer.credentials
    if from_cookie and request.method not in SAFE_METHODS:
        check_csrf(request, credential, request.headers.get(CSRF_HEADER))
    uses: TokenUses | None = getattr(request.app.state, "token_uses", None)
    route = getattr(request.scope.get("route"), "path", None)
    if principal.kind == "token" and uses is not None and route is not None:
        uses.record(tg=tg, principal=principal, method=request.method, route=route)
    return principal


def caller(principal: Annotated[Principal | None, Depends(optional_caller)]) -> Principal:
    """The caller; 401 without a valid credential."""
    if principal is None:
        raise AuthenticationError(
            "no credential: send 'Authorization: Bearer <token>' or the session cookie"
        )
    return principal


Caller = Annotated[Principal, Depends(caller)]


class Access:
    """A dependency admitting token holders of ``roles`` and, with ``user``, end users."""

    def __init__(self, *roles: str, user: bool = False) -> None:
        self.roles = frozenset(roles)
        self.user = user

    def __call__(self, principal: Caller) -> Principal:
        if principal.kind == "session" and self.user:
            return principal
        if principal.kind == "token" and principal.role in self.roles:
            return principal
        allowed = sorted(self.roles) + (["an end-user session"] if self.user else [])
        who = "an end-user session" if principal.is_user else f"role {principal.role!r}"
        raise AccessDeniedError(f"{who} may not do this; allowed: {', '.join(allowed)}")


def require_account(principal: Principal, account_id: str) -> None:
    """An end user may only name their own account (token holders pass)."""
    if principal.is_user and principal.account_id != account_id:
        raise AccessDeniedError("a session may only see and change its own account")


def require_conversation(tg: Traingate, principal: Principal, conversation_id: str) -> str:
    """The conversation's owner; an end user gets 404 for conversations of other accounts
    exactly as for unknown ones."""
    try:
        owner = tg.privacy.conversation_owner(conversation_id)
    except NotFoundError:
        raise NotFoundError(f"conversation {conversation_id!r} is not in the store") from None
    if principal.is_user and owner != principal.account_id:
        raise NotFoundError(f"conversation {conversation_id!r} is not in the store")
    return owner


def set_session_cookie(
    response: Response, *, session: str, max_age: int, secure: bool = False
) -> None:
    """Log a browser in: the session credential in an HttpOnly, SameSite=Lax cookie."""
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
