"""Retention status: the retention rules of the policies in force, what expires when, what the
next purge will delete, and the last purge the audit log records. Read-only; the admin
console's retention page shows it.

Only what the store may say is shown: feedback reports by the UTC month their retention ends
(the vault keeps no finer time in its columns, and no identifier), and those kept without
limit; conversation content by the UTC month it expires (SPEC §5 ``[[retention]]``, judged
from the decision plan exactly as ``purge`` judges it, over a bounded number of
conversations, the oldest first); deleted conversations and accounts whose data still waits
for its hard deletion (``deleted_after`` after the deletion); and the counts of the last
``purge``. Every rule id and text comes from the policy files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from traingate._audit.log import last_of
from traingate._core.policy import Policy, PolicySet
from traingate._core.policy.expiry import report_expiry
from traingate._core.timeutil import DAY, Duration, day_of, format_instant, from_micros
from traingate._retention.purge import content_candidates, content_expiries
from traingate._retention.rules import ContentExpiry, deletion_due_at
from traingate._store.db import Database
from traingate._store.store import deletions_held
from traingate._vault.vault import NEVER, expiry_days

if TYPE_CHECKING:
    from traingate._store.store import Store

__all__ = [
    "ContentMonth",
    "ContentRule",
    "ExpiryMonth",
    "LastPurge",
    "PendingDeletion",
    "PolicyRetention",
    "RetentionStatus",
    "retention_status",
]

PURGE_ACTIONS = ("purge",)
CONTENT_HORIZON = 90 * DAY  # upcoming content expiries shown: the next 90 days
CONTENT_CONVERSATIONS = 5_000  # at most this many conversations judged for the page


@dataclass(frozen=True, slots=True)
class ExpiryMonth:
    """Feedback reports whose retention ends in one UTC month."""

    month: str  # YYYY-MM
    reports: int
    first_day: int  # midnight UTC of the first expiry day in the month
    expired: bool  # that day has begun: the next purge deletes at least some of them


@dataclass(frozen=True, slots=True)
class ContentRule:
    """One ``[[retention]]`` rule of a policy: ``keep`` for the messages ``when`` selects."""

    id: str
    rule: str
    when: str
    keep: str
    text: str

    @property
    def keep_duration(self) -> Duration:
        return Duration.parse(self.keep)


@dataclass(frozen=True, slots=True)
class PolicyRetention:
    """What one policy in force keeps, and for how long, for the items of its range."""

    label: str
    start: int | None  # None: every item before the next policy's date
    end: int | None  # None: in force now
    feedback: str | None  # the feedback retention (None: until the receipt holder deletes)
    has_feedback: bool
    deleted_after: str
    rules: tuple[ContentRule, ...]
    # (reason id, rule) of what each part gives, from the policy's file (None: it gives none)
    feedback_reason: tuple[str, str] | None = None
    content_reason: tuple[str, str] | None = None
    deletion_reasons: tuple[tuple[str, str], ...] = ()

    @property
    def feedback_duration(self) -> Duration | None:
        return None if self.feedback is None else Duration.parse(self.feedback)

    @property
    def deleted_after_duration(self) -> Duration:
        return Duration.parse(self.deleted_after)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.label,
            "from": None if self.start is None else format_instant(self.start),
            "until": None if self.end is None else format_instant(self.end),
            "feedback_retention": self.feedback,
            "deleted_after": self.deleted_after,
            "content_rules": [
                {"id": r.id, "rule": r.rule, "when": r.when, "keep": r.keep, "text": r.text}
                for r in self.rules
            ],
        }


@dataclass(frozen=True, slots=True)
class ContentMonth:
    """Messages whose content expires in one UTC month (after as-of), by the rule whose keep
    runs out."""

    month: str  # YYYY-MM
    messages: int
    conversations: int
    first_at: int  # the first expiry of the month
    by_rule: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class ContentStatus:
    """Conversation content: expired and still stored (the next purge deletes it), and what
    expires up to ``until``; judged over ``judged`` of ``candidates`` conversations."""

    until: int
    due_messages: int
    due_conversations: int
    upcoming: tuple[ContentMonth, ...]
    judged: int
    candidates: int

    @property
    def partial(self) -> bool:
        return self.judged < self.candidates

    def to_dict(self) -> dict[str, Any]:
        return {
            "until": format_instant(self.until),
            "due": {"messages": self.due_messages, "conversations": self.due_conversations},
            "upcoming": [
                {
                    "month": m.month,
                    "messages": m.messages,
                    "conversations": m.conversations,
                    "by_rule": dict(m.by_rule),
                }
                for m in self.upcoming
            ],
            "conversations_judged": self.judged,
            "conversations_candidate": self.candidates,
        }


@dataclass(frozen=True, slots=True)
class PendingDeletion:
    """A deleted conversation or account whose data is still stored, and when the purge may
    hard-delete it (a purge run strictly after ``due_at``)."""

    kind: str  # conversation | account
    subject: str
    deleted_at: int
    due_at: int
    messages: int

    def overdue(self, as_of: int) -> bool:
        return as_of > self.due_at


@dataclass(frozen=True, slots=True)
class LastPurge:
    at: int
    actor: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RetentionStatus:
    as_of: int
    policies: tuple[PolicyRetention, ...]
    reports_stored: int
    reports_without_expiry: int
    expiries: tuple[ExpiryMonth, ...]
    content: ContentStatus | None  # None: no policy in force has retention rules
    pending: tuple[PendingDeletion, ...]
    pending_total: int
    last_purge: LastPurge | None

    @property
    def content_rules(self) -> bool:
        return any(p.rules for p in self.policies)

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": format_instant(self.as_of),
            "policies": [p.to_dict() for p in self.policies],
            "reports_stored": self.reports_stored,
            "reports_without_expiry": self.reports_without_expiry,
            "expiries": [
                {"month": e.month, "reports": e.reports, "expired": e.expired}
                for e in self.expiries
            ],
            "content": None if self.content is None else self.content.to_dict(),
            "pending": [
                {
                    "kind": p.kind,
                    "subject": p.subject,
                    "deleted_at": format_instant(p.deleted_at),
                    "due_at": format_instant(p.due_at),
                    "messages": p.messages,
                }
                for p in self.pending
            ],
            "pending_total": self.pending_total,
            "last_purge": None
            if self.last_purge is None
            else {
                "at": format_instant(self.last_purge.at),
                "actor": self.last_purge.actor,
                "details": self.last_purge.details,
            },
        }


def _reason(policy: Policy, reason_id: str) -> tuple[str, str] | None:
    """(id, rule) of a reason the policy's file gives text for (None: it cannot give it)."""
    rule = policy.rules.get(reason_id)
    return None if rule is None else (reason_id, rule.rule)


