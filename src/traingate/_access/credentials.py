"""Credentials of the HTTP API: bearer tokens with a role, and end-user sessions bound to one
account (docs/api.md).

A credential is ``<prefix><id>.<secret>``: ``tgk_`` for tokens, ``tgs_`` for sessions. The id
finds the row; only a SHA-256 of the secret is stored, and it is compared in constant time.
An unknown id is compared against a dummy hash, so that every failure takes as long and says
the same thing (``AuthenticationError``). The secret is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from traingate._core.timeutil import format_instant
from traingate._errors import AuthenticationError, ConfigError
from traingate._store.db import Database

__all__ = [
    "DEFAULT_SESSION_TTL",
    "MAX_SESSION_TTL",
    "ROLES",
    "Credentials",
    "IssuedSession",
    "IssuedToken",
    "Principal",
    "TokenInfo",
]

ROLES: tuple[str, ...] = ("ingest", "analyst", "privacy_officer")
TOKEN_PREFIX = "tgk_"
SESSION_PREFIX = "tgs_"
_SECOND = 1_000_000
DEFAULT_SESSION_TTL = 24 * 3600 * _SECOND
MAX_SESSION_TTL = 30 * 24 * 3600 * _SECOND
_CREDENTIAL = re.compile(r"(tgk_|tgs_)([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})", re.ASCII)
_DOMAIN = b"traingate/credential/v1\x00"


def _hash(secret: str) -> str:
    return hashlib.sha256(_DOMAIN + secret.encode("ascii")).hexdigest()


_DUMMY_HASH = _hash("-" * 43)


def _new_id() -> str:
    """16 characters of base64url, never a leading '-': the id is a command-line argument
    (``traingate token revoke TOKEN_ID``), where a leading '-' reads as an option."""
    while (token_id := secrets.token_urlsafe(12)).startswith("-"):
        pass
    return token_id


def _new_secret() -> str:
    return secrets.token_urlsafe(32)  # 43 characters


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token holder with a role, or an end user bound to one account."""

    kind: Literal["token", "session"]
    credential_id: str
    role: str | None = None
    name: str | None = None
    account_id: str | None = None
    expires_at: int | None = None

    @property
    def is_user(self) -> bool:
        return self.kind == "session"

    @property
    def actor(self) -> str:
        """The caller as the audit log names it: ``token:<id>`` or ``session:<id>``."""
        return f"{self.kind}:{self.credential_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "role": self.role,
            "name": self.name,
            "account_id": self.account_id,
            "expires_at": None if self.expires_at is None else format_instant(self.expires_at),
        }


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token_id: str
    role: str
    name: str | None
    created_at: int
    token: str = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "token_id": self.token_id,
            "role": self.role,
            "name": self.name,
            "created_at": format_instant(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as ``traingate token list`` shows it: no secret, no hash."""

    token_id: str
    role: str
    name: str | None
    created_at: int
    revoked_at: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "token_id": self.token_id,
            "role": self.role,
            "name": self.name,
            "created_at": format_instant(self.created_at),
            "revoked_at": None if self.revoked_at is None else format_instant(self.revoked_at),
        }


@dataclass(frozen=True, slots=True)
class IssuedSession:
    session_id: str
    account_id: str
    created_at: int
    expires_at: int
    token: str = field(repr=False)

    @property
    def login_path(self) -> str:
        """The path of the web login link that exchanges this session for a cookie."""
        return f"/login/{self.token}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.token,
            "session_id": self.session_id,
            "account_id": self.account_id,
            "created_at": format_instant(self.created_at),
            "expires_at": format_instant(self.expires_at),
            "login_path": self.login_path,
        }


class Credentials:
    """Tokens and sessions in the store's ``api_tokens`` and ``sessions`` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_token(self, *, role: str, name: str | None, now: int) -> IssuedToken:
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        token_id, secret = _new_id(), _new_secret()
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO api_tokens (token_id, secret_hash, role, name, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (token_id, _hash(secret), role, name, now),
            )
        return IssuedToken(
            token_id=token_id,
            role=role,
            name=name,
            created_at=now,
            token=f"{TOKEN_PREFIX}{token_id}.{secret}",
        )

    def revoke_token(self, *, token_id: str, now: int) -> bool:
        """Revoke a token by its id; False when no live token has that id."""
        with self.db.transaction():
            live = self.db.execute(
                "SELECT 1 FROM api_tokens WHERE token_id = ? AND revoked_at IS NULL", (token_id,)
            )
            if live:
                self.db.execute(
                    "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ?", (now, token_id)
                )
        return bool(live)

    def tokens(self) -> list[TokenInfo]:
        """Every token, live or revoked, oldest first (never a secret: only its hash is kept)."""
        rows = self.db.execute(
            "SELECT token_id, role, name, created_at, revoked_at FROM api_tokens"
            " ORDER BY created_at, token_id"
        )
        return [
            TokenInfo(
                token_id=str(r[0]),
                role=str(r[1]),
                name=None if r[2] is None else str(r[2]),
                created_at=int(r[3]),
                revoked_at=None if r[4] is None else int(r[4]),
            )
            for r in rows
        ]

    def create_session(self, *, account_id: str, ttl: int, now: int) -> IssuedSession:
        if not 0 < ttl <= MAX_SESSION_TTL:
            raise ConfigError(f"a session lasts more than 0 and at most {MAX_SESSION_TTL} µs")
        session_id, secret = _new_id(), _new_secret()
        with self.db.transaction():
            self.db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            self.db.execute(
                "INSERT INTO sessions (session_id, secret_hash, account_id, created_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?)",
                (session_id, _hash(secret), account_id, now, now + ttl),
            )
        return IssuedSession(
            session_id=session_id,
            account_id=account_id,
            created_at=now,
            expires_at=now + ttl,
            token=f"{SESSION_PREFIX}{session_id}.{secret}",
        )

    def revoke_session(self, *, session_id: str, now: int) -> None:
        with self.db.transaction():
            self.db.execute(
                "UPDATE sessions SET revoked_at = ? WHERE session_id = ? AND revoked_at IS NULL",
                (now, session_id),
            )

    def used_session(self, credential: str, *, now: int) -> bool:
        """Whether ``credential`` is a session with its right secret that was revoked and has
        not expired: a login link already exchanged (or signed out). Told only to whoever
        holds the secret, so that a reused link can say so instead of "not valid"."""
        match = _CREDENTIAL.fullmatch(credential.strip())
        if match is None or match.group(1) != SESSION_PREFIX:
            return False
        _, session_id, secret = match.groups()
        rows = self.db.execute(
            "SELECT secret_hash, expires_at, revoked_at FROM sessions WHERE session_id = ?",
            (session_id,),
        )
        stored = str(rows[0][0]) if rows else _DUMMY_HASH
        matches = hmac.compare_digest(stored, _hash(secret))
        return bool(matches and rows and rows[0][2] is not None and int(rows[0][1]) > now)

    def verify(self, credential: str, *, now: int) -> Principal:
        """The principal a token or session credential names. Raises AuthenticationError when
        it is malformed, unknown, revoked or (a session) expired."""
        match = _CREDENTIAL.fullmatch(credential.strip())
        if match is None:
            hmac.compare_digest(_DUMMY_HASH, _hash("-" * 43))
            raise AuthenticationError("the credential is not valid")
        prefix, credential_id, secret = match.groups()
        if prefix == TOKEN_PREFIX:
            rows = self.db.execute(
                "SELECT secret_hash, role, name, revoked_at FROM api_tokens WHERE token_id = ?",
                (credential_id,),
            )
            stored = str(rows[0][0]) if rows else _DUMMY_HASH
            matches = hmac.compare_digest(stored, _hash(secret))
            if not (matches and rows and rows[0][3] is None):
                raise AuthenticationError("the credential is not valid")
            _, role, name, _ = rows[0]
            return Principal(kind="token", credential_id=credential_id, role=role, name=name)
        # A session of an account whose deletion was accepted (at or before now) is refused
        # like a revoked one: deleting an account signs it out everywhere.
        rows = self.db.execute(
            "SELECT s.secret_hash, s.account_id, s.expires_at, s.revoked_at,"
            " EXISTS (SELECT 1 FROM account_deletions d"
            "  WHERE d.account_id = s.account_id AND d.at <= ?)"
            " FROM sessions s WHERE s.session_id = ?",
            (now, credential_id),
        )
        stored = str(rows[0][0]) if rows else _DUMMY_HASH
        matches = hmac.compare_digest(stored, _hash(secret))
        if not (matches and rows and rows[0][3] is None and not rows[0][4]):
            raise AuthenticationError("the credential is not valid")
        _, account_id, expires_at, _, _ = rows[0]
        if int(expires_at) <= now:
            raise AuthenticationError("the session has expired: ask for a new login link")
        return Principal(
            kind="session",
            credential_id=credential_id,
            account_id=str(account_id),
            expires_at=int(expires_at),
        )
