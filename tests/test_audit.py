"""The audit chain: every kind of tampering is detected and named, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from traingate._audit.log import AuditLog
from traingate._keys import load_or_create_keys
from traingate._settings import Settings
from traingate._store.db import Database, connect
from traingate._store.schema import migrate


@pytest.fixture
def log(settings: Settings) -> Iterator[AuditLog]:
    db = connect(settings.db_url)
    migrate(db)
    audit = AuditLog(db, keys=load_or_create_keys(settings.key_file))
    for n in range(1, 6):
        audit.append(actor=f"token:t{n}", action="ingest.batch", details={"accepted": n})
    yield audit
    db.close()


def _swap(db: Database) -> None:
    db.execute("UPDATE audit_log SET seq = -2 WHERE seq = 2")
    db.execute("UPDATE audit_log SET seq = 2 WHERE seq = 4")
    db.execute("UPDATE audit_log SET seq = 4 WHERE seq = -2")


def _insert_middle(db: Database) -> None:
    for seq in (5, 4, 3):
        db.execute("UPDATE audit_log SET seq = ? WHERE seq = ?", (seq + 1, seq))
    prev = db.execute("SELECT hash FROM audit_log WHERE seq = 2")[0][0]
    db.execute(
        "INSERT INTO audit_log (seq, at, actor, action, details, prev_hash, hash)"
        " VALUES (3, 0, 'mallory', 'dataset.build', '{}', ?, ?)",
        (prev, "f" * 64),
    )


def _append_forged(db: Database) -> None:
    prev = db.execute("SELECT hash FROM audit_log WHERE seq = 5")[0][0]
    db.execute(
        "INSERT INTO audit_log (seq, at, actor, action, details, prev_hash, hash)"
        " VALUES (6, 0, 'mallory', 'purge', '{}', ?, ?)",
        (prev, "e" * 64),
    )


TAMPERING: dict[str, tuple[Callable[[Database], None], str, int]] = {
    "edit details": (
        lambda db: db.execute("UPDATE audit_log SET details = '{\"accepted\":99}' WHERE seq = 3"),
        "edited",
        3,
    ),
    "edit actor": (
        lambda db: db.execute("UPDATE audit_log SET actor = 'x' WHERE seq = 1"),
        "edited",
        1,
    ),
    "delete an entry": (lambda db: db.execute("DELETE FROM audit_log WHERE seq = 3"), "deleted", 4),
    "delete the last entry": (
        lambda db: db.execute("DELETE FROM audit_log WHERE seq = 5"),
        "truncated",
        5,
    ),
    "insert in the middle": (_insert_middle, "inserted", 3),
    "append a forged entry": (_append_forged, "inserted", 6),
    "reorder two entries": (_swap, "reordered", 2),
    "forge the head": (lambda db: db.execute("UPDATE audit_head SET seq = 3"), "head", 3),
}


def test_an_untouched_chain_verifies(log: AuditLog) -> None:
    assert log.verify() == []
    assert [e.seq for e in log.entries()] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("name", list(TAMPERING))
def test_tampering_is_detected_and_named(log: AuditLog, name: str) -> None:
    tamper, kind, seq = TAMPERING[name]
    tamper(log.db)
    problems = log.verify()
    assert problems, f"{name} went unnoticed"
    assert (problems[0].kind, problems[0].seq) == (kind, seq), problems


def test_another_key_cannot_verify(log: AuditLog, settings: Settings, tmp_path: object) -> None:
    other = AuditLog(log.db, keys=load_or_create_keys(settings.key_file.with_name("other.json")))
    assert other.verify()[0].kind == "edited"