def _policies(policy: Policy | PolicySet) -> tuple[PolicyRetention, ...]:
    policies = PolicySet.of(policy)
    out = []
    for index, current in enumerate(policies.policies):
        basis = current.feedback_basis
        reasons = current.vocabulary
        deletion = [
            _reason(current, reasons.decision.conversation_gone),
            _reason(current, reasons.decision.account_gone),
        ]
        out.append(
            PolicyRetention(
                label=current.label,
                start=None if index == 0 else current.effective_at,
                end=policies.until(index),
                feedback=None if basis is None else basis.retention,
                has_feedback=basis is not None,
                deleted_after=current.deleted_after,
                rules=tuple(
                    ContentRule(id=r.id, rule=r.rule, when=r.when, keep=r.keep, text=r.text)
                    for r in current.retention
                ),
                feedback_reason=_reason(current, reasons.feedback.expiry),
                content_reason=_reason(current, reasons.decision.content_expiry),
                deletion_reasons=tuple(ref for ref in deletion if ref is not None),
            )
        )
    return tuple(out)


def _expiries(
    db: Database, as_of: int, policy: Policy | PolicySet
) -> tuple[int, int, tuple[ExpiryMonth, ...]]:
    """(reports stored, those without expiry, the others by the month of their expiry): the
    stored one, or the earlier one the policies configured now give their submission
    (``Vault.expires_at``), taken at the start of the submission day (the columns keep no
    finer time)."""
    by_day: dict[int, int] = {}
    never = 0
    for submitted, stored, count in expiry_days(db):
        configured = report_expiry(policy, submitted)
        day = min(stored, day_of(NEVER if configured is None else configured))
        if day >= day_of(NEVER):
            never += count
            continue
        by_day[day] = by_day.get(day, 0) + count
    months: dict[str, ExpiryMonth] = {}
    for day, count in sorted(by_day.items()):
        month = from_micros(day).strftime("%Y-%m")
        known = months.get(month)
        months[month] = ExpiryMonth(
            month=month,
            reports=count + (known.reports if known else 0),
            first_day=known.first_day if known else day,
            expired=(known.expired if known else False) or day <= as_of,
        )
    return sum(by_day.values()) + never, never, tuple(months.values())


