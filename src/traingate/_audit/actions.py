"""What traingate records in its audit log (docs/audit.md): who did what, with which details.

The log itself (the keyed hash chain, verification) is ``traingate._audit.log``; this module says
what goes into it. An actor is ``cli:<OS user>``, ``token:<token id>``,
``session:<session id>``, ``system`` (a library caller that named no one), or one of the two
actors whose acts are only counted per UTC day (``DayCounts``): ``end-user`` (reports end
users submit) and ``receipt-holders`` (reads and deletions of reports by receipt). Details
hold counts, the public ids of builds, tokens and sessions, and keyed hashes of account and
organization ids (``subject_key``): never a secret, a receipt, a token or session
credential, an e-mail address, any content, a report's id, or a time finer than the day of
anything an end user or a receipt holder did with a report.

Why keyed hashes and not account ids: the log is append-only and outlives every purge, so a
raw id written there would survive the hard deletion of its account forever. A privacy officer
who knows an id finds its entries (``traingate audit export --account ID``); nobody can read
ids out of the log.
"""

from __future__ import annotations

import getpass
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from traingate._audit.log import AuditEntry, AuditLog, AuditProblem
from traingate._core.timeutil import format_instant, now_micros, utc_date
from traingate._ingest import AcceptedBatch
from traingate._keys import KeyRing

__all__ = [
    "ACTIONS",
    "DAY_COUNTED",
    "END_USER",
    "RECEIPT_HOLDERS",
    "SYSTEM",
    "DayCounts",
    "IngestAuditor",
    "cli_actor",
    "mentions",
    "subject_key",
    "verify_summary",
]

SYSTEM = "system"
# The actor of an end user's feedback submission: never the session (it names the account).
END_USER = "end-user"
# The actor of reads and deletions of reports by whoever holds their receipts (the server).
RECEIPT_HOLDERS = "receipt-holders"

# What is counted per UTC day rather than logged one entry per act (docs/audit.md "Reports stay
# de-linked"): (actor, action) -> the counts of its entries. An entry per act would carry the
# act's time (and its place in the chain), which joins a report to whoever acted on it.
DAY_COUNTED: dict[tuple[str, str], tuple[str, ...]] = {
    (RECEIPT_HOLDERS, "vault.uses"): ("reads", "deletions"),
    (END_USER, "ingest.day"): ("accepted", "duplicates", "rejected"),
}

ACTIONS: dict[str, str] = {
    "ingest.batch": "one ingest transaction that accepted events: counts by event type, "
    "duplicates and events its checks rejected",
    "consent.change": "one accepted consent.updated event: scope, subject_key, granted, source, at",
    "vault.uses": "feedback reports shown and deleted by their receipt holders on one UTC day:"
    " day, reads, deletions (no report, no reader)",
    "ingest.day": "feedback reports end users submitted on one UTC day: day, accepted,"
    " duplicates, rejected (no report, no session, no time finer than the day)",
    "dataset.build": "a dataset build completed: build_id, purpose, as_of, policy, engine, "
    "format, path, counts, manifest_sha256",
    "purge": "a purge ran: as_of and the counts it deleted",
    "token.create": "an API token was created: token_id, role, name",
    "token.revoke": "an API token was revoked: token_id",
    "token.use": "an API token was used: token_id, role, method, route (the route's "
    "template, never the path), uses",
    "session.create": "an end-user session was opened: session_id, expires_at (not the"
    " account: nothing in the log joins a session to its account)",
    "keys.rotate": "the master key was rotated: the new key's id, keys re-wrapped, retired",
    "lake.export": "the store's messages were written as a Parquet lake: path, as_of, messages,"
    " partitions, files",
    "policy.diff": "a policy diff read every item (reports from the vault): the two policy "
    "lists, as_of and the counts by purpose",
}


def cli_actor() -> str:
    """``cli:<OS user>`` for the command line (the uid when the user has no name)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid-{os.getuid()}"
    return f"cli:{user}"


def subject_key(keys: KeyRing, *, scope: str, subject: str) -> str:
    """The keyed hash naming an account (``scope`` ``account``) or an organization in the
    log."""
    return keys.id_hash(f"audit.{scope}", subject)


class IngestAuditor:
    """The ingest ``BatchObserver`` writing ``ingest.batch`` and ``consent.change`` entries
    inside each batch's transaction."""

    def __init__(self, *, log: AuditLog, keys: KeyRing, actor: str) -> None:
        self.log = log
        self.keys = keys
        self.actor = actor

    def accepted(self, batch: AcceptedBatch) -> None:
        if self.actor == END_USER and not batch.consents:  # a report: counted for the day
            DayCounts(self.log).add(
                actor=END_USER,
                action="ingest.day",
                counts={
                    "accepted": sum(batch.accepted.values()),
                    "duplicates": batch.duplicates,
                    "rejected": batch.rejected,
                },
            )
            return
        entries: list[tuple[str, str, Mapping[str, Any]]] = [
            (
                self.actor,
                "ingest.batch",
                {
                    "accepted": sum(batch.accepted.values()),
                    "by_type": dict(batch.accepted),
                    "duplicates": batch.duplicates,
                    "rejected": batch.rejected,
                },
            )
        ]
        for consent in batch.consents:
            entries.append(
                (
                    self.actor,
                    "consent.change",
                    {
                        "scope": consent.scope,
                        "subject_key": subject_key(
                            self.keys, scope=consent.scope, subject=consent.subject
                        ),
                        "setting": consent.setting,
                        "granted": consent.granted,
                        "source": consent.source,
                        "at": format_instant(consent.at),
                    },
                )
            )
        self.log.append_many(entries)


