"""Builders of SPEC §2 events for tests: short to write, explicit about time."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from traingate._store.db import Database

Event = dict[str, Any]


class Events:
    """Makes events with unique event_ids. ``t(n)`` is day ``n`` of 2024 at noon UTC."""

    def __init__(self, prefix: str = "e") -> None:
        self._ids = itertools.count(1)
        self.prefix = prefix

    @staticmethod
    def t(day: int, second: int = 0) -> str:
        import datetime as dt

        moment = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC) + dt.timedelta(days=day, seconds=second)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _base(self, type_: str, at: str) -> Event:
        return {"type": type_, "event_id": f"{self.prefix}{next(self._ids)}", "at": at}

    def account(
        self,
        account_id: str,
        at: str,
        plan: str = "free",
        organization_id: str | None = None,
        email: str | None = None,
    ) -> Event:
        return {
            **self._base("account.updated", at),
            "account_id": account_id,
            "email": email or f"{account_id}@example.com",
            "plan": plan,
            "organization_id": organization_id,
        }

    def account_deleted(self, account_id: str, at: str) -> Event:
        return {**self._base("account.deleted", at), "account_id": account_id}

    def consent(
        self,
        subject: str,
        at: str,
        granted: bool,
        scope: str = "account",
        source: str = "privacy_settings",
        setting: str = "model_training",
    ) -> Event:
        key = "account_id" if scope == "account" else "organization_id"
        return {
            **self._base("consent.updated", at),
            "scope": scope,
            key: subject,
            "setting": setting,
            "granted": granted,
            "source": source,
        }

    def conversation(self, conversation_id: str, account_id: str, at: str, **fields: Any) -> Event:
        return {
            **self._base("conversation.updated", at),
            "conversation_id": conversation_id,
            "account_id": account_id,
            **fields,
        }

    def conversation_deleted(self, conversation_id: str, account_id: str, at: str) -> Event:
        return {
            **self._base("conversation.deleted", at),
            "conversation_id": conversation_id,
            "account_id": account_id,
        }

    def message(
        self,
        message_id: str,
        conversation_id: str,
        account_id: str,
        at: str,
        role: str = "user",
        content: str = "hello",
        attachments: list[dict[str, Any]] | None = None,
    ) -> Event:
        return {
            **self._base("message.created", at),
            "conversation_id": conversation_id,
            "message_id": message_id,
            "account_id": account_id,
            "role": role,
            "content": content,
            "attachments": attachments or [],
        }

    def feedback(
        self,
        feedback_id: str,
        account_id: str,
        conversation_id: str,
        message_id: str,
        at: str,
        rating: str = "down",
        comment: str | None = None,
        categories: list[str] | None = None,
    ) -> Event:
        return {
            **self._base("feedback.submitted", at),
            "feedback_id": feedback_id,
            "account_id": account_id,
            "conversation_id": conversation_id,
            "message_id": message_id,
            "rating": rating,
            "comment": comment,
            "categories": categories or [],
        }

    def flag(self, flag_id: str, conversation_id: str, at: str, reason: str | None = None) -> Event:
        return {
            **self._base("safety.flagged", at),
            "flag_id": flag_id,
            "conversation_id": conversation_id,
            "policy": "usage_policy",
            "reason": reason,
        }

    def clear(self, flag_id: str, at: str) -> Event:
        return {**self._base("safety.cleared", at), "flag_id": flag_id}


def jsonl(events: Iterable[Event]) -> list[str]:
    return [json.dumps(e) for e in events]


def switched_ranges(switch: str) -> list[dict[str, Any]]:
    """``PolicySet.ranges()`` of consumer-2024 followed by consumer-2025 from ``switch``."""
    from traingate._core.policy import bundled_policy, default_policy

    return [
        {
            "id": "consumer-2024",
            "version": default_policy().version,
            "sha256": default_policy().sha256,
            "effective_from": "2024-01-01T00:00:00Z",
            "from": None,
            "until": switch,
        },
        {
            "id": "consumer-2025",
            "version": bundled_policy("consumer-2025").version,
            "sha256": bundled_policy("consumer-2025").sha256,
            "effective_from": switch,
            "from": switch,
            "until": None,
        },
    ]


def extended_policy(
    tmp_path: Path,
    *,
    plan: str = "student",
    setting: str = "memory",
    effective_from: str = "2024-01-01T00:00:00Z",
) -> Path:
    """The default policy under another id, declaring one more consumer plan and one more
    setting."""
    from traingate._core.policy import default_policy

    policy = default_policy()
    text = (
        resources.files("traingate._core.policy").joinpath(f"{policy.id}.toml").read_text("utf-8")
    )
    for old, new in (
        (f'id = "{policy.id}"', 'id = "test-extended"'),
        (f'effective_from = "{policy.effective_from}"', f'effective_from = "{effective_from}"'),
        ("[plans]\n", f'[plans]\n{plan} = "consumer"\n'),
        ("[settings]\n", f'[settings]\n{setting} = "A setting no basis uses."\n'),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "test-extended.toml"
    path.write_text(text)
    return path


def all_text(db: Database) -> str:
    """Every text value of every table of a store's main database (the vault's tables, whose
    values are encrypted, left out), joined by spaces."""
    if db.dialect == "sqlite":
        tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        tables = db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    names = [str(t[0]) for t in tables if not str(t[0]).startswith(db.vault_prefix)]
    assert "events" in names and "messages" in names
    return " ".join(
        value
        for name in names
        for row in db.execute(f"SELECT * FROM {name}")
        for value in row
        if isinstance(value, str)
    )
