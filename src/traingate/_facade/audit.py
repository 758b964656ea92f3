"""``tg.audit``: the audit log (docs/audit.md), the one helper through which every area
records what it did, and the log's verification and entries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from traingate._audit.actions import DayCounts, mentions, subject_key, verify_summary
from traingate._audit.log import AuditEntry, AuditLog
from traingate._facade.area import Area

__all__ = ["Audit"]


class Audit(Area):
    @property
    def log(self) -> AuditLog:
        """The audit log, over the store's connection, keyed by the one key ring."""
        return AuditLog(self._tg.store.db, keys=self._tg.keys)

    def record(self, action: str, *, actor: str, details: Mapping[str, Any]) -> None:
        """Append the entry of an action an area took, naming ``actor`` (in the caller's
        transaction when there is one): every area that changes or reveals data records here."""
        self.log.append(actor=actor, action=action, details=details)

    def verify(self, *, expect_head: tuple[int, str | None] | None = None) -> dict[str, Any]:
        """Check the whole chain; the summary ``traingate audit verify`` prints (``ok``,
        counts by action, the head, each problem with its seq and kind). ``expect_head``
        (seq, hash or None), a head recorded earlier, must still be reached: without it an
        empty log with no head cannot tell "never written" from "wiped", and says so."""
        log = self.log
        entries, head, problems = log.inspect(expect=expect_head)
        pending = DayCounts(log).pending()  # counted, not sealed yet
        return verify_summary(entries, problems, head, pending=pending)

    def entries(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        accounts: Iterable[str] = (),
        organizations: Iterable[str] = (),
    ) -> list[AuditEntry]:
        """Entries after ``after`` in order; with ``accounts`` or ``organizations``, only
        those naming one of them (by their keyed hash)."""
        ring = self._tg.keys
        keys = [subject_key(ring, scope="account", subject=a) for a in accounts]
        keys += [subject_key(ring, scope="organization", subject=o) for o in organizations]
        entries = self.log.entries(after=after, limit=None if keys else limit)
        if not keys:
            return list(entries)
        found = [entry for entry in entries if mentions(entry, keys)]
        return found if limit is None else found[:limit]
