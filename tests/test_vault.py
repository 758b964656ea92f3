"""The feedback vault on SQLite and PostgreSQL: encryption at rest, unlinkability, receipts,
idempotent puts and master key rotation."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.factories import Events, all_text, jsonl
from traingate._core.report import Snapshot
from traingate._core.timeutil import parse_instant
from traingate._errors import ConfigError, ReceiptError, StoreError
from traingate._facade import Traingate
from traingate._keys import load_or_create_keys
from traingate._settings import Settings
from traingate._store.db import Database, sqlite_path_of, vault_path_of
from traingate._vault.rotation import retire_old_masters, rotate_master_key
from traingate._vault.vault import Receipt, Vault

SENTENCE = "The heron counts seventeen violet lanterns beneath the quarry bridge"
COMMENT = "Marmalade kilns whisper over the tangerine observatory at dusk"
ACCOUNT = "acct-5e1d0c9b7a"
EMAIL = "winifred.quist@heliotrope.example"
CONV_A = "conv-a-71c3f0e2d4"
CONV_B = "conv-b-0a9e8d7c6b"
FIXED_COLUMNS = {"scheme", "master_key_id"}


def _report_events(ev: Events, *, conv: str, day: int, comment: str) -> list[dict[str, Any]]:
    return [
        ev.conversation(conv, ACCOUNT, ev.t(day), custom_style={"tone": f"write to {EMAIL}"}),
        ev.message(
            f"{conv}-m1",
            conv,
            ACCOUNT,
            ev.t(day, 1),
            content=f"{SENTENCE}; mail me at {EMAIL}",
            attachments=[
                {
                    "attachment_id": f"{conv}-at",
                    "source": "upload",
                    "name": "notes.txt",
                    "content": SENTENCE,
                }
            ],
        ),
        ev.message(
            f"{conv}-m2", conv, ACCOUNT, ev.t(day, 2), role="assistant", content=f"About {SENTENCE}"
        ),
        ev.feedback(
            f"{conv}-fb",
            ACCOUNT,
            conv,
            f"{conv}-m2",
            ev.t(day, 3),
            comment=f"{comment} ({EMAIL})",
            categories=["inaccurate"],
        ),
    ]


def _ingest_two_reports(tg: Traingate, ev: Events) -> list[str]:
    events = [ev.account(ACCOUNT, ev.t(0), email=EMAIL)]
    events += _report_events(ev, conv=CONV_A, day=1, comment=COMMENT)
    events += _report_events(ev, conv=CONV_B, day=2, comment=COMMENT)
    summary = tg.events.ingest(jsonl(events))
    assert summary.rejected == 0, summary.errors
    assert len(summary.receipts) == 2
    return [receipt for _, _, receipt in summary.receipts]


def _vault_rows(db: Database) -> list[dict[str, Any]]:
    columns = [
        "report_id",
        "dedupe_key",
        "secret_hash",
        "submitted_day",
        "expires_day",
        "scheme",
        "master_key_id",
        "wrapped_key",
        "nonce",
        "ciphertext",
    ]
    rows = db.execute(f"SELECT {', '.join(columns)} FROM {db.vault_prefix}reports")
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _raw_vault_bytes(tg: Traingate, settings: Settings) -> bytes:
    """Every byte the vault keeps at rest: the SQLite vault file and its WAL, or the
    PostgreSQL table's rows as text."""
    db = tg.store.db
    if db.dialect == "sqlite":
        main = sqlite_path_of(settings.db_url)
        assert main is not None
        vault = vault_path_of(main)
        wal = vault.with_name(vault.name + "-wal")
        assert vault.exists()
        return vault.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    rows = db.execute("SELECT t::text FROM vault_reports t")
    assert rows
    return "\n".join(str(r[0]) for r in rows).encode()


