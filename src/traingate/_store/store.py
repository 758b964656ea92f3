"""The Store: traingate's ledgers and messages over one Database (SQLite or PostgreSQL).

Reads answer the questions of ingest checks, explain and snapshots; writes append rows. What an
event means is decided in ``traingate._ingest``; this module only moves rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from traingate._core.facts import (
    ConsentChange,
    ConsentKey,
    ConversationFacts,
    FlagFact,
    MessageFact,
    MessageRow,
    PlanChange,
)
from traingate._errors import NotFoundError
from traingate._keys import KeyRing
from traingate._store.db import Database, PostgresDatabase, chunks
from traingate._store.schema import migrate

__all__ = ["MessageRow", "Store", "deletions_held"]

_NO_LIMIT = 2**62
_COPY_FROM = 200  # rows; below this, COPY's setup costs more than it saves


def deletions_held(db: Database) -> dict[str, list[tuple[str, int, int]]]:
    """The deletions whose data the store still holds, for the retention status: by kind
    ("conversation", "account"), (subject, first deletion's time, messages held). Every
    deleted conversation is listed (with 0 messages when they are gone), and every deleted
    account with a plan row or a message left."""
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
    return {
        kind: [(str(subject), int(at), int(messages)) for subject, at, messages in rows]
        for kind, rows in (("conversation", conversations), ("account", accounts))
    }


class Store:
    """Ledgers, conversations and messages. Create with ``Store.open(db, keys=...)``."""

    def __init__(self, db: Database, *, keys: KeyRing) -> None:
        self.db = db
        self.keys = keys

    @classmethod
    def open(cls, db: Database, *, keys: KeyRing) -> Store:
        migrate(db)
        return cls(db, keys=keys)

    def close(self) -> None:
        self.db.close()

    # -- lookups for ingest checks (batched) ---------------------------------------------------

    def _select_in(self, sql: str, column: str, values: Iterable[Any]) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` whose ``{where}`` (one or more of them) says ``column`` is one of
        ``values``, queried a chunk of values at a time, in order."""
        unique = sorted(set(values))
        rows: list[tuple[Any, ...]] = []
        uses = sql.count("{where}")
        for chunk in chunks(unique):
            clause, params = self.db.in_list(column, chunk, uses=uses)
            rows.extend(self.db.execute(sql.format(where=clause), params))
        return rows

    def known_events(self, event_keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """event key -> body hash (``KeyRing.short_hash``), for the keys of accepted events
        (reports included)."""
        rows = self._select_in(
            "SELECT event_key, body_hash FROM events WHERE {where}"
            " UNION ALL SELECT event_key, body_hash FROM report_events WHERE {where}",
            "event_key",
            event_keys,
        )
        return {bytes(key): bytes(body_hash) for key, body_hash in rows}

    def conversation_owners(self, conversation_ids: Iterable[str]) -> dict[str, str]:
        return {
            conv: owner for conv, (owner, _) in self.conversation_records(conversation_ids).items()
        }

    def conversation_records(self, conversation_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """conversation_id -> (owning account, mode) for the conversations the store holds."""
        rows = self._select_in(
            "SELECT conversation_id, account_id, mode FROM conversations WHERE {where}",
            "conversation_id",
            conversation_ids,
        )
        return {conv: (account, mode) for conv, account, mode in rows}

    def find_conversations(self, text: str, *, limit: int) -> list[tuple[str, str, str]]:
        """(conversation_id, account, mode) of the conversations whose id starts with ``text``
        or whose owning account is ``text``, by id, at most ``limit``."""
        rows = self.db.execute(
            "SELECT conversation_id, account_id, mode FROM conversations"
            " WHERE substr(conversation_id, 1, ?) = ? OR account_id = ?"
            " ORDER BY conversation_id LIMIT ?",
            (len(text), text, text, limit),
        )
        return [(str(conv), str(account), str(mode)) for conv, account, mode in rows]

    def flagged_conversations(self, conversation_ids: Iterable[str]) -> set[str]:
        """The conversations of ``conversation_ids`` that a stored flag names."""
        rows = self._select_in(
            "SELECT DISTINCT conversation_id FROM flags WHERE {where}",
            "conversation_id",
            conversation_ids,
        )
        return {row[0] for row in rows}

    def deleted_conversations(self, conversation_ids: Iterable[str]) -> set[str]:
        rows = self._select_in(
            "SELECT DISTINCT conversation_id FROM conversation_deletions WHERE {where}",
            "conversation_id",
            conversation_ids,
        )
        return {row[0] for row in rows}

    def deleted_accounts(self, account_ids: Iterable[str]) -> set[str]:
        rows = self._select_in(
            "SELECT DISTINCT account_id FROM account_deletions WHERE {where}",
            "account_id",
            account_ids,
        )
        return {row[0] for row in rows}

    def message_places(self, message_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """message_id -> (conversation_id, at) for the ids the store holds."""
        rows = self._select_in(
            "SELECT message_id, conversation_id, at FROM messages WHERE {where}",
            "message_id",
            message_ids,
        )
        return {mid: (conv, int(at)) for mid, conv, at in rows}

    def known_flags(self, flag_ids: Iterable[str]) -> set[str]:
        rows = self._select_in("SELECT flag_id FROM flags WHERE {where}", "flag_id", flag_ids)
        return {row[0] for row in rows}

    def known_feedback(self, feedback_keys: Iterable[str]) -> set[str]:
        rows = self._select_in(
            "SELECT feedback_key FROM feedback_keys WHERE {where}", "feedback_key", feedback_keys
        )
        return {row[0] for row in rows}

    def next_seq(self) -> int:
        rows = self.db.execute("SELECT MAX(seq) FROM events")
        return int(rows[0][0] or 0) + 1

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Append rows: COPY on PostgreSQL for large batches, executemany otherwise."""
        if len(rows) >= _COPY_FROM and isinstance(self.db, PostgresDatabase):
            self.db.copy_rows(table, columns, rows)
            return
        marks = ", ".join("?" * len(columns))
        self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def count(self, table: str) -> int:
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table}")[0][0])

    # -- reads for explain and snapshots -----------------------------------------------------

    def conversation_owner(self, conversation_id: str) -> str:
        owners = self.conversation_owners([conversation_id])
        if conversation_id not in owners:
            raise NotFoundError(f"conversation {conversation_id!r} is not in the store")
        return owners[conversation_id]

    def conversation_mode(self, conversation_id: str) -> str:
        """The conversation's mode (SPEC §5); raises NotFoundError for an unknown one."""
        records = self.conversation_records([conversation_id])
        if conversation_id not in records:
            raise NotFoundError(f"conversation {conversation_id!r} is not in the store")
        return records[conversation_id][1]

    def conversation_facts(self, conversation_id: str) -> ConversationFacts:
        """Everything the policy needs to judge this conversation's messages, in six queries:
        the conversation, its messages, its account's plans, the consents of the account and of
        every organization those plans name (every setting), its flags with their clears, and
        the deletions of the conversation and of the account."""
        db = self.db
        records = self.conversation_records([conversation_id])
        if conversation_id not in records:
            raise NotFoundError(f"conversation {conversation_id!r} is not in the store")
        account_id, mode = records[conversation_id]
        messages = tuple(
            MessageFact(message_id=mid, at=int(at), seq=int(seq), role=role)
            for mid, at, seq, role in db.execute(
                "SELECT message_id, at, event_seq, role FROM messages"
                " WHERE conversation_id = ? ORDER BY at, event_seq",
                (conversation_id,),
            )
        )
        plans = tuple(
            PlanChange(at=int(at), seq=int(seq), plan=plan, organization_id=org)
            for at, seq, plan, org in db.execute(
                "SELECT at, event_seq, plan, organization_id FROM account_plans"
                " WHERE account_id = ? ORDER BY at, event_seq",
                (account_id,),
            )
        )
        organizations = sorted({p.organization_id for p in plans if p.organization_id})
        consents = self._consents(account_id, organizations)
        flags: dict[str, tuple[int, str, list[int]]] = {}
        for flag_id, at, policy, cleared in db.execute(
            "SELECT f.flag_id, f.at, f.policy, c.at FROM flags f"
            " LEFT JOIN flag_clears c ON c.flag_id = f.flag_id"
            " WHERE f.conversation_id = ? ORDER BY f.at, f.event_seq, c.at",
            (conversation_id,),
        ):
            entry = flags.setdefault(flag_id, (int(at), policy, []))
            if cleared is not None:
                entry[2].append(int(cleared))
        deleted: dict[str, list[int]] = {"conversation": [], "account": []}
        for kind, at in db.execute(
            "SELECT 'conversation', at FROM conversation_deletions WHERE conversation_id = ?"
            " UNION ALL SELECT 'account', at FROM account_deletions WHERE account_id = ?",
            (conversation_id, account_id),
        ):
            deleted[kind].append(int(at))
        return ConversationFacts(
            conversation_id=conversation_id,
            account_id=account_id,
            messages=messages,
            plans=plans,
            consents=consents,
            flags=tuple(
                FlagFact(flag_id=flag_id, at=at, policy=policy, cleared_at=tuple(clears))
                for flag_id, (at, policy, clears) in flags.items()
            ),
            conversation_deleted=tuple(sorted(deleted["conversation"])),
            account_deleted=tuple(sorted(deleted["account"])),
            mode=mode,
        )

    def _consents(
        self, account_id: str, organizations: Sequence[str]
    ) -> dict[ConsentKey, tuple[ConsentChange, ...]]:
        """Every consent ledger (all settings) of the account and of ``organizations``, keyed
        (scope, subject, setting), each in time order (then arrival)."""
        subjects = [("account", account_id)] + [("organization", org) for org in organizations]
        where = " OR ".join("(scope = ? AND subject = ?)" for _ in subjects)
        ledgers: dict[ConsentKey, list[ConsentChange]] = {}
        for scope, subject, setting, at, seq, granted, source in self.db.execute(
            "SELECT scope, subject, setting, at, event_seq, granted, source FROM consents"
            f" WHERE {where} ORDER BY at, event_seq",
            tuple(value for pair in subjects for value in pair),
        ):
            ledgers.setdefault((scope, subject, setting), []).append(
                ConsentChange(at=int(at), seq=int(seq), granted=bool(granted), source=source)
            )
        return {key: tuple(changes) for key, changes in sorted(ledgers.items())}

    def consent_ledger(self, scope: str, subject: str, setting: str) -> tuple[ConsentChange, ...]:
        """One subject's consent changes for one setting, in time order (then arrival)."""
        return tuple(
            ConsentChange(at=int(at), seq=int(seq), granted=bool(granted), source=source)
            for at, seq, granted, source in self.db.execute(
                "SELECT at, event_seq, granted, source FROM consents"
                " WHERE scope = ? AND subject = ? AND setting = ? ORDER BY at, event_seq",
                (scope, subject, setting),
            )
        )

    def has_account(self, account_id: str) -> bool:
        """Whether the store holds a plan of the account (it has been named by an event)."""
        return bool(
            self.db.execute(
                "SELECT 1 FROM account_plans WHERE account_id = ? LIMIT 1", (account_id,)
            )
        )

    def has_pending_builds(self) -> bool:
        """Whether a build's lineage is recorded but not completed (``builds.pending_scratch``):
        what ``settle_builds`` decides; cheap, and without importing the build modules."""
        return bool(
            self.db.execute("SELECT 1 FROM builds WHERE pending_scratch IS NOT NULL LIMIT 1")
        )

    def account_deletions(self, account_id: str) -> tuple[int, ...]:
        return tuple(
            int(r[0])
            for r in self.db.execute(
                "SELECT at FROM account_deletions WHERE account_id = ?", (account_id,)
            )
        )

    def messages_until(
        self, conversation_id: str, until: int, *, before_seq: int | None = None
    ) -> list[MessageRow]:
        """The conversation's messages with ``at <= until``, in time order (then arrival);
        with ``before_seq``, only those accepted before that event."""
        return [
            MessageRow(
                message_id=mid,
                role=role,
                at=int(at),
                seq=int(seq),
                content=content,
                attachments=tuple(json.loads(attachments)),
            )
            for mid, role, at, seq, content, attachments in self.db.execute(
                "SELECT message_id, role, at, event_seq, content, attachments FROM messages"
                " WHERE conversation_id = ? AND at <= ? AND event_seq < ? ORDER BY at, event_seq",
                (conversation_id, until, _NO_LIMIT if before_seq is None else before_seq),
            )
        ]

    def settings_as_of(
        self, conversation_id: str, as_of: int, *, before_seq: int | None = None
    ) -> dict[str, Any]:
        """custom_style, preferences and title as of ``as_of``: for each, the latest update
        (by time, then arrival) that carried it; with ``before_seq``, among those accepted
        before that event."""
        settings: dict[str, Any] = {"custom_style": None, "preferences": None, "title": None}
        for (fields,) in self.db.execute(
            "SELECT fields FROM conversation_settings"
            " WHERE conversation_id = ? AND at <= ? AND event_seq < ? ORDER BY at, event_seq",
            (conversation_id, as_of, _NO_LIMIT if before_seq is None else before_seq),
        ):
            settings.update(json.loads(fields))
        return settings
