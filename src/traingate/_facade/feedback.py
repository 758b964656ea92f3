"""``tg.feedback``: the feedback vault (docs/vault.md): reports submitted, shown and deleted
by their receipts, and the rotation of the master keys that wrap them."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Protocol

from traingate._audit.actions import SYSTEM
from traingate._audit.log import AuditLog
from traingate._core.report import Snapshot
from traingate._core.timeutil import format_instant, now_micros, utc_date
from traingate._errors import ConfigError
from traingate._facade.area import Area
from traingate._vault.rotation import RotationResult, rotate_master_key
from traingate._vault.vault import ReportInfo

__all__ = ["Feedback", "ReceiptTally"]


class ReceiptTally(Protocol):
    """Where a server counts receipt holders' reads and deletions (``api.usage.ReceiptUses``)."""

    def count(self, log: AuditLog, kind: str) -> None: ...


class Feedback(Area):
    def submit(
        self,
        *,
        account_id: str,
        conversation_id: str,
        message_id: str,
        rating: str,
        comment: str | None = None,
        categories: Iterable[str] = (),
        actor: str = SYSTEM,
    ) -> tuple[str, ReportInfo]:
        """Write the account's feedback.submitted event (at now) through ingest; returns the
        receipt of the vaulted report and its times. Raises EventError when it is rejected."""
        summary = self._ingest_one(
            {
                "type": "feedback.submitted",
                "event_id": f"tg-feedback-{secrets.token_hex(16)}",
                "at": format_instant(now_micros()),
                "feedback_id": f"tg-fb-{secrets.token_hex(16)}",
                "account_id": account_id,
                "conversation_id": conversation_id,
                "message_id": message_id,
                "rating": rating,
                "comment": comment,
                "categories": list(categories),
            },
            actor=actor,
        )
        receipt = summary.receipts[0][2]
        return receipt, self.info(receipt)

    def show(
        self, receipt: str, *, actor: str = SYSTEM, tally: ReceiptTally | None = None
    ) -> tuple[ReportInfo, Snapshot]:
        """The report a receipt names, decrypted. Raises ReceiptError. Audited without the
        report or the reader (docs/audit.md): counted by ``tally`` (the server's per-day
        counts) or, without one, as a ``vault.uses`` entry of one read today by ``actor``."""
        info, snapshot = self._tg.vault.show(receipt)
        self._count_use("reads", actor=actor, tally=tally)
        return info, snapshot

    def info(self, receipt: str) -> ReportInfo:
        """Only the times and key id of the report a receipt names (what its submitter is
        told; not a read of its content). Raises ReceiptError."""
        return self._tg.vault.show(receipt)[0]

    def delete(
        self, receipt: str, *, actor: str = SYSTEM, tally: ReceiptTally | None = None
    ) -> ReportInfo:
        """Delete (crypto-shred) the report a receipt names. Raises ReceiptError. Counted as
        ``show`` is: no report id, no reader, the day alone."""
        vault = self._tg.vault
        info = vault.delete(receipt)
        vault.checkpoint()
        self._count_use("deletions", actor=actor, tally=tally)
        return info

    def _count_use(self, kind: str, *, actor: str, tally: ReceiptTally | None) -> None:
        if tally is not None:
            tally.count(self._tg.audit.log, kind)
            return
        counts = {"reads": 0, "deletions": 0, kind: 1}
        details = {"day": utc_date(now_micros()), **counts}
        self._tg.audit.record("vault.uses", actor=actor, details=details)

    def rotate_keys(self, *, retire_old: bool = False, actor: str = SYSTEM) -> RotationResult:
        """Rotate to a new master key (saved to the key file first), re-wrap every data key
        under it, and with ``retire_old`` destroy the older master keys. The open facade's
        one key ring is replaced (``Traingate.use_keys``): the store, the vault and every
        area read it from there."""
        tg = self._tg
        if tg.key_file is None:
            raise ConfigError("no key file to rotate: open traingate with settings")
        result, ring = rotate_master_key(
            vault=tg.vault, key_file=tg.key_file, retire_old=retire_old
        )
        tg.use_keys(ring)
        tg.audit.record("keys.rotate", actor=actor, details=result.to_dict())
        return result