def test_at_rest_the_vault_holds_no_plaintext_and_no_identifier(
    tg: Traingate, ev: Events, settings: Settings
) -> None:
    receipts = _ingest_two_reports(tg, ev)
    raw = _raw_vault_bytes(tg, settings)
    # the exact instants are encrypted too (they could be matched against message times)
    for receipt in receipts:
        info, _ = tg.vault.show(receipt)
        for instant in (info.submitted_at, info.expires_at):
            assert str(instant).encode() not in raw
            assert instant.to_bytes(8, "big") not in raw
    for needle in (
        SENTENCE,
        COMMENT,
        ACCOUNT,
        EMAIL,
        CONV_A,
        CONV_B,
        f"{CONV_A}-m2",
        f"{CONV_A}-fb",
        "heron",
        "Marmalade",
    ):
        assert needle.encode() not in raw, needle
    # ...while the receipt holder still gets the report back, de-identified
    _, snapshot = tg.vault.show(receipts[0])
    assert SENTENCE in snapshot.messages[0]["content"]
    assert snapshot.comment == f"{COMMENT} ([email])"
    assert snapshot.custom_style == {"tone": "write to [email]"}
    assert EMAIL not in snapshot.to_json().decode()


def test_the_main_database_never_holds_the_report(
    tg: Traingate, ev: Events, settings: Settings
) -> None:
    _ingest_two_reports(tg, ev)
    db = tg.store.db
    assert COMMENT not in all_text(db)
    assert db.execute("SELECT COUNT(*) FROM events WHERE type = 'feedback.submitted'")[0][0] == 0
    if db.dialect == "sqlite":
        main = sqlite_path_of(settings.db_url)
        assert main is not None
        wal = main.with_name(main.name + "-wal")
        raw = main.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        assert COMMENT.encode() not in raw


def test_two_reports_of_one_account_share_no_stored_value(tg: Traingate, ev: Events) -> None:
    _ingest_two_reports(tg, ev)
    db = tg.store.db
    first, second = _vault_rows(db)
    for column, value in first.items():
        if column in FIXED_COLUMNS:
            assert value == second[column]
            continue
        assert value != second[column], column
        for other in second.values():  # not even inside another column's value
            if column not in FIXED_COLUMNS and isinstance(value, str) and len(value) >= 8:
                assert value not in str(other), column
    # nothing in a row is found in the main database either (keyed hashes included)
    main_values: set[str] = set()
    for table, columns in (("events", "event_key, body_hash"), ("feedback_keys", "feedback_key")):
        for row in db.execute(f"SELECT {columns} FROM {table}"):
            main_values.update(v.hex() if isinstance(v, bytes) else str(v) for v in row)
    for row in (first, second):
        for column, value in row.items():
            if column not in FIXED_COLUMNS:
                assert str(value) not in main_values, column
    if db.dialect == "sqlite":  # the file's row order is random, not arrival order
        rowids = [int(r[0]) for r in db.execute("SELECT rowid FROM vault.reports")]
        assert min(rowids) > 2**20
    # each report has its own key material
    assert len({r["nonce"] for r in (first, second)}) == 2
    assert len({r["wrapped_key"][:16] for r in (first, second)}) == 2


def test_receipts_wrong_secret_unknown_and_malformed_are_refused(tg: Traingate, ev: Events) -> None:
    receipt, _ = _ingest_two_reports(tg, ev)
    parsed = Receipt.parse(receipt)
    info, snapshot = tg.vault.show(receipt)
    assert info.report_id == parsed.report_id
    assert snapshot.rating == "down"
    flipped = parsed.secret[:-1] + ("A" if parsed.secret[-1] != "A" else "B")
    unknown = "Q" * len(parsed.report_id)
    for bad in (
        f"{parsed.report_id}.{flipped}",
        f"{unknown}.{parsed.secret}",
        "nonsense",
        f"{parsed.report_id}.",
        f".{parsed.secret}",
        f"{parsed.report_id}",
    ):
        with pytest.raises(ReceiptError):
            tg.vault.show(bad)
        with pytest.raises(ReceiptError):
            tg.vault.delete(bad)
    assert tg.vault.count() == 2
    assert parsed.secret not in repr(parsed)


