"""Store queries of part of a build (``BuildRequest.conversations``, ``watermark``). Pure.

An incremental build (``_datasets/incremental.py``) asks an engine about some conversations only,
and once about them as the store was at an earlier build's watermark (the highest event seq
that build's snapshot saw). Every ledger and message row carries the seq of the event that
wrote it (``event_seq``; a conversation's row its ``first_seq``), and writers commit in seq
order, so the store as it was at seq W is its rows of seq <= W (less what a purge deleted
since, which the incremental build checks for). These functions rewrite the engine's store
queries (``compile.LEDGERS``, ``compile.message_query``) accordingly; they know nothing of a
policy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from traingate._errors import BuildError
from traingate._store.export import StoreReader

__all__ = ["SEQ_COLUMNS", "restricted_ledger", "restricted_messages"]

# The column holding the seq of the event that wrote a row, per store table.
SEQ_COLUMNS = {"conversations": "first_seq"}
_FROM = re.compile(r"\bFROM (\w+)")


def _seq_column(table: str) -> str:
    return SEQ_COLUMNS.get(table, "event_seq")


# What restricts each ledger table to the conversations asked about (``{c}``: the condition
# on a conversation id column, its one parameter being the conversations): their own rows,
# their accounts', and the consents of those accounts and of every organization they had.
_ACCOUNTS = "SELECT account_id FROM conversations WHERE {c}"
_BY_TABLE = {
    "conversations": "{c}",
    "conversation_deletions": "{c}",
    "conversation_settings": "{c}",
    "flags": "{c}",
    "flag_clears": "flag_id IN (SELECT flag_id FROM flags WHERE {c})",
    "account_plans": f"account_id IN ({_ACCOUNTS})",
    "account_deletions": f"account_id IN ({_ACCOUNTS})",
    "consents": f"(subject IN ({_ACCOUNTS}) OR subject IN (SELECT organization_id FROM"
    f" account_plans WHERE account_id IN ({_ACCOUNTS})))",
}


def restricted_ledger(
    query: str,
    params: Sequence[Any],
    *,
    source: StoreReader,
    conversations: Sequence[str] | None,
    watermark: int | None,
) -> tuple[str, tuple[Any, ...]]:
    """``query`` (one store table after ``FROM``, ``params`` its parameters) reading only
    that table's rows written by events of seq <= ``watermark`` and those that decisions
    about ``conversations`` read (None: no such restriction), with its parameters."""
    if watermark is None and conversations is None:
        return query, tuple(params)
    found = _FROM.search(query)
    if found is None:
        raise BuildError(f"cannot restrict a store query: {query!r}")
    table = found.group(1)
    conditions, values = [], []
    if watermark is not None:
        conditions.append(f"{_seq_column(table)} <= {int(watermark)}")
    if conversations is not None:
        if table not in _BY_TABLE:
            raise BuildError(f"cannot restrict the store table {table} to conversations")
        condition, value = source.in_values("conversation_id", list(conversations))
        restriction = _BY_TABLE[table].format(c=condition)
        conditions.append(restriction)
        values += [value] * restriction.count("?")
    rows = f"(SELECT * FROM {table} WHERE {' AND '.join(conditions)}) {table}"
    return query[: found.start(1)] + rows + query[found.end(1) :], (*values, *params)


def restricted_messages(
    sql: str,
    params: Sequence[Any],
    *,
    source: StoreReader,
    conversations: Sequence[str] | None,
    watermark: int | None,
) -> tuple[str, tuple[Any, ...]]:
    """The message listing ``sql`` (``... FROM messages WHERE ...``, ``params`` its
    parameters) restricted to ``conversations`` (None: all) and to the messages of seq <=
    ``watermark`` (None: all), with its parameters."""
    conditions: list[str] = []
    values: list[Any] = []
    if conversations is not None:
        condition, value = source.in_values("conversation_id", list(conversations))
        conditions.append(condition)
        values.append(value)
    if watermark is not None:
        conditions.append(f"event_seq <= {int(watermark)}")  # the index on conversations
    if not conditions:
        return sql, tuple(params)
    marker = "FROM messages WHERE "
    if sql.count(marker) != 1:
        raise BuildError(f"cannot restrict the message query: {sql!r}")
    restricted = sql.replace(marker, marker + " AND ".join(conditions) + " AND ")
    return restricted, (*values, *params)
