"""The audit log: append-only, hash-chained, keyed. Proof of what traingate did and when.

Every entry holds its sequence number, the wall-clock time, the actor, the action, details (JSON
with counts and public ids, never a secret, receipt or token), the previous entry's hash, and
its own hash: HMAC-SHA256 under the key file's signing key over the previous hash and the
entry's canonical content. A head row holds the last sequence number and hash, signed the same
way, so that dropping entries from the end is detected too.

``verify_entries`` is pure: it takes the rows and says which entry is edited, deleted,
inserted or out of order. Only someone holding the signing key can forge a chain.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from traingate._core.timeutil import format_instant, now_micros
from traingate._errors import StoreError
from traingate._keys import KeyRing
from traingate._store.db import Database

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditLog",
    "AuditProblem",
    "entry_hash",
    "last_of",
    "verify_entries",
]

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: int
    actor: str
    action: str
    details: str  # canonical JSON
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": format_instant(self.at),
            "actor": self.actor,
            "action": self.action,
            "details": json.loads(self.details),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """What is wrong with the chain, and where."""

    seq: int
    kind: str  # edited | deleted | inserted | reordered | truncated | head
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "message": self.message}


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(
    *, key: bytes, seq: int, at: int, actor: str, action: str, details: str, prev_hash: str
) -> str:
    content = _canonical(
        {"seq": seq, "at": at, "actor": actor, "action": action, "details": details}
    )
    return hmac.digest(key, f"{prev_hash}\n{content}".encode(), "sha256").hex()


def _head_signature(key: bytes, seq: int, last_hash: str) -> str:
    return hmac.digest(key, f"head\n{seq}\n{last_hash}".encode(), "sha256").hex()


def _expected(key: bytes, entry: AuditEntry, prev_hash: str) -> str:
    return entry_hash(
        key=key,
        seq=entry.seq,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        details=entry.details,
        prev_hash=prev_hash,
    )


def _entry_problem(
    key: bytes,
    entries: Sequence[AuditEntry],
    index: int,
    prev_hash: str,
    present: set[str],
    head_hash: str | None,
) -> AuditProblem | None:
    entry = entries[index]
    following = entries[index + 1].prev_hash if index + 1 < len(entries) else head_hash
    if entry.hash != _expected(key, entry, entry.prev_hash):
        for other in entries:  # does it hold with another entry's number? then it was moved
            moved = AuditEntry(
                other.seq,
                entry.at,
                entry.actor,
                entry.action,
                entry.details,
                entry.prev_hash,
                entry.hash,
            )
            if other.seq != entry.seq and entry.hash == _expected(key, moved, entry.prev_hash):
                return AuditProblem(
                    entry.seq, "reordered", f"entry {other.seq} was moved to position {entry.seq}"
                )
        if following == entry.hash:
            return AuditProblem(entry.seq, "edited", f"entry {entry.seq} was changed")
        return AuditProblem(entry.seq, "inserted", f"entry {entry.seq} is not part of the chain")
    if entry.prev_hash != prev_hash:
        if entry.prev_hash not in present:
            return AuditProblem(entry.seq, "deleted", f"the entry before {entry.seq} is missing")
        return AuditProblem(entry.seq, "reordered", f"entry {entry.seq} is out of order")
    return None


def verify_entries(
    *, key: bytes, entries: Sequence[AuditEntry], head: tuple[int, str, str] | None
) -> list[AuditProblem]:
    """Check the chain (entries in sequence order) and the signed head
    ``(seq, hash, signature)``. Returns the problems found, first one first."""
    problems: list[AuditProblem] = []
    present = {e.hash for e in entries} | {GENESIS}
    head_hash = head[1] if head is not None else None
    prev_hash = GENESIS
    signed = head is not None and hmac.compare_digest(
        head[2], _head_signature(key, head[0], head[1])
    )
    for index, entry in enumerate(entries):
        if signed and head is not None and entry.seq > head[0]:  # past a genuine head
            problems.append(
                AuditProblem(
                    entry.seq, "inserted", f"entry {entry.seq} was appended after the signed head"
                )
            )
            prev_hash = entry.hash
            continue
        problem = _entry_problem(key, entries, index, prev_hash, present, head_hash)
        if problem is not None:
            problems.append(problem)
        prev_hash = entry.hash
    last_seq = entries[-1].seq if entries else 0
    last_hash = entries[-1].hash if entries else GENESIS
    if head is None:
        if entries:
            problems.append(AuditProblem(last_seq, "head", "the signed head is missing"))
        return problems
    head_seq, head_hash_, signature = head
    if not hmac.compare_digest(signature, _head_signature(key, head_seq, head_hash_)):
        problems.append(AuditProblem(head_seq, "head", "the head's signature does not match"))
    elif head_seq > last_seq:
        problems.append(
            AuditProblem(
                last_seq + 1,
                "truncated",
                f"entries {last_seq + 1}..{head_seq} were cut off the end",
            )
        )
    elif (head_seq, head_hash_) != (last_seq, last_hash) and not problems:
        problems.append(
            AuditProblem(
                last_seq, "inserted", f"entries after {head_seq} are not part of the chain"
            )
        )
    return problems


def last_of(db: Database, actions: Sequence[str]) -> tuple[int, str, str] | None:
    """(at, actor, details as stored) of the latest entry of one of ``actions``, if any: what
    the console shows of the last purge. Needs no key (it reads, it verifies nothing)."""
    if not actions:
        return None
    marks = ", ".join("?" * len(actions))
    rows = db.execute(
        f"SELECT at, actor, details FROM audit_log WHERE action IN ({marks})"
        " ORDER BY seq DESC LIMIT 1",
        tuple(actions),
    )
    return (int(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None


class AuditLog:
    """Appends within the caller's transaction; reads for verify and export."""

    def __init__(self, db: Database, *, keys: KeyRing) -> None:
        self.db = db
        self._key = keys.signing_key

    def append(self, *, actor: str, action: str, details: Mapping[str, Any]) -> AuditEntry:
        """Append one entry (in the caller's transaction when there is one)."""
        return self.append_many([(actor, action, details)])[0]

    def append_many(
        self, entries: Sequence[tuple[str, str, Mapping[str, Any]]]
    ) -> list[AuditEntry]:
        """Append ``(actor, action, details)`` entries in order, in one transaction (the
        caller's when there is one): the head is read and written once."""
        if not entries:
            return []
        with self.db.transaction():
            rows = self.db.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
            seq, prev_hash = (int(rows[0][0]), str(rows[0][1])) if rows else (0, GENESIS)
            at = now_micros()
            made: list[AuditEntry] = []
            for actor, action, details in entries:
                seq += 1
                body = _canonical(dict(details))
                digest = entry_hash(
                    key=self._key,
                    seq=seq,
                    at=at,
                    actor=actor,
                    action=action,
                    details=body,
                    prev_hash=prev_hash,
                )
                made.append(AuditEntry(seq, at, actor, action, body, prev_hash, digest))
                prev_hash = digest
            self.db.executemany(
                "INSERT INTO audit_log (seq, at, actor, action, details, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.seq, e.at, e.actor, e.action, e.details, e.prev_hash, e.hash) for e in made],
            )
            signature = _head_signature(self._key, seq, prev_hash)
            if rows:
                self.db.execute(
                    "UPDATE audit_head SET seq = ?, hash = ?, signature = ? WHERE id = 1",
                    (seq, prev_hash, signature),
                )
            else:
                self.db.execute(
                    "INSERT INTO audit_head (id, seq, hash, signature) VALUES (1, ?, ?, ?)",
                    (seq, prev_hash, signature),
                )
        return made

    def entries(self, *, after: int = 0, limit: int | None = None) -> Iterator[AuditEntry]:
        """Entries with ``seq > after`` in sequence order (at most ``limit``)."""
        sql = (
            "SELECT seq, at, actor, action, details, prev_hash, hash FROM audit_log"
            " WHERE seq > ? ORDER BY seq"
        )
        params: tuple[int, ...] = (after,)
        if limit is not None:
            sql, params = f"{sql} LIMIT ?", (after, limit)
        for row in self.db.execute(sql, params):
            yield AuditEntry(int(row[0]), int(row[1]), *(str(v) for v in row[2:]))

    def head(self) -> tuple[int, str] | None:
        """The signed head's sequence number and hash (None for an empty log)."""
        rows = self.db.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    def verify(self) -> list[AuditProblem]:
        return self.inspect()[2]

    def inspect(
        self, *, expect: tuple[int, str | None] | None = None
    ) -> tuple[list[AuditEntry], tuple[int, str] | None, list[AuditProblem]]:
        """(entries, head, problems), never raising for a damaged log: a table that cannot
        be read (dropped) is a problem naming it. ``expect`` is a head ``(seq, hash or
        None)`` recorded earlier (``audit verify`` prints it): the log must still reach it
        with that hash, which catches a log wiped whole, head and all."""
        problems: list[AuditProblem] = []
        try:
            entries = list(self.entries())
        except StoreError as exc:
            entries = []
            problems.append(
                AuditProblem(0, "deleted", f"the table audit_log cannot be read: {exc}")
            )
        head: tuple[int, str, str] | None = None
        try:
            rows = self.db.execute("SELECT seq, hash, signature FROM audit_head WHERE id = 1")
            head = (int(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None
        except StoreError as exc:
            problems.append(AuditProblem(0, "head", f"the table audit_head cannot be read: {exc}"))
        else:
            problems.extend(verify_entries(key=self._key, entries=entries, head=head))
        if expect is not None:
            problems.extend(_expectation_problems(entries, head, expect))
        return entries, None if head is None else (head[0], head[1]), problems


def _expectation_problems(
    entries: Sequence[AuditEntry],
    head: tuple[int, str, str] | None,
    expect: tuple[int, str | None],
) -> list[AuditProblem]:
    seq, digest = expect
    if head is None:
        return [
            AuditProblem(
                seq,
                "head",
                f"there is no signed head, but one at seq {seq} was expected:"
                " the log was wiped or replaced",
            )
        ]
    if head[0] < seq:
        return [
            AuditProblem(
                seq, "truncated", f"the signed head is at seq {head[0]}, but seq {seq} was expected"
            )
        ]
    found = next((e for e in entries if e.seq == seq), None)
    if digest is not None and (found is None or not hmac.compare_digest(found.hash, digest)):
        return [
            AuditProblem(
                seq, "edited", f"entry {seq} is not the one of the expected head (its hash differs)"
            )
        ]
    return []


def export_lines(entries: Iterable[AuditEntry]) -> Iterator[str]:
    """The log as JSONL, one entry a line."""
    for entry in entries:
        yield json.dumps(entry.to_dict(), ensure_ascii=False)
