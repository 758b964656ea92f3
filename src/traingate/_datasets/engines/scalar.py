"""The scalar engine: the reference the bulk engine is held to, and the naive baseline.

It walks the store one conversation at a time (in conversation id order, as the DuckDB engine
does), asks the scalar evaluator (``explain_conversation``, the one behind ``explain``) about
each message, and assembles records with the pure ``deid`` functions. It is slow by design:
obviously right, one question at a time. Select it with ``--engine scalar``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from traingate._core.deid import redact, redact_json_text, strip_attachment
from traingate._core.facts import MessageFact
from traingate._core.policy import explain_conversation
from traingate._core.timeutil import utc_date
from traingate._datasets.engines.base import DECISION_SCHEMA, BuildRequest, EngineBatch, Tally
from traingate._datasets.records import ENGINE_SCHEMA
from traingate._store.export import StoreReader
from traingate._store.store import Store

__all__ = ["ScalarEngine"]


class ScalarEngine:
    """Decide message by message with the scalar evaluator. ``conversations`` restricts the
    run to those ids (a sample); ``batch_conversations`` sets how many make one batch."""

    name = "scalar"
    writes_parts = False

    def __init__(
        self, *, conversations: Sequence[str] | None = None, batch_conversations: int = 500
    ) -> None:
        self.conversations = conversations
        self.batch_conversations = batch_conversations

    def run(
        self, *, request: BuildRequest, source: StoreReader, store: Store
    ) -> Iterator[EngineBatch]:
        ids = (
            list(self.conversations)
            if self.conversations is not None
            else [
                str(row[0]) for row in source.fetchall("SELECT conversation_id FROM conversations")
            ]
        )
        ids.sort()
        for start in range(0, len(ids), self.batch_conversations):
            yield self._batch(request, store, ids[start : start + self.batch_conversations])

    def _batch(self, request: BuildRequest, store: Store, ids: Sequence[str]) -> EngineBatch:
        policies, purpose, as_of = request.policies, request.purpose, request.as_of
        order = list(policies.basis_order())
        rows: list[dict[str, Any]] = []
        tally: Counter[tuple[str | None, str | None]] = Counter()
        decisions: list[dict[str, Any]] = []
        seen = 0
        for conversation_id in ids:
            facts = store.conversation_facts(conversation_id)
            decided = explain_conversation(
                policy=policies, facts=facts, purpose=purpose, as_of=as_of
            )
            seen += len(decided)
            eligible: dict[str, list[MessageFact]] = {}
            for message, decision in decided:
                if decision.basis is not None:
                    tally[(decision.basis, None)] += 1
                    eligible.setdefault(decision.basis, []).append(message)
                else:
                    tally[(None, decision.primary_reason)] += 1
                if request.keep_decisions:
                    decisions.append(
                        {
                            "conversation_id": conversation_id,
                            "seq": message.seq,
                            "basis": decision.basis,
                            "reason": None if decision.eligible else decision.primary_reason,
                            "policy": policies.index_at(message.at),
                        }
                    )
            if eligible:
                rows.extend(_records(store, conversation_id, eligible, order, as_of))
        return EngineBatch(
            records=pa.RecordBatch.from_pylist(rows, schema=ENGINE_SCHEMA),
            tally=Tally(counts=dict(tally)),
            messages_seen=seen,
            decisions=(
                pa.Table.from_pylist(decisions, schema=DECISION_SCHEMA)
                if request.keep_decisions
                else None
            ),
        )


def _records(
    store: Store,
    conversation_id: str,
    eligible: dict[str, list[MessageFact]],
    order: Sequence[str],
    as_of: int,
) -> Iterator[dict[str, Any]]:
    stored = {m.message_id: m for m in store.messages_until(conversation_id, as_of)}
    settings = store.settings_as_of(conversation_id, as_of)
    for basis in sorted(eligible, key=order.index):
        messages = [stored[m.message_id] for m in eligible[basis]]
        yield {
            "conversation_id": conversation_id,
            "basis": basis,
            "date": utc_date(messages[0].at),
            "messages": [
                {
                    "role": m.role,
                    "content": redact(m.content),
                    "attachments": [strip_attachment(a) for a in m.attachments],
                }
                for m in messages
            ],
            "message_count": len(messages),
            "custom_style": redact_json_text(settings.get("custom_style")),
            "preferences": redact_json_text(settings.get("preferences")),
        }