def test_receipt_secret_is_stored_only_as_a_hash(tg: Traingate, ev: Events) -> None:
    receipts = _ingest_two_reports(tg, ev)
    stored = json.dumps(_vault_rows(tg.store.db))
    for receipt in receipts:
        parsed = Receipt.parse(receipt)
        assert parsed.report_id in stored
        assert parsed.secret not in stored


def test_delete_shreds_the_report(tg: Traingate, ev: Events, settings: Settings) -> None:
    receipt, other = _ingest_two_reports(tg, ev)
    as_of = parse_instant("2025-01-01T00:00:00Z")
    assert len(list(tg.vault.reports(as_of=as_of))) == 2
    report_id = Receipt.parse(receipt).report_id
    (row,) = [r for r in _vault_rows(tg.store.db) if r["report_id"] == report_id]
    info = tg.vault.delete(receipt)
    assert info.report_id == report_id
    with pytest.raises(ReceiptError):
        tg.vault.show(receipt)
    with pytest.raises(ReceiptError):
        tg.vault.delete(receipt)
    remaining = _vault_rows(tg.store.db)
    assert [r["report_id"] for r in remaining] == [Receipt.parse(other).report_id]
    assert row["wrapped_key"] not in json.dumps(remaining)
    records = list(tg.vault.reports(as_of=as_of))
    assert len(records) == 1
    assert tg.vault.show(other)[1] == records[0].snapshot
    if tg.store.db.dialect == "sqlite":  # not even a stale copy in the file or its WAL
        raw = _raw_vault_bytes(tg, settings)
        assert row["wrapped_key"].encode() not in raw
        assert row["ciphertext"][:40].encode() not in raw


def test_reports_as_of_window_and_stable_record_keys(tg: Traingate, ev: Events) -> None:
    infos = [tg.vault.show(receipt)[0] for receipt in _ingest_two_reports(tg, ev)]
    submitted = sorted(info.submitted_at for info in infos)
    expires = sorted(info.expires_at for info in infos)
    assert submitted == [parse_instant(Events.t(1, 3)), parse_instant(Events.t(2, 3))]
    assert expires == [parse_instant("2034-01-02T12:00:03Z"), parse_instant("2034-01-03T12:00:03Z")]
    assert [
        len(list(tg.vault.reports(as_of=t)))
        for t in (
            submitted[0] - 1,
            submitted[0],
            submitted[1],
            expires[0] - 1,
            expires[0],
            expires[1],
        )
    ] == [0, 1, 2, 2, 1, 0]
    keys_a = {r.record_key for r in tg.vault.reports(as_of=submitted[1])}
    keys_b = {r.record_key for r in tg.vault.reports(as_of=expires[0] - 1)}
    assert keys_a == keys_b and len(keys_a) == 2
    ids = {r["report_id"] for r in _vault_rows(tg.store.db)}
    assert not keys_a & ids


def test_put_is_idempotent_on_the_dedupe_key(tg: Traingate) -> None:
    def snapshot(comment: str) -> Snapshot:
        return Snapshot(
            date="2024-03-01",
            messages=({"role": "user", "content": "hi", "attachments": []},),
            custom_style=None,
            preferences=None,
            rating="up",
            comment=comment,
            categories=(),
            rated_message_index=0,
        )

    at = parse_instant("2024-03-01T10:00:00Z")
    first = tg.vault.put(snapshot=snapshot("first"), submitted_at=at, dedupe_key="k1")
    row_before = _vault_rows(tg.store.db)[0]
    second = tg.vault.put(snapshot=snapshot("second"), submitted_at=at, dedupe_key="k1")
    assert tg.vault.count() == 1
    assert Receipt.parse(first).report_id == Receipt.parse(second).report_id
    with pytest.raises(ReceiptError):  # the undelivered first receipt no longer works
        tg.vault.show(first)
    assert tg.vault.show(second)[1].comment == "second"
    row_after = _vault_rows(tg.store.db)[0]
    for column in ("wrapped_key", "nonce", "ciphertext", "secret_hash"):
        assert row_before[column] != row_after[column]
    # the stored dedupe key is the vault's own derivation, not the caller's value
    assert row_after["dedupe_key"] != "k1"
    tg.vault.put(snapshot=snapshot("other"), submitted_at=at, dedupe_key="k2")
    assert tg.vault.count() == 2


