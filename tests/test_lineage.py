"""Lineage: which builds hold data of a conversation or of a feedback report, by keyed hash;
written with the build's rename, absent when a build fails; outliving deletion and purge."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.factories import Events, jsonl
from tests.test_build_helpers import read_dataset
from traingate.app import Traingate
from traingate.build import builder as builder_module
from traingate.build.lineage import (
    LineageSpool,
    builds_holding,
    forget_build,
    item_key_bytes,
    receipt_record_key,
    report_lineage,
)
from traingate.build.records import (
    LineageItem,
    conversation_item_key,
    conversation_record_id,
    feedback_record_id,
    report_item_key,
)
from traingate.build.staging import claim
from traingate.cli import cli
from traingate.errors import BuildError, ConfigError, ReceiptError
from traingate.jobs import recorded_builds
from traingate.keys import load_or_create_keys
from traingate.settings import Settings
from traingate.store.db import connect
from traingate.store.schema import MIGRATIONS, migrate
from traingate.timeutil import parse_instant

T = Events.t


def history(e: Events) -> list[dict[str, Any]]:
    return [
        e.account("a", T(0)),
        e.consent("a", T(0), True),
        e.message("m1", "c1", "a", T(1)),
        e.message("m2", "c2", "a", T(1)),
        e.flag("fl", "c2", T(1)),
        e.feedback("f1", "a", "c1", "m1", T(2)),
    ]


def receipt_of(tg: Traingate, ev: Events) -> str:
    summary = tg.ingest(jsonl(history(ev)))
    assert summary.rejected == 0, summary.errors
    ((_, _, receipt),) = summary.receipts
    return receipt


def build(tg: Traingate, out: Path, purpose: str, day: int) -> Any:
    return tg.build_dataset(purpose=purpose, out=out, as_of=parse_instant(T(day)))


@pytest.mark.store
def test_lineage_lists_the_builds_holding_an_item(
    tg: Traingate, ev: Events, tmp_path: Path
) -> None:
    receipt = receipt_of(tg, ev)
    mt = build(tg, tmp_path / "mt", "model_training", 3)
    sr = build(tg, tmp_path / "sr", "safety_review", 3)
    research = build(tg, tmp_path / "rs", "research", 3)

    c1 = tg.lineage(conversation_id="c1").to_dict()
    assert c1["item"] == {"kind": "conversation", "conversation_id": "c1"}
    assert [b["build_id"] for b in c1["builds"]] == [mt.build_id]
    (entry,) = c1["builds"]
    records = read_dataset(mt.path)
    assert entry["item"] == {"records": [records[0]["record_id"]], "messages": 1}
    assert entry["path"] == str(mt.path)
    assert entry["purpose"] == "model_training"
    assert entry["as_of"] == T(3)
    assert entry["records"] == 3  # c1, c2 and the report

    c2 = tg.lineage(conversation_id="c2").to_dict()
    assert [b["build_id"] for b in c2["builds"]] == [mt.build_id, sr.build_id]

    report = tg.lineage(receipt=receipt).to_dict()
    assert report["item"] == {"kind": "feedback_report"}
    assert [b["build_id"] for b in report["builds"]] == [mt.build_id, research.build_id]
    feedback_ids = {r["record_id"] for r in read_dataset(research.path)}
    assert set(report["builds"][1]["item"]["records"]) == feedback_ids

    assert tg.lineage(conversation_id="never-seen").to_dict()["builds"] == []


@pytest.mark.store
def test_lineage_outlives_deletion_and_purge(tg: Traingate, ev: Events, tmp_path: Path) -> None:
    receipt = receipt_of(tg, ev)
    built = build(tg, tmp_path / "mt", "model_training", 3)
    tg.ingest(jsonl([ev.conversation_deleted("c1", "a", T(4))]))
    tg.feedback_delete(receipt)
    tg.purge(as_of=parse_instant(T(100)))
    after = build(tg, tmp_path / "after", "model_training", 5)
    assert [b["build_id"] for b in tg.lineage(conversation_id="c1").to_dict()["builds"]] == [
        built.build_id
    ]
    assert [b["build_id"] for b in tg.lineage(receipt=receipt).to_dict()["builds"]] == [
        built.build_id
    ]
    assert after.build_id not in json.dumps(tg.lineage(conversation_id="c1").to_dict())


@pytest.mark.store
def test_receipt_record_key_is_the_vaults(tg: Traingate, ev: Events) -> None:
    receipt = receipt_of(tg, ev)
    (report,) = tg.vault.reports(as_of=parse_instant(T(3)))
    assert receipt_record_key(tg.keys, receipt) == report.record_key
    with pytest.raises(ReceiptError):
        receipt_record_key(tg.keys, "not a receipt")


@pytest.mark.store
def test_a_failed_build_leaves_no_lineage(
    tg: Traingate, ev: Events, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receipt_of(tg, ev)

    def fail(source: Path, target: Path) -> None:
        raise OSError("rename refused")

    monkeypatch.setattr(builder_module.os, "rename", fail)
    with pytest.raises(BuildError, match=r"cannot write the dataset .*rename refused"):
        build(tg, tmp_path / "mt", "model_training", 3)
    assert tg.lineage(conversation_id="c1").builds == ()
    assert tg.store.db.execute("SELECT COUNT(*) FROM build_items")[0][0] == 0
    assert list(tmp_path.glob(".mt*")) == [] and not (tmp_path / "mt").exists()


@pytest.mark.store
def test_a_failure_making_feedback_records_fails_the_build(
    tg: Traingate, ev: Events, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Feedback records are made on a worker thread while the engine runs: its error fails
    the build in the caller's thread, leaving no directory and no lineage."""
    receipt_of(tg, ev)

    def fail(**_: Any) -> Any:
        raise RuntimeError("the vault is unreadable")
        yield

    monkeypatch.setattr(builder_module, "_feedback", fail)
    with pytest.raises(RuntimeError, match="the vault is unreadable"):
        build(tg, tmp_path / "mt", "model_training", 3)
    assert tg.store.db.execute("SELECT COUNT(*) FROM builds") == [(0,)]
    assert list(tmp_path.glob(".mt*")) == [] and not (tmp_path / "mt").exists()


