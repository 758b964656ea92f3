"""Retention status: what expires when, what the next purge will hard-delete, and the last
purge the audit log records. Read-only; the admin console's retention page shows it.

Only what the store may say is shown: feedback reports by the UTC month their retention ends
(the vault keeps no finer time in its columns, and no identifier), deleted conversations and
accounts whose data still waits for its hard deletion (30 days after the deletion), and the
counts of the last ``purge``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from traingate.policy import Policy, PolicySet
from traingate.retention import HARD_DELETE_AFTER, report_expiry
from traingate.store.db import Database
from traingate.timeutil import day_of, format_instant, from_micros

__all__ = [
    "ExpiryMonth",
    "LastPurge",
    "PendingDeletion",
    "RetentionStatus",
    "retention_status",
]

PURGE_ACTIONS = ("purge",)


@dataclass(frozen=True, slots=True)
class ExpiryMonth:
    """Feedback reports whose retention ends in one UTC month."""

    month: str  # YYYY-MM
    reports: int
    first_day: int  # midnight UTC of the first expiry day in the month
    expired: bool  # that day has begun: the next purge deletes at least some of them


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
    reports_stored: int
    expiries: tuple[ExpiryMonth, ...]
    pending: tuple[PendingDeletion, ...]
    pending_total: int
    last_purge: LastPurge | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": format_instant(self.as_of),
            "reports_stored": self.reports_stored,
            "expiries": [
                {"month": e.month, "reports": e.reports, "expired": e.expired}
                for e in self.expiries
            ],
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


def _expiries(
    db: Database, as_of: int, policy: Policy | PolicySet
) -> tuple[int, tuple[ExpiryMonth, ...]]:
    """Reports by the month of their expiry: the stored one, or the earlier one the policies
    configured now give their submission (``Vault.expires_at``), taken at the start of the
    submission day (the columns keep no finer time)."""
    rows = db.execute(
        f"SELECT submitted_day, expires_day, COUNT(*) FROM {db.vault_prefix}reports"
        " GROUP BY submitted_day, expires_day"
    )
    by_day: dict[int, int] = {}
    for submitted, stored, count in rows:
        day = min(int(stored), day_of(report_expiry(policy, int(submitted))))
        by_day[day] = by_day.get(day, 0) + int(count)
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
    return sum(by_day.values()), tuple(months.values())


def _pending(db: Database, limit: int) -> tuple[list[PendingDeletion], int]:
    conversations = db.execute(
        "SELECT d.conversation_id, MIN(d.at),"
        " (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = d.conversation_id)"
        " FROM conversation_deletions d GROUP BY d.conversation_id"
    )
    accounts = db.execute(
        "SELECT d.account_id, MIN(d.at),"
        " (SELECT COUNT(*) FROM messages m JOIN conversations c"
        "  ON c.conversation_id = m.conversation_id WHERE c.account_id = d.account_id)"
        " FROM account_deletions d"
        " WHERE EXISTS (SELECT 1 FROM account_plans p WHERE p.account_id = d.account_id)"
        " OR EXISTS (SELECT 1 FROM conversations c JOIN messages m"
        "  ON m.conversation_id = c.conversation_id WHERE c.account_id = d.account_id)"
        " GROUP BY d.account_id"
    )
    pending = [
        PendingDeletion(
            kind=kind,
            subject=str(subject),
            deleted_at=int(at),
            due_at=int(at) + HARD_DELETE_AFTER,
            messages=int(messages),
        )
        for kind, rows in (("conversation", conversations), ("account", accounts))
        for subject, at, messages in rows
        if kind == "account" or int(messages) > 0
    ]
    pending.sort(key=lambda p: (p.due_at, p.kind, p.subject))
    return pending[:limit], len(pending)


def _last_purge(db: Database) -> LastPurge | None:
    marks = ", ".join("?" * len(PURGE_ACTIONS))
    rows = db.execute(
        f"SELECT at, actor, details FROM audit_log WHERE action IN ({marks})"
        " ORDER BY seq DESC LIMIT 1",
        PURGE_ACTIONS,
    )
    if not rows:
        return None
    at, actor, details = rows[0]
    try:
        parsed = json.loads(details)
    except ValueError:
        parsed = {}
    return LastPurge(
        at=int(at), actor=str(actor), details=parsed if isinstance(parsed, dict) else {}
    )


def retention_status(
    db: Database, *, as_of: int, policy: Policy | PolicySet, limit: int = 50
) -> RetentionStatus:
    """The retention status as of ``as_of`` under the configured ``policy`` (at most ``limit``
    pending deletions listed)."""
    total, expiries = _expiries(db, as_of, policy)
    pending, pending_total = _pending(db, limit)
    return RetentionStatus(
        as_of=as_of,
        reports_stored=total,
        expiries=expiries,
        pending=tuple(pending),
        pending_total=pending_total,
        last_purge=_last_purge(db),
    )