def test_a_report_without_expiry_is_stored_as_never(tg: Traingate) -> None:
    """A feedback basis without ``retention``: the report serves every as-of, shows no expiry,
    is never purged, survives key rotation and goes only by its receipt."""
    from tests.support import KEEP

    vault = Vault(tg.store.db, keys=tg.keys, policy=KEEP)
    snapshot = Snapshot(
        date="2024-03-01",
        messages=({"role": "user", "content": "hi", "attachments": []},),
        custom_style=None,
        preferences=None,
        rating="up",
        comment=None,
        categories=(),
        rated_message_index=0,
    )
    at = parse_instant("2024-03-01T10:00:00Z")
    receipt = vault.put(snapshot=snapshot, submitted_at=at, dedupe_key="k-never")
    info = vault.show(receipt)[0]
    assert (info.submitted_at, info.expires_at) == (at, None)
    assert info.to_dict()["expires_at"] is None
    end = parse_instant("8999-12-31T23:59:59.999999Z")
    assert [(r.submitted_at, r.expires_at) for r in vault.reports(as_of=end)] == [(at, None)]
    assert list(vault.reports(as_of=at - 1)) == []
    assert vault.purge_expired(as_of=end) == 0
    [row] = _vault_rows(tg.store.db)
    assert row["expires_day"] > parse_instant("8999-12-31T00:00:00Z")  # "never", as a day
    # the same row under the default policy (ten years) would be due then: the stored
    # expiry never lengthens, the configured one shortens
    assert (
        Vault(tg.store.db, keys=tg.keys, policy=tg.policy).purge_expired(
            as_of=parse_instant("2034-03-01T10:00:00Z")
        )
        == 1
    )
    receipt = vault.put(snapshot=snapshot, submitted_at=at, dedupe_key="k-never-2")
    assert vault.delete(receipt).expires_at is None
    assert vault.count() == 0


def test_rotate_then_retire_keeps_every_report_readable(
    tg: Traingate, ev: Events, settings: Settings
) -> None:
    receipts = _ingest_two_reports(tg, ev)
    old_id = tg.keys.active_master.id
    before = {r["report_id"]: r for r in _vault_rows(tg.store.db)}
    as_of = parse_instant("2025-01-01T00:00:00Z")
    record_keys = {r.record_key for r in tg.vault.reports(as_of=as_of)}

    result, ring = rotate_master_key(vault=tg.vault, key_file=settings.key_file)
    assert result.rewrapped == 2 and result.retired == ()
    assert result.master_key_id != old_id
    on_disk = load_or_create_keys(settings.key_file)
    assert [k.id for k in on_disk.master_keys] == [old_id, result.master_key_id]
    assert stat.S_IMODE(settings.key_file.stat().st_mode) == 0o600
    after = {r["report_id"]: r for r in _vault_rows(tg.store.db)}
    for report_id, row in after.items():
        assert row["master_key_id"] == result.master_key_id
        assert row["wrapped_key"] != before[report_id]["wrapped_key"]
        # payloads untouched
        assert row["nonce"] == before[report_id]["nonce"]
        assert row["ciphertext"] == before[report_id]["ciphertext"]
    rotated = Vault(tg.store.db, keys=ring, policy=tg.policy)
    for receipt in receipts:
        assert rotated.show(receipt)[1].comment == f"{COMMENT} ([email])"

    # a second rotation that retires every older key
    result2, _ = rotate_master_key(vault=rotated, key_file=settings.key_file, retire_old=True)
    assert result2.rewrapped == 2
    assert set(result2.retired) == {old_id, result.master_key_id}
    on_disk = load_or_create_keys(settings.key_file)
    assert [k.id for k in on_disk.master_keys] == [result2.master_key_id]
    assert on_disk.signing_key == tg.keys.signing_key and on_disk.id_key == tg.keys.id_key
    fresh = Vault(tg.store.db, keys=on_disk, policy=tg.policy)
    for receipt in receipts:
        assert fresh.show(receipt)[1].rating == "down"
    # the stale vault, holding only retired keys, can no longer open anything
    with pytest.raises(ConfigError):
        tg.vault.show(receipts[0])
    # record keys survive rotation (the signing key is not rotated)
    assert {r.record_key for r in fresh.reports(as_of=as_of)} == record_keys