@pytest.mark.store
def test_a_failure_finishing_the_files_rolls_the_pending_lineage_back(
    tg: Traingate, ev: Events, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The items are inserted on a worker thread while the files are finished: a failure
    there rolls the insert back (no row, no item) and leaves no directory."""
    receipt_of(tg, ev)
    close = builder_module.BackgroundWriter.close

    def fail(self: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(builder_module.BackgroundWriter, "close", fail)
    with pytest.raises(BuildError, match=r"cannot write the dataset .*disk full"):
        build(tg, tmp_path / "mt", "model_training", 3)
    assert tg.store.db.execute("SELECT COUNT(*) FROM builds") == [(0,)]
    assert tg.store.db.execute("SELECT COUNT(*) FROM build_items") == [(0,)]
    assert list(tmp_path.glob(".mt*")) == [] and not (tmp_path / "mt").exists()
    monkeypatch.setattr(builder_module.BackgroundWriter, "close", close)
    again = build(tg, tmp_path / "mt", "model_training", 3)  # the store was left writable
    assert [b.build.build_id for b in tg.lineage(conversation_id="c1").builds] == [again.build_id]


def test_lineage_needs_exactly_one_item(tg: Traingate) -> None:
    with pytest.raises(ConfigError):
        tg.lineage()
    with pytest.raises(ConfigError):
        tg.lineage(conversation_id="c", receipt="r.s")


def test_lineage_command(tg: Traingate, ev: Events, tmp_path: Path, settings: Settings) -> None:
    receipt = receipt_of(tg, ev)
    built = build(tg, tmp_path / "mt", "model_training", 3)
    base = ["--db", settings.db_url, "--key-file", str(settings.key_file), "lineage"]
    runner = CliRunner()
    by_conversation = runner.invoke(cli, [*base, "--conversation", "c1"])
    assert by_conversation.exit_code == 0, by_conversation.output
    assert json.loads(by_conversation.stdout)["builds"][0]["build_id"] == built.build_id
    by_receipt = runner.invoke(cli, [*base, "--receipt", "-"], input=receipt + "\n")
    assert by_receipt.exit_code == 0, by_receipt.output
    assert json.loads(by_receipt.stdout)["builds"][0]["build_id"] == built.build_id
    neither = runner.invoke(cli, base)
    assert neither.exit_code == 2
    assert "exactly one of --conversation" in neither.stderr


# -- builds killed between recording their lineage and completing it --------------------------


def _killed_after_rename(tg: Traingate, tmp_path: Path) -> tuple[str, Path]:
    """The state a build killed between its rename and the completion of its lineage leaves:
    its directory in place, its rows pending, its scratch directory unlocked."""
    result = build(tg, tmp_path / "mt", "model_training", 3)
    scratch = tmp_path / ".mt.work-dead"
    scratch.mkdir()
    tg.store.db.execute(
        "UPDATE builds SET pending_scratch = ? WHERE build_id = ?", (str(scratch), result.build_id)
    )
    return result.build_id, scratch


def _audited_builds(tg: Traingate) -> list[dict[str, Any]]:
    return [json.loads(e.details) for e in tg.audit_log.entries() if e.action == "dataset.build"]


@pytest.mark.store
def test_pending_lineage_is_invisible_to_readers(tg: Traingate, ev: Events, tmp_path: Path) -> None:
    """Readers of lineage never see a pending row: it is settled first, or skipped."""
    receipt_of(tg, ev)
    build_id, _ = _killed_after_rename(tg, tmp_path)
    db = tg.store.db
    assert builds_holding(db, item_key=conversation_item_key(tg.keys.signing_key, "c1")) == []
    assert recorded_builds(db) == []
    assert [b["build_id"] for b in tg.recorded_builds()] == [build_id]  # settled, then read


@pytest.mark.store
def test_settling_completes_a_build_whose_directory_stands(
    tg: Traingate, ev: Events, tmp_path: Path
) -> None:
    receipt_of(tg, ev)
    build_id, _ = _killed_after_rename(tg, tmp_path)
    before = len(_audited_builds(tg))
    tg.settle_builds()
    tg.settle_builds()  # a second settler finds nothing left to do
    assert tg.store.db.execute(
        "SELECT pending_scratch FROM builds WHERE build_id = ?", (build_id,)
    ) == [(None,)]
    audited = _audited_builds(tg)
    assert len(audited) == before + 1
    assert audited[-1]["build_id"] == build_id and audited[-1]["settled"] is True
    assert [b.build.build_id for b in tg.lineage(conversation_id="c1").builds] == [build_id]
    assert tg.audit_verify()["ok"]


@pytest.mark.store
def test_settling_forgets_a_build_whose_directory_never_appeared(
    tg: Traingate, ev: Events, tmp_path: Path
) -> None:
    receipt_of(tg, ev)
    _killed_after_rename(tg, tmp_path)
    (tmp_path / "mt").rename(tmp_path / "elsewhere")  # as if killed before the rename
    before = len(_audited_builds(tg))
    tg.settle_builds()
    assert tg.store.db.execute("SELECT COUNT(*) FROM builds") == [(0,)]
    assert tg.store.db.execute("SELECT COUNT(*) FROM build_items") == [(0,)]
    assert len(_audited_builds(tg)) == before
    assert tg.lineage(conversation_id="c1").builds == ()


@pytest.mark.store
def test_settling_leaves_a_running_build_alone(tg: Traingate, ev: Events, tmp_path: Path) -> None:
    receipt_of(tg, ev)
    build_id, scratch = _killed_after_rename(tg, tmp_path)
    (tmp_path / "mt").rename(tmp_path / "elsewhere")  # not renamed into place yet
    held = claim(scratch)  # the build is alive: it holds its scratch directory
    try:
        tg.settle_builds()
        assert tg.store.db.execute(
            "SELECT pending_scratch FROM builds WHERE build_id = ?", (build_id,)
        ) == [(str(scratch),)]
        assert tg.lineage(conversation_id="c1").builds == ()  # pending: not yet lineage
    finally:
        held.release()


@pytest.mark.store
def test_lineage_recorded_before_compaction_is_found_after(settings: Settings) -> None:
    """Migration 9 keeps item keys as their first 16 bytes and record ids as bytes: lineage
    recorded in the hex form of migration 3 is still found, with the same record ids."""
    keys = load_or_create_keys(settings.key_file)
    conversation_key = conversation_item_key(keys.signing_key, "c1")
    record = conversation_record_id(keys.signing_key, "c1", "opt_in")
    other = conversation_record_id(keys.signing_key, "c1", "usage_policy_flag")
    report = feedback_record_id(keys.signing_key, "rk")
    db = connect(settings.db_url)
    try:
        migrate(db, target=8)
        db.execute(
            "INSERT INTO builds (build_id, built_at, purpose, as_of, policy_id, policy_sha256,"
            " engine, format, path, manifest_sha256, records, messages)"
            " VALUES ('build-1', 5, 'model_training', 7, 'consumer-2024', 'ab', 'duckdb',"
            " 'parquet', '/d', 'cd', 3, 6)"
        )
        db.executemany(
            "INSERT INTO build_items (build_id, record_id, item_key, kind, messages)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                ("build-1", record, conversation_key, "conversation", 2),
                ("build-1", other, conversation_key, "conversation", 3),
                ("build-1", report, report_item_key(keys.signing_key, "rk"), "feedback", 1),
            ],
        )
        assert migrate(db) == [m.version for m in MIGRATIONS if m.version > 8]
    finally:
        db.close()
    with Traingate.open(settings) as tg:
        (entry,) = tg.lineage(conversation_id="c1").builds
        assert (entry.build.build_id, entry.messages) == ("build-1", 5)
        assert entry.record_ids == tuple(sorted([record, other]))
        assert tg.lineage(conversation_id="c2").builds == ()
        (held,) = report_lineage(
            tg.store.db, signing_key=tg.keys.signing_key, record_key="rk"
        ).builds
        assert held.record_ids == (report,)
        forget_build(tg.store.db, build_id="build-1")
        assert tg.lineage(conversation_id="c1").builds == ()


def test_the_spool_returns_every_item_in_key_order(tmp_path: Path) -> None:
    """Items come back merged from sorted runs: by item key, then record id, none lost."""
    rng = random.Random(7)
    items = [
        LineageItem(
            item_key=rng.choice(["ab", "cd", "0f"]) * 32,
            kind=rng.choice(["conversation", "feedback"]),
            record_id=f"{rng.getrandbits(256):064x}",
            messages=rng.randint(1, 9),
        )
        for _ in range(257)
    ]
    spool = LineageSpool(tmp_path / "spool", run_items=10)
    for start in range(0, len(items), 7):
        spool.add(items[start : start + 7])
    chunks = list(spool.chunks(size=50))
    assert [len(c) for c in chunks] == [50] * 5 + [7]
    assert [i for c in chunks for i in c] == [
        (item_key_bytes(i.item_key), bytes.fromhex(i.record_id), i.kind, i.messages)
        for i in sorted(items, key=lambda i: (i.item_key, i.record_id))
    ]