class DayCounts:
    """Counts per UTC day (``DAY_COUNTED``), kept in the store as they happen (one upserted row
    per day, actor, action and count: a killed server loses none) and written to the chain as
    one entry per day, actor and action once the day is over (``seal``): the entry's time and
    place in the chain then say nothing finer than the day."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def add(
        self, *, actor: str, action: str, counts: Mapping[str, int], now: int | None = None
    ) -> None:
        """Add ``counts`` to today's (in the caller's transaction when there is one), then
        seal the days before today."""
        names = DAY_COUNTED[(actor, action)]
        unknown = set(counts) - set(names)
        if unknown:
            raise ValueError(f"{action} counts {', '.join(names)}, not {', '.join(unknown)}")
        today = utc_date(now_micros() if now is None else now)
        with self.log.db.transaction():
            self.log.db.executemany(
                "INSERT INTO audit_day_counts (day, actor, action, name, n) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (day, actor, action, name)"
                " DO UPDATE SET n = audit_day_counts.n + excluded.n",
                [(today, actor, action, name, n) for name, n in counts.items() if n],
            )
            self.seal(before=today)

    def pending(self) -> list[tuple[str, str, str, dict[str, int]]]:
        """(day, actor, action, counts) of every day not sealed yet, oldest first."""
        rows = self.log.db.execute(
            "SELECT day, actor, action, name, n FROM audit_day_counts"
            " ORDER BY day, actor, action, name"
        )
        found: dict[tuple[str, str, str], dict[str, int]] = {}
        for day, actor, action, name, n in rows:
            key = (str(day), str(actor), str(action))
            names = DAY_COUNTED.get((key[1], key[2]), ())
            found.setdefault(key, dict.fromkeys(names, 0))[str(name)] = int(n)
        return [(*key, counts) for key, counts in found.items()]

    def seal(self, *, before: str | None = None) -> list[AuditEntry]:
        """Write the counts of every day before ``before`` (default: today) as entries
        ``{"day": ..., **counts}``, and drop their rows, in one transaction."""
        before = utc_date(now_micros()) if before is None else before
        with self.log.db.transaction():
            days = [p for p in self.pending() if p[0] < before]
            if not days:
                return []
            self.log.db.execute("DELETE FROM audit_day_counts WHERE day < ?", (before,))
            return self.log.append_many(
                [(actor, action, {"day": day, **counts}) for day, actor, action, counts in days]
            )


def mentions(entry: AuditEntry, keys: Iterable[str]) -> bool:
    """Whether an entry names one of the subject keys (consent changes, sessions)."""
    wanted = set(keys)
    details = entry.to_dict()["details"]
    if not isinstance(details, dict):
        return False
    return bool({details.get("subject_key"), details.get("account_key")} & wanted)


def verify_summary(
    entries: list[AuditEntry],
    problems: list[AuditProblem],
    head: tuple[int, str] | None,
    *,
    pending: Sequence[tuple[str, str, str, dict[str, int]]] = (),
) -> dict[str, Any]:
    """What ``traingate audit verify`` prints: intact or not, how many entries of which
    actions, the head, each problem, and the day counts not sealed into the chain yet
    (``pending``: today's, or a day no server has sealed since)."""
    actions = Counter(entry.action for entry in entries)
    summary: dict[str, Any] = {
        "ok": not problems,
        "entries": len(entries),
        "head": None if head is None else {"seq": head[0], "hash": head[1]},
        "first_at": format_instant(entries[0].at) if entries else None,
        "last_at": format_instant(entries[-1].at) if entries else None,
        "actions": dict(sorted(actions.items())),
        "problems": [problem.to_dict() for problem in problems],
        "pending": [
            {"day": day, "actor": actor, "action": action, **counts}
            for day, actor, action, counts in pending
        ],
    }
    if head is None and not entries and not problems:
        summary["warning"] = (
            "the log is empty and has no signed head: nothing tells a log never written from"
            " one wiped whole; pass --expect-head SEQ:HASH from an earlier verify"
        )
    return summary
