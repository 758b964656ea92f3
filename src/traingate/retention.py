"""Retention: what expires when (pure functions), and ``purge``, the one service that deletes.

- A feedback report expires at submission + the retention of the policy in force at its
  submission (P10Y under consumer-2024, P5Y under consumer-2025; calendar years, so
  29 February + 10 years = 28 February, same time of day), fixed when it is received. From
  that instant on it serves no build (``Vault.reports`` filters on it) whether or not ``purge``
  ran; ``purge`` then deletes it, wrapped data key and ciphertext together (crypto-shredding).
  Policies put in force later, from an earlier date, can only shorten that: a report expires
  at the earlier of its stored expiry and the one the policies configured now give it
  (``expired_submissions`` tells ``purge`` which submission days that reaches).
- A conversation deleted more than 30 days before T, and every conversation of an account
  deleted more than 30 days before T, loses its messages, settings and safety flags at the
  purge of T; the account loses its plan/e-mail history and account-scope consents. The event
  log keeps their keyed event-id and body hashes, never their bodies (a re-sent event is still
  a duplicate). The deletion ledgers stay, so that later events about a deleted conversation or
  account are still refused.

``purge`` is idempotent: a second run at the same T finds nothing left to delete.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from traingate.errors import StoreError
from traingate.policy import Policy, PolicySet, policy_at
from traingate.store.db import Database
from traingate.timeutil import DAY, day_of, to_micros

if TYPE_CHECKING:
    from traingate.vault.vault import Vault

__all__ = [
    "HARD_DELETE_AFTER",
    "ExpiredSubmissions",
    "PurgeCounts",
    "expired_submissions",
    "hard_delete_cutoff",
    "hard_delete_due",
    "purge",
    "report_expired",
    "report_expiry",
]

HARD_DELETE_AFTER = 30 * 86_400 * 1_000_000  # 30 days, in microseconds
_CHUNK = 900  # under SQLite's bound-parameter limit


def report_expiry(policy: Policy | PolicySet, submitted_at: int) -> int:
    """The instant a report submitted at ``submitted_at`` stops serving any purpose, under the
    policy in force at its submission. A policy without a feedback basis grants no retention:
    the report is expired at once."""
    expiry = policy_at(policy, submitted_at).feedback_expiry(submitted_at)
    return submitted_at if expiry is None else expiry


_FIRST_DAY = to_micros(datetime(1, 1, 1, tzinfo=UTC))  # no instant is earlier


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
    return report_expiry(policy, day + DAY - 1) <= as_of


def expired_submissions(policy: Policy | PolicySet, as_of: int) -> ExpiredSubmissions:
    """The submission days whose reports ``policy`` has expired by ``as_of``.

    For each policy of the set, over the whole days of its range: a day is expired when the
    report submitted at its last instant is (binary search: that expiry never decreases from
    one day to the next, 29 February and 28 February sharing theirs). The two days after the
    last such day, and the days a policy's range starts or ends within, are to be checked.
    """
    policies = PolicySet.of(policy)
    days: list[tuple[int | None, int]] = []
    check: set[int] = set()
    for index, current in enumerate(policies.policies):
        start = None if index == 0 else current.effective_at  # the first rules before it too
        end = policies.until(index)
        first = None if start is None else day_of(start + DAY - 1)  # its first whole day
        last = day_of(as_of) if end is None else min(day_of(end - DAY), day_of(as_of))
        for partial in (start, end):
            if partial is not None and partial % DAY:
                check.add(day_of(partial))
        low = _FIRST_DAY if first is None else first
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


def report_expired(*, expires_at: int, as_of: int) -> bool:
    """The expiry instant itself is out: usable for as-of in [submission, expiry)."""
    return as_of >= expires_at


def hard_delete_cutoff(as_of: int) -> int:
    """Deletions strictly before this instant are more than 30 days before ``as_of``."""
    return as_of - HARD_DELETE_AFTER


def hard_delete_due(*, deleted_at: int, as_of: int) -> bool:
    """Whether data deleted at ``deleted_at`` is hard-deleted by the purge of ``as_of``."""
    return deleted_at < hard_delete_cutoff(as_of)


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    """What one purge deleted."""

    as_of: int
    expired_reports: int
    conversations_purged: int
    messages_purged: int
    accounts_purged: int

    def to_dict(self) -> dict[str, Any]:
        from traingate.timeutil import format_instant

        data = asdict(self)
        data["as_of"] = format_instant(self.as_of)
        return data


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


class _Purger:
    """The main-database half of one purge, inside the caller's transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def select_in(self, sql: str, column: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for chunk in _chunks(values):
            clause, params = self.db.in_list(column, chunk)
            rows.extend(self.db.execute(sql.format(where=clause), params))
        return rows

    def delete_in(self, table: str, column: str, values: Sequence[Any]) -> None:
        for chunk in _chunks(values):
            clause, params = self.db.in_list(column, chunk)
            self.db.execute(f"DELETE FROM {table} WHERE {clause}", params)

    def conversations(self, cutoff: int) -> dict[str, str]:
        """conversation_id -> account_id of every conversation due for hard deletion."""
        rows = self.db.execute(
            "SELECT c.conversation_id, c.account_id FROM conversations c WHERE EXISTS"
            " (SELECT 1 FROM conversation_deletions d"
            "  WHERE d.conversation_id = c.conversation_id AND d.at < ?)"
            " OR EXISTS (SELECT 1 FROM account_deletions a"
            "  WHERE a.account_id = c.account_id AND a.at < ?)",
            (cutoff, cutoff),
        )
        return {str(conv): str(account) for conv, account in rows}

    def purge_conversations(self, conversation_ids: Sequence[str]) -> tuple[set[str], int]:
        """Hard-delete messages, settings and flags; returns (conversations touched, messages)."""
        touched: set[str] = set()
        messages = self.select_in(
            "SELECT conversation_id FROM messages WHERE {where}",
            "conversation_id",
            conversation_ids,
        )
        settings = self.select_in(
            "SELECT conversation_id FROM conversation_settings WHERE {where}",
            "conversation_id",
            conversation_ids,
        )
        flags = self.select_in(
            "SELECT conversation_id, flag_id FROM flags WHERE {where}",
            "conversation_id",
            conversation_ids,
        )
        flag_ids = sorted({str(row[1]) for row in flags})
        touched.update(str(row[0]) for row in (*messages, *settings, *flags))
        self.delete_in("flag_clears", "flag_id", flag_ids)
        for table in ("messages", "conversation_settings", "flags"):
            self.delete_in(table, "conversation_id", conversation_ids)
        return touched, len(messages)

    def purge_accounts(self, cutoff: int) -> tuple[set[str], set[str]]:
        """Hard-delete the plan/e-mail history, account consents and session rows of accounts
        deleted before ``cutoff``; returns (those accounts, the ones that had plan or consent
        rows left)."""
        accounts = sorted(
            str(r[0])
            for r in self.db.execute(
                "SELECT DISTINCT account_id FROM account_deletions WHERE at < ?", (cutoff,)
            )
        )
        plans = self.select_in(
            "SELECT account_id FROM account_plans WHERE {where}", "account_id", accounts
        )
        consents: list[tuple[Any, ...]] = []
        for chunk in _chunks(accounts):
            clause, params = self.db.in_list("subject", chunk)
            consents.extend(
                self.db.execute(
                    f"SELECT subject FROM consents WHERE scope = 'account' AND {clause}",
                    params,
                )
            )
        self.delete_in("account_plans", "account_id", accounts)
        # Their end-user sessions expired long ago (at most 30 days), but the rows name them.
        self.delete_in("sessions", "account_id", accounts)
        for chunk in _chunks(accounts):
            clause, params = self.db.in_list("subject", chunk)
            self.db.execute(f"DELETE FROM consents WHERE scope = 'account' AND {clause}", params)
        return set(accounts), {str(r[0]) for r in (*plans, *consents)}


