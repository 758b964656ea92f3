"""As-of questions over append-only ledgers. Pure: frozen dataclasses in, answers out.

Every ledger entry carries ``at`` (UTC microseconds, the event's own time) and ``seq`` (arrival
order, used only to break ties between entries at the same instant where the SPEC says nothing
else: the later arrival wins for plans; for consent a denial wins, SPEC §1 rule 8).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ConsentChange",
    "ConsentKey",
    "ConversationFacts",
    "FlagFact",
    "MessageFact",
    "MessageRow",
    "PlanChange",
    "consent_at",
    "consent_granted",
    "deleted_by",
    "first_denial_after",
    "flag_active",
    "plan_at",
]


@dataclass(frozen=True, slots=True)
class MessageRow:
    """One stored message, as the snapshot and the builds read it (the store makes them)."""

    message_id: str
    role: str
    at: int
    seq: int
    content: str
    attachments: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class PlanChange:
    at: int
    seq: int
    plan: str
    organization_id: str | None


@dataclass(frozen=True, slots=True)
class ConsentChange:
    at: int
    seq: int
    granted: bool
    source: str


@dataclass(frozen=True, slots=True)
class FlagFact:
    flag_id: str
    at: int
    policy: str
    cleared_at: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageFact:
    message_id: str
    at: int
    seq: int
    role: str


ConsentKey = tuple[str, str, str]  # (scope, subject, setting)


@dataclass(frozen=True, slots=True)
class ConversationFacts:
    """Everything the policy needs to judge one conversation's messages: its messages, its
    account's plans and deletions, the consent ledgers of its account and of every organization
    the account had (``consents``, by scope, subject and setting), its flags, deletions and
    mode (SPEC §5: set by the first event naming the conversation)."""

    conversation_id: str
    account_id: str
    messages: tuple[MessageFact, ...]
    plans: tuple[PlanChange, ...]
    consents: Mapping[ConsentKey, tuple[ConsentChange, ...]] = field(default_factory=dict)
    flags: tuple[FlagFact, ...] = ()
    conversation_deleted: tuple[int, ...] = ()
    account_deleted: tuple[int, ...] = ()
    mode: str = "standard"

    def consent(self, scope: str, subject: str | None, setting: str) -> tuple[ConsentChange, ...]:
        """The ledger of one subject's setting (empty for no subject or no event)."""
        if subject is None:
            return ()
        return tuple(self.consents.get((scope, subject, setting), ()))


def plan_at(plans: Iterable[PlanChange], t: int) -> PlanChange | None:
    """The account's plan at ``t``: the latest change with ``at <= t`` (later arrival on ties)."""
    best: PlanChange | None = None
    for change in plans:
        if change.at <= t and (best is None or (change.at, change.seq) > (best.at, best.seq)):
            best = change
    return best


def consent_at(ledger: Iterable[ConsentChange], t: int) -> ConsentChange | None:
    """The consent in force at ``t``: the latest change with ``at <= t``; at one instant a denial
    wins over a grant. None when no change is that old (no event means not granted)."""
    best: ConsentChange | None = None
    for change in ledger:
        if change.at > t:
            continue
        if best is None or change.at > best.at or (change.at == best.at and not change.granted):
            best = change
    return best


def consent_granted(ledger: Iterable[ConsentChange], t: int, *, default: bool) -> bool:
    """Whether consent holds at ``t``: the change in force then, else ``default`` (SPEC §5
    ``default``: a subject with no consent event at or before ``t``)."""
    current = consent_at(ledger, t)
    return default if current is None else current.granted


def first_denial_after(ledger: Iterable[ConsentChange], t: int) -> int | None:
    """The first denial strictly after ``t`` (None: none)."""
    return min((c.at for c in ledger if not c.granted and c.at > t), default=None)


def flag_active(flag: FlagFact, as_of: int) -> bool:
    """Raised at or before as-of and not cleared at or before as-of."""
    return flag.at <= as_of and not any(c <= as_of for c in flag.cleared_at)


def deleted_by(deletions: Iterable[int], as_of: int) -> bool:
    """Whether any deletion of the item was at or before as-of."""
    return any(at <= as_of for at in deletions)
