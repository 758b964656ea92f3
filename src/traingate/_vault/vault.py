"""The feedback vault: de-linked, encrypted feedback snapshots with receipts and expiry.

One row of ``{vault}reports`` per report (docs/vault.md). A row holds a random report id, a
vault-only dedupe key, the hash of the receipt secret, the UTC days of the report's submission
and expiry, and the envelope-encrypted snapshot; the exact instants are encrypted with the
data key's wrapping. A report kept until its receipt holder deletes it (a feedback basis
without ``retention``) is stored with the expiry ``NEVER`` (``FAR_FUTURE``, and its day), and
shown as None. It holds no account, organization, conversation, message or feedback id,
no e-mail and no plaintext; and no value in it is shared with another report except constants
(scheme, master key id) and the coarse days.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from traingate._core.policy import Policy, PolicySet
from traingate._core.policy.expiry import expired_submissions, report_expiry
from traingate._core.report import Snapshot
from traingate._core.timeutil import DAY, FAR_FUTURE, day_of, format_instant
from traingate._errors import ConfigError, ReceiptError, StoreError
from traingate._keys import KeyRing, MasterKey
from traingate._store.db import Database
from traingate._vault.crypto import (
    SCHEME,
    KeyBlob,
    Sealed,
    b64,
    new_receipt_secret,
    new_report_id,
    open_sealed,
    rewrap,
    seal,
    secret_hash,
    secrets_match,
    unb64,
    unwrap_blob,
)

__all__ = [
    "NEVER",
    "KeyHolder",
    "Receipt",
    "ReportInfo",
    "Vault",
    "VaultRecord",
    "expiry_days",
    "open_report",
    "reports_table",
    "usable_reports_query",
]

NEVER = FAR_FUTURE  # the stored expiry of a report without one

_PAGE = 500
_RECEIPT = re.compile(r"([A-Za-z0-9_-]{16,64})\.([A-Za-z0-9_-]{32,128})", re.ASCII)
_COLUMNS = (
    "report_id, submitted_day, expires_day, scheme, master_key_id, wrapped_key, nonce, ciphertext"
)
# Compared against when a receipt names no stored report, so that both failures take as long.
_DUMMY_HASH = secret_hash("-" * 22, "-" * 43)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the holder of a report gets: ``<report_id>.<secret>``."""

    report_id: str
    secret: str = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> Receipt:
        match = _RECEIPT.fullmatch(text.strip())
        if match is None:
            raise ReceiptError("not a feedback receipt (expected REPORT_ID.SECRET)")
        return cls(report_id=match.group(1), secret=match.group(2))

    def __str__(self) -> str:
        return f"{self.report_id}.{self.secret}"


@dataclass(frozen=True, slots=True)
class ReportInfo:
    """A stored report's metadata, as its receipt holder may see it."""

    report_id: str
    submitted_at: int
    expires_at: int | None  # None: kept until its receipt holder deletes it
    master_key_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_id": self.report_id,
            "submitted_at": format_instant(self.submitted_at),
            "expires_at": None if self.expires_at is None else format_instant(self.expires_at),
            "master_key_id": self.master_key_id,
        }


class KeyHolder(Protocol):
    """What holds the one key ring of an open ``Traingate`` (its store), so that a rotation
    replaces it in one place and the vault reads the new one."""

    @property
    def keys(self) -> KeyRing: ...


@dataclass(frozen=True, slots=True)
class VaultRecord:
    """One report as a dataset build reads it. ``record_key`` is opaque and stable per report
    (a keyed hash of the report id): it names the record without revealing the report id."""

    record_key: str
    submitted_at: int
    expires_at: int | None  # None: no limit
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class _Row:
    report_id: str
    submitted_day: int
    expires_day: int
    scheme: str
    sealed: Sealed

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> _Row:
        report_id, submitted_day, expires_day, scheme, master_key_id, wrapped, nonce, ct = row
        return cls(
            report_id=str(report_id),
            submitted_day=int(submitted_day),
            expires_day=int(expires_day),
            scheme=str(scheme),
            sealed=Sealed(
                master_key_id=str(master_key_id),
                wrapped_key=unb64(wrapped),
                nonce=unb64(nonce),
                ciphertext=unb64(ct),
            ),
        )

    def info(self, blob: KeyBlob, *, expires_at: int | None) -> ReportInfo:
        return ReportInfo(
            report_id=self.report_id,
            submitted_at=blob.submitted_at,
            expires_at=expires_at,
            master_key_id=self.sealed.master_key_id,
        )


def _master(keys: KeyRing, row: _Row) -> MasterKey:
    if row.scheme != SCHEME:
        raise StoreError(f"vault report {row.report_id}: unknown scheme {row.scheme!r}")
    return keys.master(row.sealed.master_key_id)


