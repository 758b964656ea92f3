"""Who is looking at a page, and whether a form really came from our page.

- End users: the session cookie of the API (``traingate_session``, HttpOnly, SameSite=Lax),
  set by ``GET /login/{session}``. The login link's session is exchanged for a fresh one and
  revoked, so a link works once.
- The admin console: a bearer token (role ``analyst`` or ``privacy_officer``) typed into the
  console's login form, kept in its own cookie ``traingate_admin`` (HttpOnly, SameSite=Strict,
  path ``/admin``): it is never sent anywhere but the console.
- Forms: every POST carries a ``csrf`` field derived from the cookie's credential (an HMAC
  under the credential itself) and must come from our own origin. SameSite already keeps
  other sites' forms from carrying the cookie; the token also stops same-site ones.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Request, Response

from traingate._access.credentials import Principal
from traingate._api.access import SESSION_COOKIE, TG, csrf_token, same_origin, set_session_cookie
from traingate._api.body import FORM_LIMIT, media_type, read_body
from traingate._core.timeutil import now_micros
from traingate._errors import AccessDeniedError, AuthenticationError, ConfigError
from traingate._facade import Traingate

__all__ = [
    "ADMIN_COOKIE",
    "ADMIN_ROLES",
    "SESSION_COOKIE",
    "Admin",
    "Form",
    "Viewer",
    "admin_viewer",
    "csrf_token",
    "exchange_login",
    "read_form",
    "set_admin_cookie",
    "user_viewer",
]

ADMIN_COOKIE = "traingate_admin"
ADMIN_ROLES = ("analyst", "privacy_officer")
MAX_FORM_BYTES = FORM_LIMIT
_SECOND = 1_000_000


@dataclass(frozen=True, slots=True)
class Viewer:
    """The authenticated caller of a page and the CSRF token its forms carry."""

    principal: Principal
    csrf: str

    @property
    def account_id(self) -> str:
        assert self.principal.account_id is not None
        return self.principal.account_id

    @property
    def role(self) -> str:
        return self.principal.role or ""

    def may(self, role: str) -> bool:
        return self.principal.role == role


def _viewer(tg: Traingate, credential: str | None) -> Viewer:
    if not credential:
        raise AuthenticationError("you are not signed in")
    return Viewer(principal=tg.access.authenticate(credential), csrf=csrf_token(credential))


def user_viewer(tg: TG, request: Request) -> Viewer:
    """The end user of the session cookie; AuthenticationError without a valid one."""
    viewer = _viewer(tg, request.cookies.get(SESSION_COOKIE))
    if not viewer.principal.is_user:
        raise AuthenticationError(
            "this browser holds an API token, not an end-user session: open your login link"
        )
    return viewer


def admin_viewer(tg: TG, request: Request) -> Viewer:
    """The console's token holder; AuthenticationError without a valid cookie,
    AccessDeniedError for a token of another role."""
    viewer = _viewer(tg, request.cookies.get(ADMIN_COOKIE))
    if viewer.principal.is_user or viewer.role not in ADMIN_ROLES:
        raise AccessDeniedError(
            f"the admin console needs a token of role {' or '.join(ADMIN_ROLES)}"
        )
    return viewer


User = Annotated[Viewer, Depends(user_viewer)]
Admin = Annotated[Viewer, Depends(admin_viewer)]


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def exchange_login(tg: Traingate, credential: str) -> tuple[str, int]:
    """Trade a login link's session for a fresh one with the same expiry (the link's session
    is revoked: a link works once). Returns (new credential, seconds it lasts)."""
    try:
        principal = tg.access.authenticate(credential)
    except AuthenticationError:
        if tg.access.credentials.used_session(credential, now=now_micros()):
            raise AuthenticationError(
                "this login link was already used, so it is not valid any more: a login link "
                "signs you in once"
            ) from None
        raise
    if not principal.is_user or principal.account_id is None or principal.expires_at is None:
        raise AuthenticationError("a login link carries an end-user session")
    remaining = principal.expires_at - now_micros()
    if remaining <= 0:
        raise AuthenticationError("the login link has expired: ask for a new one")
    issued = tg.access.create_session(
        account_id=principal.account_id, ttl=remaining, actor=principal.actor
    )
    tg.access.revoke_session(session_id=principal.credential_id)
    return issued.token, max(1, remaining // _SECOND)


def set_user_cookie(request: Request, response: Response, *, session: str, max_age: int) -> None:
    set_session_cookie(response, session=session, max_age=max_age, secure=_secure(request))


def set_admin_cookie(request: Request, response: Response, *, token: str) -> None:
    response.set_cookie(
        ADMIN_COOKIE,
        token,
        max_age=12 * 3600,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/admin",
    )


@dataclass(frozen=True, slots=True)
class Form:
    """A submitted urlencoded form: each field's values, in order."""

    fields: dict[str, list[str]]

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default

    def all(self, name: str) -> list[str]:
        return list(self.fields.get(name, []))


async def read_form(request: Request) -> Form:
    """The body as an urlencoded form of UTF-8 text, at most 64 KiB, read while it streams
    (TooLargeError past the limit); ConfigError for anything else, invalid UTF-8 included
    (raw or percent-encoded: nothing becomes U+FFFD)."""
    if media_type(request) != "application/x-www-form-urlencoded":
        raise ConfigError("send the form as application/x-www-form-urlencoded")
    body = await read_body(request, limit=MAX_FORM_BYTES)
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, errors="strict"
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"the form cannot be read: {exc}") from None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return Form(fields)


def check_form(request: Request, form: Form, viewer: Viewer) -> None:
    """AccessDeniedError unless the form carries the viewer's CSRF token and, when the browser
    says where it comes from, comes from this site."""
    if not same_origin(request):
        raise AccessDeniedError("the form was sent from another site")
    if not hmac.compare_digest(form.get("csrf").encode(), viewer.csrf.encode()):
        raise AccessDeniedError("the form has expired: reload the page and try again")


async def _posted(request: Request) -> Form:
    return await read_form(request)


Posted = Annotated[Form, Depends(_posted)]
