"""When a feedback report expires (pure): ``report_expiry`` under the policy in force at its
submission, and ``expired_submissions``, the submission days whose reports the policies have
expired by an instant (what the vault's purge deletes). ``latest_start`` inverts a duration.

The vault stores each report's expiry from these; ``traingate._retention.rules`` re-exports
them beside the other retention rules (docs/architecture.md: the core imports no service).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from traingate._core.policy.model import Policy
from traingate._core.policy.versions import PolicySet, policy_at
from traingate._core.timeutil import DAY, Duration, day_of, to_micros

__all__ = [
    "FIRST_DAY",
    "ExpiredSubmissions",
    "expired_submissions",
    "latest_start",
    "report_expiry",
]

FIRST_DAY = to_micros(datetime(1, 1, 1, tzinfo=UTC))  # no instant is earlier


def report_expiry(policy: Policy | PolicySet, submitted_at: int) -> int | None:
    """The instant a report submitted at ``submitted_at`` stops serving any purpose, under the
    policy in force at its submission; None when its feedback basis sets no retention (kept
    until its receipt holder deletes it). A policy without a feedback basis grants no
    retention: the report is expired at once."""
    current = policy_at(policy, submitted_at)
    if current.feedback_basis is None:
        return submitted_at
    return current.feedback_expiry(submitted_at)


def latest_start(duration: Duration, until: int, *, strict: bool = False) -> int:
    """The latest instant t with ``t + duration <= until`` (``< until`` when ``strict``);
    ``FIRST_DAY - 1`` when there is none. ``Duration.add_to`` never decreases with t, so a
    binary search finds it; no duration adds more than 31 days a month."""
    months = 12 * duration.years + duration.months
    low = max(until - (31 * months + duration.days + 1) * DAY, FIRST_DAY)

    def fits(t: int) -> bool:
        end = duration.add_to(t)
        return end < until if strict else end <= until

    if low > until or not fits(low):
        return FIRST_DAY - 1
    high = until  # the answer lies in [low, high]
    while low < high:
        middle = low + (high - low + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


@dataclass(frozen=True, slots=True)
class ExpiredSubmissions:
    """Which reports policies have expired by an instant, by the UTC day (midnight, µs) of
    their submission, as the vault keeps it: every report submitted on a day of ``days``
    (inclusive ranges; None: unbounded below) has expired; a report submitted on a day of
    ``check`` may have (decide it by ``report_expiry`` of its exact submission)."""

    days: tuple[tuple[int | None, int], ...]
    check: tuple[int, ...]


def _day_expired(policy: Policy, day: int, as_of: int) -> bool:
    """Whether ``policy`` has expired, by ``as_of``, a report submitted at the last instant of
    ``day`` (and so every report of that day)."""
    expiry = report_expiry(policy, day + DAY - 1)
    return expiry is not None and expiry <= as_of


def _keeps_for_ever(policy: Policy) -> bool:
    """Whether the policy's feedback basis sets no retention (no report of it ever expires)."""
    basis = policy.feedback_basis
    return basis is not None and basis.retention is None


def expired_submissions(policy: Policy | PolicySet, as_of: int) -> ExpiredSubmissions:
    """The submission days whose reports ``policy`` has expired by ``as_of``.

    For each policy of the set, over the whole days of its range: a day is expired when the
    report submitted at its last instant is (binary search: that expiry never decreases from
    one day to the next, 29 February and 28 February sharing theirs). The two days after the
    last such day, and the days a policy's range starts or ends within, are to be checked. A
    policy that keeps reports without limit expires no day of its own.
    """
    policies = PolicySet.of(policy)
    days: list[tuple[int | None, int]] = []
    check: set[int] = set()
    for index, current in enumerate(policies.policies):
        start = None if index == 0 else current.effective_at  # the first rules before it too
        end = policies.until(index)
        for partial in (start, end):
            if partial is not None and partial % DAY:
                check.add(day_of(partial))
        if _keeps_for_ever(current):
            continue
        first = None if start is None else day_of(start + DAY - 1)  # its first whole day
        last = day_of(as_of) if end is None else min(day_of(end - DAY), day_of(as_of))
        low = FIRST_DAY if first is None else first
        if low > last or not _day_expired(current, low, as_of):
            after = low  # no whole day is expired; this one and the next may be in part
        else:
            high = last  # the answer lies in [low, high]
            while low < high:
                middle = day_of(low + (high - low) // 2 + DAY)
                if _day_expired(current, middle, as_of):
                    low = middle
                else:
                    high = middle - DAY
            days.append((first, low))
            after = low + DAY
        check.update(
            day
            for day in (after, after + DAY)
            if day <= day_of(as_of) and (end is None or day < end)
        )
    return ExpiredSubmissions(days=tuple(days), check=tuple(sorted(check)))
