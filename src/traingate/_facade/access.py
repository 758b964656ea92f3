"""``tg.access``: API bearer tokens and end-user sessions (docs/api.md), each change audited."""

from __future__ import annotations

from traingate._access.credentials import (
    DEFAULT_SESSION_TTL,
    Credentials,
    IssuedSession,
    IssuedToken,
    Principal,
    TokenInfo,
)
from traingate._audit.actions import SYSTEM
from traingate._core.timeutil import format_instant, now_micros
from traingate._errors import AccessDeniedError, NotFoundError
from traingate._facade.area import Area

__all__ = ["Access"]


class Access(Area):
    @property
    def credentials(self) -> Credentials:
        return Credentials(self._tg.store.db)

    def create_token(
        self, *, role: str, name: str | None = None, actor: str = SYSTEM
    ) -> IssuedToken:
        """A new API bearer token with ``role``; its secret is shown only in the result."""
        with self._tg.store.db.transaction():
            issued = self.credentials.create_token(role=role, name=name, now=now_micros())
            self._tg.audit.record(
                "token.create",
                actor=actor,
                details={"token_id": issued.token_id, "role": role, "name": name},
            )
        return issued

    def tokens(self) -> list[TokenInfo]:
        """Every API token, live or revoked (ids, roles, names, times; never a secret)."""
        return self.credentials.tokens()

    def revoke_token(self, *, token_id: str, actor: str = SYSTEM) -> TokenInfo:
        """Revoke a token at once (every later request with it is 401); audited as
        ``token.revoke``. Raises NotFoundError when no live token has that id."""
        with self._tg.store.db.transaction():
            if not self.credentials.revoke_token(token_id=token_id, now=now_micros()):
                raise NotFoundError(f"no live token has the id {token_id!r}")
            self._tg.audit.record("token.revoke", actor=actor, details={"token_id": token_id})
        return next(t for t in self.tokens() if t.token_id == token_id)

    def record_token_use(
        self, *, token_id: str, role: str | None, method: str, route: str, uses: int = 1
    ) -> None:
        """Audit ``uses`` calls of a route (its template, never a path) with a token."""
        self._tg.audit.record(
            "token.use",
            actor=f"token:{token_id}",
            details={
                "token_id": token_id,
                "role": role,
                "method": method,
                "route": route,
                "uses": uses,
            },
        )

    def create_session(
        self, *, account_id: str, ttl: int | None = None, actor: str = SYSTEM
    ) -> IssuedSession:
        """A new end-user session bound to a known account (default: 24 hours). Raises
        NotFoundError for an account the store has no plan for, AccessDeniedError for a
        deleted account."""
        store = self._tg.store
        if not store.has_account(account_id):
            raise NotFoundError(f"account {account_id!r} is not in the store")
        if store.account_deletions(account_id):
            raise AccessDeniedError(f"account {account_id!r} is deleted")
        with store.db.transaction():
            issued = self.credentials.create_session(
                account_id=account_id,
                ttl=DEFAULT_SESSION_TTL if ttl is None else ttl,
                now=now_micros(),
            )
            self._tg.audit.record(
                "session.create",
                actor=actor,
                details={
                    "session_id": issued.session_id,
                    "expires_at": format_instant(issued.expires_at),
                },
            )
        return issued

    def authenticate(self, credential: str) -> Principal:
        """The caller a bearer token or session credential names. Raises AuthenticationError."""
        return self.credentials.verify(credential, now=now_micros())

    def revoke_session(self, *, session_id: str) -> None:
        self.credentials.revoke_session(session_id=session_id, now=now_micros())
