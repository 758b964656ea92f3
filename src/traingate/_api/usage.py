"""Token use, audited cheaply: one ``token.use`` entry per token, method and route a minute.

Every request with an API token is counted in memory (one lock, two dict operations). The
first use of a (token, method, route) in a window is written to the audit log at once, with
the uses counted since the previous entry for it; later uses in the window are only counted,
and go into the next entry, or into the entries written when the app shuts down. So each
token's first call of each route in any minute is durable before the call runs, and the
counts add up to every call but the last minute's of a server that was killed.

Routes are templates (``/v1/feedback/{receipt}``), never paths: paths carry receipts and
login links. Lives on ``app.state.token_uses`` (no module-level state).
"""

from __future__ import annotations

import threading
from collections import Counter

from traingate._access.credentials import Principal
from traingate._audit.actions import RECEIPT_HOLDERS, DayCounts
from traingate._audit.log import AuditLog
from traingate._core.timeutil import now_micros
from traingate._facade import Traingate

__all__ = ["RECEIPT_HOLDERS", "WINDOW", "ReceiptUses", "TokenUses"]

WINDOW = 60 * 1_000_000  # µs

_Key = tuple[str, str | None, str, str]  # token id, role, method, route template


class TokenUses:
    """Counts token uses and writes their audit entries (at most one per key a window)."""

    def __init__(self, *, window: int = WINDOW) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._last: dict[_Key, int] = {}
        self._pending: Counter[_Key] = Counter()

    def _count(self, key: _Key, now: int) -> int:
        """The uses to write now, this one included; 0 when it is only counted."""
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.window:
                self._pending[key] += 1
                return 0
            self._last[key] = now
            return 1 + self._pending.pop(key, 0)

    def record(self, *, tg: Traingate, principal: Principal, method: str, route: str) -> None:
        """Count one use of ``route`` by a token; write an entry when its window is new."""
        key = (principal.credential_id, principal.role, method, route)
        uses = self._count(key, now_micros())
        if not uses:
            return
        try:
            _write(tg, key, uses)
        except BaseException:
            with self._lock:  # not written: counted for the next entry
                self._pending[key] += uses
                self._last.pop(key, None)
            raise

    def flush(self, tg: Traingate) -> None:
        """Write the uses counted but not yet written (at shutdown)."""
        with self._lock:
            pending = sorted(self._pending.items(), key=lambda item: repr(item[0]))
            self._pending.clear()
            self._last.clear()
        for key, uses in pending:
            _write(tg, key, uses)


def _write(tg: Traingate, key: _Key, uses: int) -> None:
    token_id, role, method, route = key
    tg.access.record_token_use(token_id=token_id, role=role, method=method, route=route, uses=uses)


class ReceiptUses:
    """Reads and deletions of reports by their receipt holders, counted per UTC day in the
    store as they happen (``auditing.DayCounts``: an upsert of the day's row, so a killed
    server loses none) and written to the audit log as one ``vault.uses`` entry per day once
    the day is over (docs/audit.md): no report id, no caller, no time finer than the day, so
    the log cannot join a report to the session that read it, to its account, or to another
    report read with it. Lives on ``app.state.receipt_uses``."""

    def count(self, log: AuditLog, kind: str) -> None:
        """One use (``reads`` or ``deletions``) today; seals the days before it."""
        DayCounts(log).add(actor=RECEIPT_HOLDERS, action="vault.uses", counts={kind: 1})

    def flush(self, tg: Traingate) -> None:
        """Seal the days before today (at start-up and shutdown); today's counts stay in the
        store until the day is over."""
        DayCounts(tg.audit.log).seal()