def _checked(row: _Row, blob: KeyBlob) -> KeyBlob:
    if (day_of(blob.submitted_at), day_of(blob.expires_at)) != (
        row.submitted_day,
        row.expires_day,
    ):
        raise StoreError(f"vault report {row.report_id}: its days were altered")
    return blob


def _open_row(keys: KeyRing, row: _Row) -> tuple[KeyBlob, Snapshot]:
    blob, plaintext = open_sealed(row.sealed, master=_master(keys, row), report_id=row.report_id)
    return _checked(row, blob), Snapshot.from_json(plaintext)


def reports_table(prefix: str) -> str:
    """The vault's table of reports where its tables have the name prefix ``prefix``
    (``Database.vault_prefix``, or "" in the vault's own SQLite file)."""
    return f"{prefix}reports"


def usable_reports_query(prefix: str, as_of: int) -> tuple[str, tuple[int, int]]:
    """The query (and its parameters) of the stored rows of every report that may be usable
    at ``as_of`` by their days (``open_report`` decides by the exact instants), in the columns
    ``open_report`` takes; ``prefix`` is that of the vault's tables where the query runs
    (``Database.vault_prefix``, or "" in the vault's own SQLite file). For reading the rows
    elsewhere: a Spark build stages them as stored, still encrypted
    (``engines/spark_feedback.py``)."""
    sql = (
        f"SELECT {_COLUMNS} FROM {reports_table(prefix)}"
        " WHERE submitted_day <= ? AND expires_day > ?"
    )
    return sql, (as_of, as_of - DAY)


def expiry_days(db: Database) -> list[tuple[int, int, int]]:
    """(submitted_day, expires_day, reports) over the vault's reports, by those two columns:
    what the retention status counts (no key needed, nothing decrypted)."""
    rows = db.execute(
        f"SELECT submitted_day, expires_day, COUNT(*) FROM {reports_table(db.vault_prefix)}"
        " GROUP BY submitted_day, expires_day"
    )
    return [(int(submitted), int(expires), int(count)) for submitted, expires, count in rows]


def open_report(raw: Sequence[Any], *, keys: KeyRing, as_of: int) -> VaultRecord | None:
    """One stored vault row (the columns of ``usable_reports_query``) decrypted with ``keys``
    (its master keys and signing key): the report as a build reads it, or None when it is not
    usable at ``as_of`` (submitted_at <= as_of < expires_at). Raises StoreError or ConfigError
    when the key ring does not open it."""
    row = _Row.of(tuple(raw))
    blob, snapshot = _open_row(keys, row)
    if not blob.submitted_at <= as_of < blob.expires_at:
        return None  # same day as as-of, but not in the window
    return VaultRecord(
        record_key=keys.sign(f"feedback-record\x00{row.report_id}".encode()),
        submitted_at=blob.submitted_at,
        expires_at=None if blob.expires_at >= NEVER else blob.expires_at,
        snapshot=snapshot,
    )


