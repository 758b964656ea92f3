"""Retention: what expires when (pure functions), and ``purge``, the one service that deletes.

- A feedback report expires at submission + the feedback ``retention`` of the policy in force
  at its submission (a duration: ``P10Y`` is ten calendar years, so 29 February + 10 years =
  28 February, same time of day), fixed when it is received; a feedback basis without
  ``retention`` keeps it until its receipt holder deletes it (no expiry: ``None``). From its
  expiry on it serves no build (``Vault.reports`` filters on it) whether or not ``purge`` ran;
  ``purge`` then deletes it, wrapped data key and ciphertext together (crypto-shredding).
  Policies put in force later, from an earlier date, can only shorten that: a report expires
  at the earlier of its stored expiry and the one the policies configured now give it, no
  limit being later than every instant (``expired_submissions`` tells ``purge`` which
  submission days that reaches).
- A message's content expires under the ``[[retention]]`` rules of the policy in force at its
  own time (SPEC §5, ``policy.coverage.content_expiry``); builds, explanations and answers
  already treat it as serving nothing from then on, and ``purge`` deletes it. Only messages
  older than the shortest ``keep`` of their policy can have expired, so only their
  conversations are judged (``content_expiries``).
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

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from traingate._core.policy import Policy, PolicySet, policy_at
from traingate._core.policy.coverage import content_expiry
from traingate._core.timeutil import DAY, Duration, day_of, to_micros
from traingate._errors import StoreError
from traingate._store.db import Database

if TYPE_CHECKING:
    from traingate._store.store import Store
    from traingate._vault.vault import Vault

__all__ = [
    "HARD_DELETE_AFTER",
    "ContentExpiry",
    "ExpiredSubmissions",
    "PurgeCounts",
    "content_candidates",
    "content_expiries",
    "content_windows",
    "deletion_due_at",
    "deletion_windows",
    "expired_submissions",
    "hard_delete_cutoff",
    "hard_delete_due",
    "latest_start",
    "purge",
    "report_expired",
    "report_expiry",
]

HARD_DELETE_AFTER = (
    30 * 86_400 * 1_000_000
)  # 30 days, in microseconds (``deleted_after``'s default)
_CHUNK = 900  # under SQLite's bound-parameter limit
_FIRST_DAY = to_micros(datetime(1, 1, 1, tzinfo=UTC))  # no instant is earlier


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
    ``_FIRST_DAY - 1`` when there is none. ``Duration.add_to`` never decreases with t, so a
    binary search finds it; no duration adds more than 31 days a month."""
    months = 12 * duration.years + duration.months
    low = max(until - (31 * months + duration.days + 1) * DAY, _FIRST_DAY)

    def fits(t: int) -> bool:
        end = duration.add_to(t)
        return end < until if strict else end <= until

    if low > until or not fits(low):
        return _FIRST_DAY - 1
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


def _where_in_windows(column: str, windows: Sequence[Window]) -> tuple[str, tuple[int, ...]]:
    clauses: list[str] = []
    params: list[int] = []
    for start, last in windows:
        if start is None:
            clauses.append(f"{column} <= ?")
            params.append(last)
        else:
            clauses.append(f"({column} >= ? AND {column} <= ?)")
            params.extend((start, last))
    return " OR ".join(clauses) or "1 = 0", tuple(params)


@dataclass(frozen=True, slots=True)
class ContentExpiry:
    """A stored message whose content expires (SPEC §5): when, and by which rule's keep."""

    conversation_id: str
    message_id: str
    message_at: int
    expires_at: int
    rule_id: str


