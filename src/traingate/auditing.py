"""What traingate records in its audit log (docs/audit.md): who did what, with which details.

The log itself (the keyed hash chain, verification) is ``traingate.audit``; this module says
what goes into it. An actor is ``cli:<OS user>``, ``token:<token id>``,
``session:<session id>`` or ``system`` (a library caller that named no one). Details hold
counts, the public ids of builds, tokens, sessions and vault reports, and keyed hashes of
account and organization ids (``subject_key``): never a secret, a receipt, a token or session
credential, an e-mail address, any content, or the exact time of a feedback report.

Why keyed hashes and not account ids: the log is append-only and outlives every purge, so a
raw id written there would survive the hard deletion of its account forever. A privacy officer
who knows an id finds its entries (``traingate audit export --account ID``); nobody can read
ids out of the log.
"""

from __future__ import annotations

import getpass
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from traingate.audit import AuditEntry, AuditLog, AuditProblem
from traingate.ingest import AcceptedBatch
from traingate.keys import KeyRing
from traingate.timeutil import format_instant

__all__ = [
    "ACTIONS",
    "END_USER",
    "SYSTEM",
    "IngestAuditor",
    "cli_actor",
    "mentions",
    "subject_key",
    "verify_summary",
]

SYSTEM = "system"
# The actor of an end user's feedback submission: never the session (it names the account).
END_USER = "end-user"

ACTIONS: dict[str, str] = {
    "ingest.batch": "one ingest transaction that accepted events: counts by event type, "
    "duplicates and events its checks rejected",
    "consent.change": "one accepted consent.updated event: scope, subject_key, granted, source, at",
    "vault.uses": "feedback reports shown and deleted by their receipt holders on one UTC day:"
    " day, reads, deletions (no report, no reader)",
    "dataset.build": "a dataset build completed: build_id, purpose, as_of, policy, engine, "
    "format, path, counts, manifest_sha256",
    "purge": "a purge ran: as_of and the counts it deleted",
    "token.create": "an API token was created: token_id, role, name",
    "token.revoke": "an API token was revoked: token_id",
    "token.use": "an API token was used: token_id, role, method, route (the route's "
    "template, never the path), uses",
    "session.create": "an end-user session was opened: session_id, account_key, expires_at",
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


def mentions(entry: AuditEntry, keys: Iterable[str]) -> bool:
    """Whether an entry names one of the subject keys (consent changes, sessions)."""
    wanted = set(keys)
    details = entry.to_dict()["details"]
    if not isinstance(details, dict):
        return False
    return bool({details.get("subject_key"), details.get("account_key")} & wanted)


def verify_summary(
    entries: list[AuditEntry], problems: list[AuditProblem], head: tuple[int, str] | None
) -> dict[str, Any]:
    """What ``traingate audit verify`` prints: intact or not, how many entries of which
    actions, the head, and each problem."""
    actions = Counter(entry.action for entry in entries)
    summary: dict[str, Any] = {
        "ok": not problems,
        "entries": len(entries),
        "head": None if head is None else {"seq": head[0], "hash": head[1]},
        "first_at": format_instant(entries[0].at) if entries else None,
        "last_at": format_instant(entries[-1].at) if entries else None,
        "actions": dict(sorted(actions.items())),
        "problems": [problem.to_dict() for problem in problems],
    }
    if head is None and not entries and not problems:
        summary["warning"] = (
            "the log is empty and has no signed head: nothing tells a log never written from"
            " one wiped whole; pass --expect-head SEQ:HASH from an earlier verify"
        )
    return summary
