"""Retention rules: what expires when. Pure functions; ``traingate._retention.purge`` applies
them (the one service that deletes), ``traingate._retention.status`` reports on them.

- A feedback report expires at submission + the feedback ``retention`` of the policy in force
  at its submission (a duration: ``P10Y`` is ten calendar years, so 29 February + 10 years =
  28 February, same time of day), fixed when it is received; a feedback basis without
  ``retention`` keeps it until its receipt holder deletes it (no expiry: ``None``). From its
  expiry on it serves no build (``Vault.reports`` filters on it) whether or not ``purge`` ran;
  ``purge`` then deletes it, wrapped data key and ciphertext together (crypto-shredding).
  Policies put in force later, from an earlier date, can only shorten that: a report expires
  at the earlier of its stored expiry and the one the policies configured now give it, no
  limit being later than every instant (``expired_submissions`` tells ``purge`` which
  submission days that reaches). ``report_expiry`` and ``expired_submissions`` live in the
  core (``traingate._core.policy.expiry``), where the vault reads them; they are re-exported here.
- A message's content expires under the ``[[retention]]`` rules of the policy in force at its
  own time (SPEC §5, ``policy.coverage.content_expiry``); builds, explanations and answers
  already treat it as serving nothing from then on, and ``purge`` deletes it. Only messages
  older than the shortest ``keep`` of their policy can have expired, so only their
  conversations are judged (``content_windows``; ``purge.content_expiries``).
- A conversation deleted more than ``deleted_after`` (of the policy in force at the
  deletion's time; P30D by default) before T, and every conversation of an account deleted
  that long before T, loses its messages, settings and safety flags at the purge of T; the
  account loses its plan/e-mail history and account-scope consents. The event log keeps their
  keyed event-id and body hashes, never their bodies (a re-sent event is still a duplicate).
  The deletion ledgers stay, so that later events about a deleted conversation or account are
  still refused.

``purge`` is idempotent: a second run at the same T finds nothing left to delete.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from traingate._core.policy import Policy, PolicySet, policy_at
from traingate._core.policy.expiry import (
    ExpiredSubmissions,
    expired_submissions,
    latest_start,
    report_expiry,
)

__all__ = [
    "HARD_DELETE_AFTER",
    "ContentExpiry",
    "ExpiredSubmissions",
    "PurgeCounts",
    "Window",
    "content_windows",
    "deletion_due_at",
    "deletion_windows",
    "expired_submissions",
    "hard_delete_cutoff",
    "hard_delete_due",
    "latest_start",
    "report_expired",
    "report_expiry",
]

HARD_DELETE_AFTER = (
    30 * 86_400 * 1_000_000
)  # 30 days, in microseconds (``deleted_after``'s default)


def report_expired(*, expires_at: int | None, as_of: int) -> bool:
    """The expiry instant itself is out: usable for as-of in [submission, expiry); a report
    without expiry (None) never expires."""
    return expires_at is not None and as_of >= expires_at


def hard_delete_cutoff(as_of: int) -> int:
    """Under the default ``deleted_after`` (P30D, exactly 30 days), deletions strictly before
    this instant are more than 30 days before ``as_of``."""
    return as_of - HARD_DELETE_AFTER


def deletion_due_at(policy: Policy | PolicySet, deleted_at: int) -> int:
    """The instant after which the purge hard-deletes data deleted at ``deleted_at``: the
    deletion's time + ``deleted_after`` of the policy in force then."""
    return policy_at(policy, deleted_at).deleted_after_duration.add_to(deleted_at)


def hard_delete_due(
    *, deleted_at: int, as_of: int, policy: Policy | PolicySet | None = None
) -> bool:
    """Whether data deleted at ``deleted_at`` is hard-deleted by the purge of ``as_of``: more
    than ``deleted_after`` (default 30 days) has passed."""
    if policy is None:
        return deleted_at < hard_delete_cutoff(as_of)
    return deletion_due_at(policy, deleted_at) < as_of


Window = tuple[int | None, int]  # an inclusive range of instants (None: unbounded below)


def _ranges(policies: PolicySet) -> Iterator[tuple[Policy, int | None, int | None]]:
    """Each policy with the range of item times it decides: [start, end), None unbounded."""
    for index, current in enumerate(policies.policies):
        yield current, None if index == 0 else current.effective_at, policies.until(index)


def _clip(start: int | None, end: int | None, last: int) -> Window | None:
    if end is not None:
        last = min(last, end - 1)
    return None if start is not None and start > last else (start, last)


def deletion_windows(policy: Policy | PolicySet, as_of: int) -> tuple[Window, ...]:
    """The deletion times whose data the purge of ``as_of`` hard-deletes: per policy, the
    deletions in its range more than its ``deleted_after`` before ``as_of``."""
    windows = []
    for current, start, end in _ranges(PolicySet.of(policy)):
        last = latest_start(current.deleted_after_duration, as_of, strict=True)
        window = _clip(start, end, last)
        if window is not None:
            windows.append(window)
    return tuple(windows)


def content_windows(policy: Policy | PolicySet, until: int) -> tuple[Window, ...]:
    """The message times whose content may have expired by ``until``: per policy with
    retention rules, the messages in its range older than its shortest ``keep`` (a message
    expires no earlier than its time + the keep of some rule that applies to it)."""
    windows = []
    for current, start, end in _ranges(PolicySet.of(policy)):
        if not current.retention:
            continue
        last = max(latest_start(rule.keep_duration, until) for rule in current.retention)
        window = _clip(start, end, last)
        if window is not None:
            windows.append(window)
    return tuple(windows)


@dataclass(frozen=True, slots=True)
class ContentExpiry:
    """A stored message whose content expires (SPEC §5): when, and by which rule's keep."""

    conversation_id: str
    message_id: str
    message_at: int
    expires_at: int
    rule_id: str


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    """What one purge deleted."""

    as_of: int
    expired_reports: int
    conversations_purged: int
    messages_purged: int
    accounts_purged: int
    messages_expired: int = 0

    def to_dict(self) -> dict[str, Any]:
        from traingate._core.timeutil import format_instant

        data = asdict(self)
        data["as_of"] = format_instant(self.as_of)
        return data