class Vault:
    """The vault over a Database whose schema is migrated (``Store.open`` or ``Vault.open``).

    Implements ``traingate._ingest.ReportSink``. Every method is one transaction (nested in the
    caller's when there is one, as ingest does).
    """

    def __init__(
        self, db: Database, *, keys: KeyRing | KeyHolder, policy: Policy | PolicySet
    ) -> None:
        self._db = db
        self._keys = keys  # a ring, or what holds the one ring (the store): read at each use
        self._policy = policy
        self._table = reports_table(db.vault_prefix)
        if db.dialect == "sqlite":
            # Deleted rows are overwritten with zeros in the vault file, not left in free pages.
            db.execute("PRAGMA vault.secure_delete = ON")

    @classmethod
    def open(cls, db: Database, *, keys: KeyRing, policy: Policy | PolicySet) -> Vault:
        """Migrate the database, then open the vault over it."""
        from traingate._store.schema import migrate

        migrate(db)
        return cls(db, keys=keys, policy=policy)

    @property
    def db(self) -> Database:
        return self._db

    @property
    def keys(self) -> KeyRing:
        return self._keys if isinstance(self._keys, KeyRing) else self._keys.keys

    @property
    def policy(self) -> Policy | PolicySet:
        """The policies that set a report's expiry (the one in force at its submission)."""
        return self._policy

    # -- writing ---------------------------------------------------------------------------

    def put(self, *, snapshot: Snapshot, submitted_at: int, dedupe_key: str) -> str:
        """Store one report; return its receipt ``<report_id>.<secret>``.

        Idempotent on ``dedupe_key`` by upsert: if a report with this key is already stored
        (only possible when an earlier attempt wrote the vault but the caller's commit of the
        event then failed, so its receipt never reached anyone), that report is replaced by
        this one under the same report id, with a fresh data key, nonce and receipt secret,
        and the new receipt is returned. The old receipt stops working. So the vault ends up
        exactly as if the first attempt had never happened: one report per event.
        """
        expiry = report_expiry(self._policy, submitted_at)
        expires_at = NEVER if expiry is None else expiry
        vault_key = self.keys.id_hash("vault-dedupe", dedupe_key)
        secret = new_receipt_secret()
        master = self.keys.active_master
        with self._db.transaction():
            found = self._db.execute(
                f"SELECT report_id FROM {self._table} WHERE dedupe_key = ?", (vault_key,)
            )
            report_id = str(found[0][0]) if found else new_report_id()
            sealed = seal(
                snapshot.to_json(),
                master=master,
                report_id=report_id,
                submitted_at=submitted_at,
                expires_at=expires_at,
            )
            values = (
                secret_hash(report_id, secret),
                day_of(submitted_at),
                day_of(expires_at),
                SCHEME,
                sealed.master_key_id,
                b64(sealed.wrapped_key),
                b64(sealed.nonce),
                b64(sealed.ciphertext),
            )
            if found:
                self._db.execute(
                    f"UPDATE {self._table} SET secret_hash = ?, submitted_day = ?,"
                    " expires_day = ?, scheme = ?, master_key_id = ?, wrapped_key = ?,"
                    " nonce = ?, ciphertext = ? WHERE report_id = ?",
                    (*values, report_id),
                )
            elif self._db.dialect == "sqlite":
                # A random rowid: the file's b-tree order then says nothing about arrival order.
                self._db.execute(
                    f"INSERT INTO {self._table} (rowid, report_id, dedupe_key, secret_hash,"
                    " submitted_day, expires_day, scheme, master_key_id, wrapped_key, nonce,"
                    " ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (secrets.randbelow(2**62) + 1, report_id, vault_key, *values),
                )
            else:
                self._db.execute(
                    f"INSERT INTO {self._table} (report_id, dedupe_key, secret_hash,"
                    " submitted_day, expires_day, scheme, master_key_id, wrapped_key, nonce,"
                    " ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (report_id, vault_key, *values),
                )
        return str(Receipt(report_id=report_id, secret=secret))

    # -- the receipt holder ------------------------------------------------------------------

    def _authorized(self, receipt: str) -> _Row:
        parsed = Receipt.parse(receipt)
        rows = self._db.execute(
            f"SELECT {_COLUMNS}, secret_hash FROM {self._table} WHERE report_id = ?",
            (parsed.report_id,),
        )
        stored = str(rows[0][-1]) if rows else _DUMMY_HASH
        if not secrets_match(stored, parsed.report_id, parsed.secret) or not rows:
            raise ReceiptError(
                "no stored feedback report matches this receipt (wrong secret, or the report "
                "was deleted or has expired and been purged)"
            )
        return _Row.of(rows[0][:-1])

    def _times(self, row: _Row) -> KeyBlob:
        """The exact instants of a row (unwrap only, no payload decryption)."""
        blob = unwrap_blob(row.sealed, master=_master(self.keys, row), report_id=row.report_id)
        return _checked(row, blob)

    def _open(self, row: _Row) -> tuple[KeyBlob, Snapshot]:
        return _open_row(self.keys, row)

    def show(self, receipt: str) -> tuple[ReportInfo, Snapshot]:
        """The stored report and its decrypted snapshot. Raises ReceiptError."""
        row = self._authorized(receipt)
        blob, snapshot = self._open(row)
        return row.info(blob, expires_at=self.expires_at(blob)), snapshot

    def delete(self, receipt: str) -> ReportInfo:
        """Delete the report: its wrapped data key and its ciphertext go with the row, so the
        payload can never be decrypted again (crypto-shredding). Raises ReceiptError."""
        with self._db.transaction():
            row = self._authorized(receipt)
            blob = self._times(row)
            info = row.info(blob, expires_at=self.expires_at(blob))
            self._db.execute(f"DELETE FROM {self._table} WHERE report_id = ?", (row.report_id,))
        self.checkpoint()
        return info

    # -- retention and builds ----------------------------------------------------------------

    def expires_at(self, blob: KeyBlob) -> int | None:
        """A report's expiry: the one stored with it, or an earlier one given by the policies
        configured now (one put in force later, from a date before the submission); None when
        neither sets one (no limit is later than every instant)."""
        configured = report_expiry(self._policy, blob.submitted_at)
        expiry = min(blob.expires_at, NEVER if configured is None else configured)
        return None if expiry >= NEVER else expiry

    def _delete_where(self, condition: str, params: tuple[int, ...]) -> int:
        table = self._table
        count = int(
            self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE {condition}", params)[0][0]
        )
        if count:
            self._db.execute(f"DELETE FROM {table} WHERE {condition}", params)
        return count

    def purge_expired(self, *, as_of: int) -> int:
        """Delete (crypto-shred) every report whose expiry (``expires_at``) is at or before
        ``as_of``.

        Rows go by their day columns where those decide: an expiry day that ended by ``as_of``,
        or a submission day the policies have expired whole (``expired_submissions``). The
        others that may be due (expiring on ``as_of``'s day, or submitted on a day the
        policies expired in part) are decided by their exact instants, unwrapped from the key
        blob.
        """
        table = self._table
        by_policy = expired_submissions(self._policy, as_of)
        with self._db.transaction():
            deleted = self._delete_where("expires_day <= ?", (as_of - DAY,))
            for first, last in by_policy.days:
                if first is None:
                    deleted += self._delete_where("submitted_day <= ?", (last,))
                else:
                    deleted += self._delete_where(
                        "submitted_day >= ? AND submitted_day <= ?", (first, last)
                    )
            maybe = self._db.execute(
                f"SELECT {_COLUMNS} FROM {table} WHERE expires_day > ? AND expires_day <= ?",
                (as_of - DAY, as_of),
            )
            for day in by_policy.check:
                maybe += self._db.execute(
                    f"SELECT {_COLUMNS} FROM {table} WHERE submitted_day = ?", (day,)
                )
            rows = {row.report_id: row for row in map(_Row.of, maybe)}
            due = [key for key, row in rows.items() if self._due(row, as_of)]
            self._db.executemany(
                f"DELETE FROM {table} WHERE report_id = ?", [(report_id,) for report_id in due]
            )
        return deleted + len(due)

    def _due(self, row: _Row, as_of: int) -> bool:
        expiry = self.expires_at(self._times(row))
        return expiry is not None and expiry <= as_of

    def reports(self, *, as_of: int) -> Iterator[VaultRecord]:
        """Every report usable at ``as_of`` (submitted_at <= as_of < expires_at), decrypted,
        in an order that says nothing about submission order (by random report id)."""
        after = ""
        while True:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM {self._table} WHERE submitted_day <= ?"
                " AND expires_day > ? AND report_id > ? ORDER BY report_id LIMIT ?",
                (as_of, as_of - DAY, after, _PAGE),
            )
            for raw in rows:
                record = open_report(raw, keys=self.keys, as_of=as_of)
                if record is not None:
                    yield record
            if len(rows) < _PAGE:
                return
            after = str(rows[-1][0])

    def count(self) -> int:
        return int(self._db.execute(f"SELECT COUNT(*) FROM {self._table}")[0][0])

    # -- master keys -------------------------------------------------------------------------

    def master_key_usage(self) -> dict[str, int]:
        """How many reports each master key wraps."""
        rows = self._db.execute(
            f"SELECT master_key_id, COUNT(*) FROM {self._table} GROUP BY master_key_id"
        )
        return {str(key_id): int(n) for key_id, n in rows}

    def rotate(self, new_master: MasterKey) -> int:
        """Re-wrap every data key not yet under ``new_master``; payloads are not touched.

        ``new_master`` must already be in this vault's key ring (that is, saved in the key
        file: see ``traingate._vault.rotation``), so no report is ever wrapped by a key that
        exists nowhere else. Runs in pages, one transaction each; re-running after a crash
        finishes the job. Returns how many data keys were re-wrapped.
        """
        if new_master not in self.keys.master_keys:
            raise ConfigError(
                f"master key {new_master.id} is not in the key ring; save it to the key file "
                "before rotating to it"
            )
        total = 0
        while True:
            with self._db.transaction():
                rows = self._db.execute(
                    f"SELECT report_id, master_key_id, wrapped_key FROM {self._table}"
                    " WHERE master_key_id <> ? ORDER BY report_id LIMIT ?",
                    (new_master.id, _PAGE),
                )
                updates = [
                    (
                        b64(
                            rewrap(
                                unb64(wrapped),
                                old=self.keys.master(str(key_id)),
                                new=new_master,
                                report_id=str(report_id),
                            )
                        ),
                        new_master.id,
                        str(report_id),
                    )
                    for report_id, key_id, wrapped in rows
                ]
                self._db.executemany(
                    f"UPDATE {self._table} SET wrapped_key = ?, master_key_id = ?"
                    " WHERE report_id = ?",
                    updates,
                )
            total += len(rows)
            if len(rows) < _PAGE:
                break
        self.checkpoint()
        return total

    def checkpoint(self) -> None:
        """Best effort: on SQLite, fold the vault's WAL into its file and truncate it, so that
        overwritten wrapped keys do not linger in the WAL. A no-op inside a transaction."""
        if self._db.dialect != "sqlite":
            return
        with contextlib.suppress(StoreError):  # fails inside a transaction
            self._db.execute("PRAGMA vault.wal_checkpoint(TRUNCATE)")