def test_retire_is_refused_while_a_report_uses_an_old_key(
    tg: Traingate, ev: Events, settings: Settings
) -> None:
    _ingest_two_reports(tg, ev)
    from dataclasses import replace

    from traingate._keys import new_master_key

    ring = replace(tg.keys, master_keys=(*tg.keys.master_keys, new_master_key()))
    vault = Vault(tg.store.db, keys=ring, policy=tg.policy)
    with pytest.raises(StoreError, match="still wrapped"):
        retire_old_masters(vault=vault, keys=ring)


def test_rotate_refuses_a_key_not_in_the_ring(tg: Traingate) -> None:
    from traingate._keys import new_master_key

    with pytest.raises(ConfigError):
        tg.vault.rotate(new_master_key())


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("expires_day = expires_day + 86400000000", "days were altered"),
        ("submitted_day = submitted_day - 86400000000", "days were altered"),
        ("nonce = ?", "does not authenticate"),
        ("wrapped_key = ?", "does not unwrap"),
    ],
)
def test_tampered_rows_do_not_open(tg: Traingate, ev: Events, change: str, error: str) -> None:
    receipt, other = _ingest_two_reports(tg, ev)
    db = tg.store.db
    rows = {r["report_id"]: r for r in _vault_rows(db)}
    report_id, other_id = Receipt.parse(receipt).report_id, Receipt.parse(other).report_id
    column = change.split(" = ")[0]
    params = (rows[other_id][column], report_id) if "?" in change else (report_id,)
    db.execute(f"UPDATE {db.vault_prefix}reports SET {change} WHERE report_id = ?", params)
    with pytest.raises(StoreError, match=error):
        tg.vault.show(receipt)
    assert tg.vault.show(other)[1].rating == "down"


def test_vault_sqlite_file_is_separate(settings: Settings, tg: Traingate) -> None:
    if tg.store.db.dialect != "sqlite":
        pytest.skip("SQLite only")
    main = sqlite_path_of(settings.db_url)
    assert isinstance(main, Path)
    assert vault_path_of(main).exists()


def test_a_vault_write_orphaned_by_a_crash_is_taken_over_on_reingest(
    tg: Traingate, ev: Events
) -> None:
    """A crash after the vault write but before the main commit (possible across SQLite's two
    files) leaves an orphan row; ingesting the event again reuses it instead of adding one."""
    events = [ev.account(ACCOUNT, ev.t(0)), *_report_events(ev, conv=CONV_A, day=1, comment="x")]
    feedback = events[-1]
    orphan = tg.vault.put(
        snapshot=Snapshot(
            date="2024-01-02",
            messages=(),
            custom_style=None,
            preferences=None,
            rating="up",
            comment="orphan",
            categories=(),
            rated_message_index=0,
        ),
        submitted_at=parse_instant(feedback["at"]),
        dedupe_key=tg.keys.id_hash("report", feedback["event_id"]),
    )
    summary = tg.events.ingest(jsonl(events))
    assert summary.accepted == len(events)
    ((_, _, receipt),) = summary.receipts
    assert tg.vault.count() == 1
    assert Receipt.parse(receipt).report_id == Receipt.parse(orphan).report_id
    assert tg.vault.show(receipt)[1].comment == "x ([email])"
    with pytest.raises(ReceiptError):
        tg.vault.show(orphan)