def _content(
    store: Store, as_of: int, policy: Policy | PolicySet, *, horizon: int, limit: int
) -> ContentStatus:
    until = as_of + horizon
    candidates = content_candidates(store, policy, until=until)
    judged = candidates[:limit]
    due: list[ContentExpiry] = []
    upcoming: dict[str, list[ContentExpiry]] = {}
    for found in content_expiries(store, policy, until=until, conversations=judged):
        if found.expires_at <= as_of:
            due.append(found)
        else:
            month = from_micros(found.expires_at).strftime("%Y-%m")
            upcoming.setdefault(month, []).append(found)
    return ContentStatus(
        until=until,
        due_messages=len(due),
        due_conversations=len({f.conversation_id for f in due}),
        upcoming=tuple(_month(month, found) for month, found in sorted(upcoming.items())),
        judged=len(judged),
        candidates=len(candidates),
    )


def _month(month: str, found: Iterable[ContentExpiry]) -> ContentMonth:
    items = list(found)
    by_rule: dict[str, int] = {}
    for item in items:
        by_rule[item.rule_id] = by_rule.get(item.rule_id, 0) + 1
    return ContentMonth(
        month=month,
        messages=len(items),
        conversations=len({i.conversation_id for i in items}),
        first_at=min(i.expires_at for i in items),
        by_rule=tuple(sorted(by_rule.items())),
    )


def _pending(
    db: Database, policy: Policy | PolicySet, limit: int
) -> tuple[list[PendingDeletion], int]:
    pending = [
        PendingDeletion(
            kind=kind,
            subject=subject,
            deleted_at=at,
            due_at=deletion_due_at(policy, at),
            messages=messages,
        )
        for kind, rows in deletions_held(db).items()
        for subject, at, messages in rows
        if kind == "account" or messages > 0
    ]
    pending.sort(key=lambda p: (p.due_at, p.kind, p.subject))
    return pending[:limit], len(pending)


def _last_purge(db: Database) -> LastPurge | None:
    found = last_of(db, PURGE_ACTIONS)
    if found is None:
        return None
    at, actor, details = found
    try:
        parsed = json.loads(details)
    except ValueError:
        parsed = {}
    return LastPurge(
        at=int(at), actor=str(actor), details=parsed if isinstance(parsed, dict) else {}
    )


def retention_status(
    db: Database,
    *,
    as_of: int,
    policy: Policy | PolicySet,
    store: Store | None = None,
    limit: int = 50,
    horizon: int = CONTENT_HORIZON,
    conversations: int = CONTENT_CONVERSATIONS,
) -> RetentionStatus:
    """The retention status as of ``as_of`` under the configured ``policy`` (at most ``limit``
    pending deletions listed). With ``store``, conversation content expiring up to ``as_of +
    horizon`` is judged, over at most ``conversations`` conversations (the oldest first)."""
    total, never, expiries = _expiries(db, as_of, policy)
    policies = _policies(policy)
    content = None
    if store is not None and any(p.rules for p in policies):
        content = _content(store, as_of, policy, horizon=horizon, limit=conversations)
    pending, pending_total = _pending(db, policy, limit)
    return RetentionStatus(
        as_of=as_of,
        policies=policies,
        reports_stored=total,
        reports_without_expiry=never,
        expiries=expiries,
        content=content,
        pending=tuple(pending),
        pending_total=pending_total,
        last_purge=_last_purge(db),
    )