def _checkpoint(db: Database) -> None:
    """Best effort on SQLite: fold the WALs into the files and truncate them, so that deleted
    rows do not linger in a WAL (secure_delete zeroes them in the files)."""
    if db.dialect != "sqlite":
        return
    for schema in ("main", "vault"):
        with contextlib.suppress(StoreError):  # fails inside a transaction
            db.execute(f"PRAGMA {schema}.wal_checkpoint(TRUNCATE)")


def purge(
    *,
    db: Database,
    vault: Vault,
    as_of: int,
    observer: Callable[[PurgeCounts], None] | None = None,
) -> PurgeCounts:
    """Delete what has expired by ``as_of`` (the wall clock, normally), in one transaction.
    ``observer`` hears the counts inside that transaction (the audit log)."""
    cutoff = hard_delete_cutoff(as_of)
    if db.dialect == "sqlite":
        for schema in ("main", "vault"):
            db.execute(f"PRAGMA {schema}.secure_delete = ON")
    purger = _Purger(db)
    with db.transaction():
        expired = vault.purge_expired(as_of=as_of)
        owners = purger.conversations(cutoff)
        touched, messages = purger.purge_conversations(sorted(owners))
        due, accounts = purger.purge_accounts(cutoff)
        accounts |= {owners[conv] for conv in touched} & due
        counts = PurgeCounts(
            as_of=as_of,
            expired_reports=expired,
            conversations_purged=len(touched),
            messages_purged=messages,
            accounts_purged=len(accounts),
        )
        if observer is not None:
            observer(counts)
    _checkpoint(db)
    return counts
