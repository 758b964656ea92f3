"""``tg.retention``: what expires when, and the purge that deletes it (SPEC §5,
docs/vault.md)."""

from __future__ import annotations

from traingate._audit.actions import SYSTEM
from traingate._core.timeutil import now_micros
from traingate._facade.area import Area
from traingate._retention.purge import purge as purge_expired
from traingate._retention.rules import PurgeCounts
from traingate._retention.status import RetentionStatus, retention_status

__all__ = ["Retention"]


class Retention(Area):
    def status(self, *, as_of: int | None = None) -> RetentionStatus:
        """The retention rules, what expires when, what the next purge deletes, and the last
        purge."""
        tg = self._tg
        when = now_micros() if as_of is None else as_of
        return retention_status(tg.store.db, as_of=when, policy=tg.policies, store=tg.store)

    def purge(self, *, as_of: int | None = None, actor: str = SYSTEM) -> PurgeCounts:
        """Delete expired reports and messages whose content expired (SPEC §5), and
        hard-delete data deleted more than ``deleted_after`` (30 days by default) before
        ``as_of`` (default: now, the one place the wall clock decides); the audit entry
        (action ``purge``, the counts) commits with the deletions."""
        tg = self._tg

        def audit(counts: PurgeCounts) -> None:
            tg.audit.record("purge", actor=actor, details=counts.to_dict())

        when = now_micros() if as_of is None else as_of
        return purge_expired(store=tg.store, vault=tg.vault, as_of=when, observer=audit)
