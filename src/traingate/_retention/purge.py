"""The purge: what the retention rules (``traingate._retention.rules``) say has expired by an
instant, deleted in one transaction, crypto-shredding the reports (``Vault.purge_expired``).
The SQL that finds and deletes it lives here; the rules stay pure.

``purge`` is idempotent: a second run at the same T finds nothing left to delete.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from traingate._core.policy import Policy, PolicySet
from traingate._core.policy.coverage import content_expiry
from traingate._errors import StoreError
from traingate._retention.rules import (
    ContentExpiry,
    PurgeCounts,
    Window,
    content_windows,
    deletion_windows,
)
from traingate._store.db import Database, chunks

if TYPE_CHECKING:
    from traingate._store.store import Store
    from traingate._vault.vault import Vault

__all__ = ["content_candidates", "content_expiries", "purge"]


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


class _Purger:
    """The main-database half of one purge, inside the caller's transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def select_in(self, sql: str, column: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for chunk in chunks(values):
            clause, params = self.db.in_list(column, chunk)
            rows.extend(self.db.execute(sql.format(where=clause), params))
        return rows

    def delete_in(self, table: str, column: str, values: Sequence[Any]) -> None:
        for chunk in chunks(values):
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
        for chunk in chunks(accounts):
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
        for chunk in chunks(accounts):
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
