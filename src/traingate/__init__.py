"""traingate as a library: the names below are its public API (docs/library.md).

``Traingate`` is the facade (``Traingate.open(Settings.resolve())``), its operations grouped in
areas (``tg.events``, ``tg.privacy``, ``tg.datasets``, ``tg.feedback``, ``tg.retention``,
``tg.access``, ``tg.audit``);
``Settings`` says where the store, the key file and the policy are; the errors are the one
hierarchy every method raises from; the result types are what the methods return. Everything
else (modules and names not listed in ``__all__``) is private and may change without notice.

The names are loaded on first use, so that ``import traingate._core.timeutil`` (and the parse
workers, which import only what they run) do not pay for the store, DuckDB and Arrow.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from traingate._access.credentials import IssuedSession, IssuedToken, TokenInfo
    from traingate._core.timeutil import format_instant, parse_instant
    from traingate._datasets.builder import BuildResult
    from traingate._datasets.lineage import Lineage
    from traingate._datasets.verify import Verification
    from traingate._errors import (
        AccessDeniedError,
        AuthenticationError,
        BuildError,
        ConfigError,
        EventError,
        ManifestError,
        NotFoundError,
        PolicyError,
        ReceiptError,
        SchemaError,
        StoreError,
        TimestampError,
        TooLargeError,
        TraingateError,
    )
    from traingate._facade import Explanation, MessageExplanation, Traingate
    from traingate._ingest import IngestError, IngestSummary
    from traingate._privacy import ConversationView, PrivacyReport
    from traingate._retention.rules import PurgeCounts
    from traingate._settings import Settings

__all__ = [
    "AccessDeniedError",
    "AuthenticationError",
    "BuildError",
    "BuildResult",
    "ConfigError",
    "ConversationView",
    "EventError",
    "Explanation",
    "IngestError",
    "IngestSummary",
    "IssuedSession",
    "IssuedToken",
    "Lineage",
    "ManifestError",
    "MessageExplanation",
    "NotFoundError",
    "PolicyError",
    "PrivacyReport",
    "PurgeCounts",
    "ReceiptError",
    "SchemaError",
    "Settings",
    "StoreError",
    "TimestampError",
    "TokenInfo",
    "TooLargeError",
    "Traingate",
    "TraingateError",
    "Verification",
    "format_instant",
    "parse_instant",
]

_ERRORS = (
    "AccessDeniedError AuthenticationError BuildError ConfigError EventError ManifestError"
    " NotFoundError PolicyError ReceiptError SchemaError StoreError TimestampError TooLargeError"
    " TraingateError"
)
_HOME: dict[str, str] = {
    **dict.fromkeys(_ERRORS.split(), "traingate._errors"),
    **dict.fromkeys(("Explanation", "MessageExplanation", "Traingate"), "traingate._facade"),
    **dict.fromkeys(("IssuedSession", "IssuedToken", "TokenInfo"), "traingate._access.credentials"),
    **dict.fromkeys(("IngestError", "IngestSummary"), "traingate._ingest"),
    **dict.fromkeys(("ConversationView", "PrivacyReport"), "traingate._privacy"),
    **dict.fromkeys(("format_instant", "parse_instant"), "traingate._core.timeutil"),
    "BuildResult": "traingate._datasets.builder",
    "Lineage": "traingate._datasets.lineage",
    "Verification": "traingate._datasets.verify",
    "PurgeCounts": "traingate._retention.rules",
    "Settings": "traingate._settings",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'traingate' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
