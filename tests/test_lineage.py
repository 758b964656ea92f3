"""Lineage: which builds hold data of a conversation or of a feedback report, by keyed hash;
written with the build's rename, absent when a build fails; outliving deletion and purge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.factories import Events, jsonl
from tests.test_build_helpers import read_dataset
from traingate.app import Traingate
from traingate.build import builder as builder_module
from traingate.build.lineage import receipt_record_key
from traingate.cli import cli
from traingate.errors import ConfigError, ReceiptError
from traingate.settings import Settings
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
    with pytest.raises(OSError, match="rename refused"):
        build(tg, tmp_path / "mt", "model_training", 3)
    assert tg.lineage(conversation_id="c1").builds == ()
    assert tg.store.db.execute("SELECT COUNT(*) FROM build_items")[0][0] == 0
    assert list(tmp_path.glob(".mt*")) == [] and not (tmp_path / "mt").exists()


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
