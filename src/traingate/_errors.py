"""Every exception traingate raises on purpose.

::

    TraingateError
     ├── ConfigError            a setting, URL or key file is unusable
     ├── PolicyError            a policy file is malformed or inconsistent
     ├── EventError             one event is rejected (line, event_id, field, message)
     ├── StoreError             the store cannot do what was asked
     │    └── SchemaError       the database schema is newer than this code, or broken
     ├── NotFoundError          an item named by the caller does not exist
     ├── ReceiptError           a feedback receipt is malformed or matches no stored report
     ├── BuildError             a dataset build cannot run (output exists, engine failure)
     ├── ManifestError          a dataset's manifest is malformed (names each member)
     ├── AuthenticationError    no credential, or an unknown, revoked or expired one
     ├── AccessDeniedError      a valid caller asked for what its role or account may not see
     ├── TooLargeError          a request body is larger than its route's limit
     └── TimestampError         a time given by the caller is not RFC 3339 (also used by events)

Callers catch ``TraingateError`` to get every expected failure; anything else is a bug.
"""

from __future__ import annotations

from collections.abc import Iterable


class TraingateError(Exception):
    """Base of every expected traingate failure."""


class ConfigError(TraingateError):
    """A setting, database URL or key file is unusable."""


class PolicyError(TraingateError):
    """A policy file is malformed or inconsistent."""


class TimestampError(TraingateError, ValueError):
    """A date-time is not in the RFC 3339 form traingate accepts."""


class EventError(TraingateError):
    """One event was rejected. ``field`` is None when the event as a whole is wrong."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        event_id: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.field = field
        self.event_id = event_id
        self.line = line
        super().__init__(self.describe())

    def describe(self) -> str:
        """The error as one human sentence naming line, event and field."""
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.event_id is not None:
            parts.append(f"event {self.event_id!r}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        where = ", ".join(parts)
        return f"{where}: {self.message}" if where else self.message


class StoreError(TraingateError):
    """The store cannot do what was asked."""


class SchemaError(StoreError):
    """The database schema is newer than this code knows, or inconsistent."""


class NotFoundError(TraingateError):
    """An item named by the caller does not exist."""


class ReceiptError(TraingateError):
    """A feedback receipt is malformed, or matches no stored report (wrong secret, deleted,
    purged: deliberately one error, so a receipt reveals nothing about other reports)."""


class BuildError(TraingateError):
    """A dataset build cannot run or complete (its output directory exists, an unknown engine
    or format, an engine failure). Nothing is left behind: no directory, no lineage rows."""


class ManifestError(TraingateError):
    """A dataset's manifest is not one: a member missing, of another type, or one a manifest
    does not have. ``problems`` names each by its place in the manifest (``counts.records``,
    ``files[0].sha256``) with what is wrong (``_core/manifest_model.py``)."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("the manifest is malformed: " + "; ".join(self.problems))


class AuthenticationError(TraingateError):
    """No credential was given, or the token or session is unknown, revoked or expired
    (deliberately one error: a failed check tells nothing about which part was wrong)."""


class AccessDeniedError(TraingateError):
    """The caller is who it says, but its role, or the account its session is bound to, does
    not allow what it asked for."""


class TooLargeError(TraingateError):
    """A request body is larger than its route's limit (the message names the limit). Raised
    while the body streams in, before the rest of it is read."""
