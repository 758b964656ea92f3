"""Store queries of part of a build (``BuildRequest.conversations``, ``watermark``). Pure.

An incremental build (``build/incremental.py``) asks an engine about some conversations only,
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

from traingate.errors import BuildError
from traingate.store.export import StoreReader

__all__ = ["SEQ_COLUMNS", "at_watermark", "restricted_messages"]

# The column holding the seq of the event that wrote a row, per store table.
SEQ_COLUMNS = {"conversations": "first_seq"}
_FROM = re.compile(r"\bFROM (\w+)")


def _seq_column(table: str) -> str:
    return SEQ_COLUMNS.get(table, "event_seq")


def at_watermark(query: str, watermark: int | None) -> str:
    """``query`` (one store table after ``FROM``) reading only that table's rows written by
    events of seq <= ``watermark`` (None: unchanged)."""
    if watermark is None:
        return query
    found = _FROM.search(query)
    if found is None:
        raise BuildError(f"cannot restrict a store query to a watermark: {query!r}")
    table = found.group(1)
    rows = f"(SELECT * FROM {table} WHERE {_seq_column(table)} <= {int(watermark)}) {table}"
    return query[: found.start(1)] + rows + query[found.end(1) :]


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
        conditions.append(f"event_seq <= {int(watermark)}")
    if not conditions:
        return sql, tuple(params)
    marker = "FROM messages WHERE "
    if sql.count(marker) != 1:
        raise BuildError(f"cannot restrict the message query: {sql!r}")
    restricted = sql.replace(marker, marker + " AND ".join(conditions) + " AND ")
    return restricted, (*values, *params)