def content_candidates(
    store: Store, policy: Policy | PolicySet, *, until: int, limit: int | None = None
) -> list[str]:
    """The conversations with a message in ``content_windows`` (the only ones whose content
    can have expired by ``until``), the one with the oldest such message first; at most
    ``limit``."""
    windows = content_windows(policy, until)
    if not windows:
        return []
    where, params = _where_in_windows("at", windows)
    sql = (
        f"SELECT conversation_id, MIN(at) FROM messages WHERE {where}"
        " GROUP BY conversation_id ORDER BY MIN(at), conversation_id"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [str(row[0]) for row in store.db.execute(sql, params)]


def content_expiries(
    store: Store,
    policy: Policy | PolicySet,
    *,
    until: int,
    conversations: Iterable[str] | None = None,
) -> Iterator[ContentExpiry]:
    """Every stored message whose content expires at or before ``until``, by conversation
    (``conversations``, default ``content_candidates``).

    Each conversation is judged once: its facts (``Store.conversation_facts``) and, for each
    of its messages in a content window, the retention rules of the policy in force at the
    message's time (``policy.coverage.content_expiry``).
    """
    policies = PolicySet.of(policy)
    windows = content_windows(policies, until)
    if not windows:
        return
    if conversations is None:
        conversations = content_candidates(store, policies, until=until)

    def in_window(t: int) -> bool:
        return any((start is None or start <= t) and t <= last for start, last in windows)

    for conversation_id in conversations:
        facts = store.conversation_facts(conversation_id)
        for message in facts.messages:
            if not in_window(message.at):
                continue
            found = content_expiry(policies.in_force(message.at), facts, message)
            if found is not None and found[0] <= until:
                yield ContentExpiry(
                    conversation_id=conversation_id,
                    message_id=message.message_id,
                    message_at=message.at,
                    expires_at=found[0],
                    rule_id=found[1],
                )


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

    def conversations(self, windows: Sequence[Window]) -> dict[str, str]:
        """conversation_id -> account_id of every conversation due for hard deletion: it, or
        its account, was deleted at a time of ``windows``."""
        if not windows:
            return {}
        conv_where, conv_params = _where_in_windows("d.at", windows)
        account_where, account_params = _where_in_windows("a.at", windows)
        rows = self.db.execute(
            "SELECT c.conversation_id, c.account_id FROM conversations c WHERE EXISTS"
            " (SELECT 1 FROM conversation_deletions d"
            f"  WHERE d.conversation_id = c.conversation_id AND ({conv_where}))"
            " OR EXISTS (SELECT 1 FROM account_deletions a"
            f"  WHERE a.account_id = c.account_id AND ({account_where}))",
            (*conv_params, *account_params),
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

    def purge_accounts(self, windows: Sequence[Window]) -> tuple[set[str], set[str]]:
        """Hard-delete the plan/e-mail history, account consents and session rows of accounts
        deleted at a time of ``windows``; returns (those accounts, the ones that had plan or
        consent rows left)."""
        if not windows:
            return set(), set()
        where, bounds = _where_in_windows("at", windows)
        accounts = sorted(
            str(r[0])
            for r in self.db.execute(
                f"SELECT DISTINCT account_id FROM account_deletions WHERE {where}", bounds
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
    store: Store,
    vault: Vault,
    as_of: int,
    observer: Callable[[PurgeCounts], None] | None = None,
) -> PurgeCounts:
    """Delete what has expired by ``as_of`` (the wall clock, normally), in one transaction,
    under the policies of the vault (``Vault.policy``, the ones configured): expired reports,
    the data of conversations and accounts deleted more than ``deleted_after`` before, then
    the messages whose content has expired. ``observer`` hears the counts inside that
    transaction (the audit log)."""
    db = store.db
    policies = PolicySet.of(vault.policy)
    windows = deletion_windows(policies, as_of)
    if db.dialect == "sqlite":
        for schema in ("main", "vault"):
            db.execute(f"PRAGMA {schema}.secure_delete = ON")
    purger = _Purger(db)
    with db.transaction():
        expired = vault.purge_expired(as_of=as_of)
        owners = purger.conversations(windows)
        touched, messages = purger.purge_conversations(sorted(owners))
        due, accounts = purger.purge_accounts(windows)
        accounts |= {owners[conv] for conv in touched} & due
        gone = sorted(found.message_id for found in content_expiries(store, policies, until=as_of))
        purger.delete_in("messages", "message_id", gone)
        counts = PurgeCounts(
            as_of=as_of,
            expired_reports=expired,
            conversations_purged=len(touched),
            messages_purged=messages,
            accounts_purged=len(accounts),
            messages_expired=len(gone),
        )
        if observer is not None:
            observer(counts)
    _checkpoint(db)
    return counts
