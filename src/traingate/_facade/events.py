"""``tg.events``: ingest (SPEC §2), and the events a user starts through it (docs/api.md)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from traingate._audit.actions import SYSTEM, IngestAuditor
from traingate._core.timeutil import format_instant, now_micros
from traingate._errors import PolicyError
from traingate._facade.area import Area
from traingate._ingest import DEFAULT_BATCH, IngestSummary, ingest_lines

__all__ = ["Events"]


class Events(Area):
    def ingest(
        self,
        lines: Iterable[str],
        *,
        batch_size: int = DEFAULT_BATCH,
        workers: int | None = None,
        actor: str = SYSTEM,
    ) -> IngestSummary:
        """Ingest JSONL event lines (SPEC §2); returns the SPEC §4 summary. ``workers``: parse
        processes for the lines past the first 20,000 (default: a core less than the machine
        has, at most four; 0: none)."""
        tg = self._tg
        return ingest_lines(
            store=tg.store,
            sink=tg.vault,
            policy=tg.policies,
            lines=lines,
            batch_size=batch_size,
            workers=workers,
            observer=IngestAuditor(log=tg.audit.log, keys=tg.keys, actor=actor),
            archive=tg.archive,
        )

    def record_consent(
        self,
        *,
        account_id: str,
        granted: bool,
        source: str = "privacy_settings",
        actor: str = SYSTEM,
    ) -> int:
        """Write the account's own training consent change (a consent.updated event, at the
        wall clock's now, for the setting of the account-scope consent basis of the policy in
        force now) through ingest; returns its time."""
        at = now_micros()
        in_force = self._tg.policies.in_force(at)
        setting = in_force.account_setting()
        if setting is None:
            raise PolicyError(
                f"policy {in_force.label} has no account-scope consent: "
                "an account cannot change a training setting of its own"
            )
        self._ingest_one(
            {
                "type": "consent.updated",
                "event_id": f"tg-consent-{secrets.token_hex(16)}",
                "at": format_instant(at),
                "scope": "account",
                "account_id": account_id,
                "setting": setting,
                "granted": granted,
                "source": source,
            },
            actor=actor,
        )
        return at

    def delete_conversation(
        self, *, conversation_id: str, account_id: str, actor: str = SYSTEM
    ) -> int:
        """Write a conversation.deleted event (at now) through ingest; returns its time."""
        at = now_micros()
        self._ingest_one(
            {
                "type": "conversation.deleted",
                "event_id": f"tg-delete-{secrets.token_hex(16)}",
                "at": format_instant(at),
                "conversation_id": conversation_id,
                "account_id": account_id,
            },
            actor=actor,
        )
        return at
