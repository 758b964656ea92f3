"""Lineage: which builds hold data of a conversation or of a feedback report, by keyed hash;
written with the build's rename, absent when a build fails; outliving deletion and purge."""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.factories import Events, jsonl
from tests.support import read_dataset
from traingate._cli import cli
from traingate._core.timeutil import parse_instant
from traingate._datasets import builder as builder_module
from traingate._datasets import lineage_file
from traingate._datasets import produce as produce_module
from traingate._datasets.lineage import (
    builds_holding,
    forget_build,
    item_key_bytes,
    receipt_record_key,
    recorded_builds,
    report_lineage,
)
from traingate._datasets.lineage_file import (
    LINEAGE_DIR,
    ROW_GROUP,
    SCHEMA,
    LineageSpool,
    find_items,
    write_lineage,
)
from traingate._datasets.records import (
    LineageItem,
    conversation_item_key,
    conversation_record_id,
    feedback_record_id,
    report_item_key,
)
from traingate._datasets.staging import claim
from traingate._errors import BuildError, ConfigError, ReceiptError, StoreError
from traingate._facade import Traingate
from traingate._keys import load_or_create_keys
from traingate._settings import Settings
from traingate._store.db import connect
from traingate._store.schema import MIGRATIONS, migrate

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
    summary = tg.events.ingest(jsonl(history(ev)))
    assert summary.rejected == 0, summary.errors
    ((_, _, receipt),) = summary.receipts
    return receipt


def build(tg: Traingate, out: Path, purpose: str, day: int) -> Any:
    return tg.datasets.build(purpose=purpose, out=out, as_of=parse_instant(T(day)))


@pytest.mark.store
def test_lineage_lists_the_builds_holding_an_item(
    tg: Traingate, ev: Events, tmp_path: Path
) -> None:
    receipt = receipt_of(tg, ev)
    mt = build(tg, tmp_path / "mt", "model_training", 3)
    sr = build(tg, tmp_path / "sr", "safety_review", 3)
    research = build(tg, tmp_path / "rs", "research", 3)

    c1 = tg.datasets.lineage(conversation_id="c1").to_dict()
    assert c1["item"] == {"kind": "conversation", "conversation_id": "c1"}
    assert [b["build_id"] for b in c1["builds"]] == [mt.build_id]
    (entry,) = c1["builds"]
    records = read_dataset(mt.path)
    assert entry["item"] == {"records": [records[0]["record_id"]], "messages": 1}
    assert entry["path"] == str(mt.path)
    assert entry["purpose"] == "model_training"
    assert entry["as_of"] == T(3)
    assert entry["records"] == 3  # c1, c2 and the report

    c2 = tg.datasets.lineage(conversation_id="c2").to_dict()
    assert [b["build_id"] for b in c2["builds"]] == [mt.build_id, sr.build_id]

    report = tg.datasets.lineage(receipt=receipt).to_dict()
    assert report["item"] == {"kind": "feedback_report"}
    assert [b["build_id"] for b in report["builds"]] == [mt.build_id, research.build_id]
    feedback_ids = {r["record_id"] for r in read_dataset(research.path)}
    assert set(report["builds"][1]["item"]["records"]) == feedback_ids

    assert tg.datasets.lineage(conversation_id="never-seen").to_dict()["builds"] == []


@pytest.mark.store
def test_lineage_outlives_deletion_and_purge(tg: Traingate, ev: Events, tmp_path: Path) -> None:
    receipt = receipt_of(tg, ev)
    built = build(tg, tmp_path / "mt", "model_training", 3)
    tg.events.ingest(jsonl([ev.conversation_deleted("c1", "a", T(4))]))
    tg.feedback.delete(receipt)
    tg.retention.purge(as_of=parse_instant(T(100)))
    after = build(tg, tmp_path / "after", "model_training", 5)
    assert [
        b["build_id"] for b in tg.datasets.lineage(conversation_id="c1").to_dict()["builds"]
    ] == [built.build_id]
    assert [b["build_id"] for b in tg.datasets.lineage(receipt=receipt).to_dict()["builds"]] == [
        built.build_id
    ]
    assert after.build_id not in json.dumps(tg.datasets.lineage(conversation_id="c1").to_dict())


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
    assert tg.datasets.lineage(conversation_id="c1").builds == ()
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

    monkeypatch.setattr(produce_module, "_feedback", fail)
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
    assert [b.build.build_id for b in tg.datasets.lineage(conversation_id="c1").builds] == [
        again.build_id
    ]


def test_lineage_needs_exactly_one_item(tg: Traingate) -> None:
    with pytest.raises(ConfigError):
        tg.datasets.lineage()
    with pytest.raises(ConfigError):
        tg.datasets.lineage(conversation_id="c", receipt="r.s")


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
    return [json.loads(e.details) for e in tg.audit.log.entries() if e.action == "dataset.build"]


@pytest.mark.store
def test_pending_lineage_is_invisible_to_readers(tg: Traingate, ev: Events, tmp_path: Path) -> None:
    """Readers of lineage never see a pending row: it is settled first, or skipped."""
    receipt_of(tg, ev)
    build_id, _ = _killed_after_rename(tg, tmp_path)
    db = tg.store.db
    assert builds_holding(db, item_key=conversation_item_key(tg.keys.signing_key, "c1")) == []
    assert recorded_builds(db) == []
    tg.datasets.settle()  # as opening the facade and a build do; reads skip pending builds
    assert [b["build_id"] for b in tg.datasets.recorded_builds()] == [build_id]  # then read


@pytest.mark.store
def test_settling_completes_a_build_whose_directory_stands(
    tg: Traingate, ev: Events, tmp_path: Path
) -> None:
    receipt_of(tg, ev)
    build_id, _ = _killed_after_rename(tg, tmp_path)
    before = len(_audited_builds(tg))
    tg.datasets.settle()
    tg.datasets.settle()  # a second settler finds nothing left to do
    assert tg.store.db.execute(
        "SELECT pending_scratch FROM builds WHERE build_id = ?", (build_id,)
    ) == [(None,)]
    audited = _audited_builds(tg)
    assert len(audited) == before + 1
    assert audited[-1]["build_id"] == build_id and audited[-1]["settled"] is True
    assert [b.build.build_id for b in tg.datasets.lineage(conversation_id="c1").builds] == [
        build_id
    ]
    assert tg.audit.verify()["ok"]


@pytest.mark.store
def test_settling_forgets_a_build_whose_directory_never_appeared(
    tg: Traingate, ev: Events, tmp_path: Path
) -> None:
    receipt_of(tg, ev)
    _killed_after_rename(tg, tmp_path)
    (tmp_path / "mt").rename(tmp_path / "elsewhere")  # as if killed before the rename
    before = len(_audited_builds(tg))
    tg.datasets.settle()
    assert tg.store.db.execute("SELECT COUNT(*) FROM builds") == [(0,)]
    assert tg.store.db.execute("SELECT COUNT(*) FROM build_items") == [(0,)]
    assert len(_audited_builds(tg)) == before
    assert tg.datasets.lineage(conversation_id="c1").builds == ()


@pytest.mark.store
def test_settling_leaves_a_running_build_alone(tg: Traingate, ev: Events, tmp_path: Path) -> None:
    receipt_of(tg, ev)
    build_id, scratch = _killed_after_rename(tg, tmp_path)
    (tmp_path / "mt").rename(tmp_path / "elsewhere")  # not renamed into place yet
    held = claim(scratch)  # the build is alive: it holds its scratch directory
    try:
        tg.datasets.settle()
        assert tg.store.db.execute(
            "SELECT pending_scratch FROM builds WHERE build_id = ?", (build_id,)
        ) == [(str(scratch),)]
        assert tg.datasets.lineage(conversation_id="c1").builds == ()  # pending: not yet lineage
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
        (entry,) = tg.datasets.lineage(conversation_id="c1").builds
        assert (entry.build.build_id, entry.messages) == ("build-1", 5)
        assert entry.record_ids == tuple(sorted([record, other]))
        assert tg.datasets.lineage(conversation_id="c2").builds == ()
        (held,) = report_lineage(
            tg.store.db, signing_key=tg.keys.signing_key, record_key="rk"
        ).builds
        assert held.record_ids == (report,)
        forget_build(tg.store.db, build_id="build-1")
        assert tg.datasets.lineage(conversation_id="c1").builds == ()


def _items(draw_keys: list[bytes], rng: random.Random) -> list[LineageItem]:
    return [
        LineageItem(
            item_key=(key * 4).hex(),
            kind=rng.choice(["conversation", "feedback"]),
            record_id=f"{rng.getrandbits(256):064x}",
            messages=rng.randint(1, 2**31 - 1),
        )
        for key in draw_keys
    ]


def _stored(items: list[LineageItem]) -> list[tuple[bytes, bytes, str, int]]:
    return sorted(
        (item_key_bytes(i.item_key), bytes.fromhex(i.record_id), i.kind, i.messages) for i in items
    )


def _rows(batches: Any) -> list[tuple[bytes, bytes, str, int]]:
    table = pa.Table.from_batches(list(batches), schema=SCHEMA)
    return list(
        zip(
            table["item_key"].to_pylist(),
            table["record_id"].to_pylist(),
            table["kind"].to_pylist(),
            table["messages"].to_pylist(),
            strict=True,
        )
    )


@given(
    keys=st.lists(st.binary(min_size=4, max_size=4), max_size=120),
    run_items=st.integers(1, 30),
    group_items=st.integers(1, 60),
    seed=st.integers(0, 2**32),
)
@hypothesis_settings(max_examples=60)
def test_the_spool_returns_every_item_in_key_order(
    keys: list[bytes], run_items: int, group_items: int, seed: int
) -> None:
    """Items spooled in runs and read back range by range come out by item key, then record
    id (byte order: keys of 0x00 and 0xff bytes, keys repeated), none lost, none twice."""
    rng = random.Random(seed)
    keys = keys + [b"\x00" * 4, b"\xff" * 4, b"\x00\x00\x00\x01"] * rng.randint(0, 2)
    items = _items(keys, rng)
    with tempfile.TemporaryDirectory() as scratch:
        spool = LineageSpool(Path(scratch) / "spool", run_items=run_items, group_items=group_items)
        for start in range(0, len(items), 7):
            spool.add(items[start : start + 7])
        assert spool.count == len(items)
        assert _rows(spool.batches()) == _stored(items)


def _write(tmp_path: Path, items: list[LineageItem], build_id: str = "build-x") -> Path:
    spool = LineageSpool(tmp_path / "spool", run_items=5_000)
    spool.add(items)
    path = tmp_path / f"{build_id}.parquet"
    digest = write_lineage(spool, path=path, build_id=build_id)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    return path


def test_a_lookup_reads_only_the_row_groups_that_can_hold_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is sorted, cut into row groups of ROW_GROUP rows with key statistics: a lookup
    reads the one row group holding the key (two when its records straddle a boundary) and
    finds exactly the items a full scan finds."""
    rng = random.Random(11)
    n = 2 * ROW_GROUP + 1_000
    keys = [rng.randbytes(4) for _ in range(n - 40)]
    straddling = sorted(keys)[ROW_GROUP - 1]  # the last key of the first row group ...
    keys += [straddling] * 40  # ... now also the first keys of the second
    items = _items(keys, rng)
    path = _write(tmp_path, items)
    metadata = pq.ParquetFile(path).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [
        ROW_GROUP,
        ROW_GROUP,
        n - 2 * ROW_GROUP,
    ]
    read: list[list[int]] = []
    real = pq.ParquetFile.read_row_groups

    def spy(self: pq.ParquetFile, groups: list[int], **kwargs: Any) -> Any:
        read.append(list(groups))
        return real(self, groups, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    everything = _stored(items)
    for key in [*rng.sample(keys, 25), straddling]:
        wanted = item_key_bytes((key * 4).hex())
        found = find_items(path, build_id="build-x", item_keys=[wanted])
        assert found == [row for row in everything if row[0] == wanted]
    assert all(len(groups) == 1 for groups in read[:-1]) and read[-1] == [0, 1]
    read.clear()
    absent = item_key_bytes((b"\xfe\xfe\xfe\xfe" * 4).hex())
    several = [item_key_bytes((k * 4).hex()) for k in keys[:50]]
    assert find_items(path, build_id="build-x", item_keys=[absent]) == []
    found = find_items(path, build_id="build-x", item_keys=[*several, absent])
    assert found == [row for row in everything if row[0] in set(several)]
    with pytest.raises(StoreError, match="is not the lineage of build-y"):
        find_items(path, build_id="build-y", item_keys=several)
    with pytest.raises(StoreError, match="cannot read the lineage of build-x"):
        find_items(tmp_path / "gone.parquet", build_id="build-x", item_keys=several)


def test_row_groups_grow_past_max_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_GROUPS row groups of ROW_GROUP rows, the row groups grow instead (the footer
    every lookup parses stays small), and lookups still find exactly what a scan finds."""
    monkeypatch.setattr(lineage_file, "ROW_GROUP", 100)
    monkeypatch.setattr(lineage_file, "MAX_GROUPS", 4)
    rng = random.Random(5)
    keys = [rng.randbytes(4) for _ in range(1_000)]
    items = _items(keys, rng)
    path = _write(tmp_path, items)
    metadata = pq.ParquetFile(path).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [250] * 4
    everything = _stored(items)
    for key in rng.sample(keys, 30):
        wanted = item_key_bytes((key * 4).hex())
        found = find_items(path, build_id="build-x", item_keys=[wanted])
        assert found == [row for row in everything if row[0] == wanted]


def test_an_empty_lineage_file_holds_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path, [])
    assert find_items(path, build_id="build-x", item_keys=[b"\x00" * 16]) == []


def _row(tg: Traingate, build_id: str) -> tuple[Any, ...]:
    (row,) = tg.store.db.execute(
        "SELECT lineage_path, lineage_sha256, pending_scratch FROM builds WHERE build_id = ?",
        (build_id,),
    )
    return tuple(row)


@pytest.mark.store
def test_a_build_writes_its_lineage_beside_the_dataset(
    tg: Traingate, ev: Events, tmp_path: Path
) -> None:
    """The items go to .traingate-lineage/BUILD_ID.parquet beside the dataset (never inside
    it: the dataset still verifies), named with its hash by the build's row; build_items
    gets nothing."""
    receipt_of(tg, ev)
    built = build(tg, tmp_path / "mt", "model_training", 3)
    path, digest, pending = _row(tg, built.build_id)
    assert Path(path) == tmp_path / LINEAGE_DIR / f"{built.build_id}.parquet"
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest and pending is None
    inside = [p.name for p in (tmp_path / "mt").rglob("*") if p.is_file()]
    assert inside and f"{built.build_id}.parquet" not in inside
    assert tg.datasets.verify(path=tmp_path / "mt").ok
    assert tg.store.db.execute("SELECT COUNT(*) FROM build_items") == [(0,)]
    table = pq.read_table(path)
    assert table.num_rows == built.manifest["counts"]["records"] == 3
    assert sorted(table["record_id"].to_pylist()) == sorted(
        bytes.fromhex(r["record_id"]) for r in read_dataset(built.path)
    )
    assert table["item_key"].to_pylist() == sorted(table["item_key"].to_pylist())


@pytest.mark.store
def test_lineage_of_a_build_whose_file_is_gone_is_an_error(
    tg: Traingate, ev: Events, tmp_path: Path, settings: Settings
) -> None:
    """Lineage does not answer "not held" for a build it cannot read: the API raises, the
    command line says which build and file, with no traceback."""
    receipt_of(tg, ev)
    built = build(tg, tmp_path / "mt", "model_training", 3)
    path, _, _ = _row(tg, built.build_id)
    Path(path).unlink()
    with pytest.raises(StoreError, match=f"cannot read the lineage of {built.build_id}"):
        tg.datasets.lineage(conversation_id="c1")
    base = ["--db", settings.db_url, "--key-file", str(settings.key_file), "lineage"]
    result = CliRunner().invoke(cli, [*base, "--conversation", "c1"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert f"cannot read the lineage of {built.build_id}" in result.stderr
    assert path in result.stderr and "Traceback" not in result.output


@pytest.mark.store
def test_a_build_failing_after_its_lineage_is_placed_takes_it_back(
    tg: Traingate, ev: Events, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure between placing the lineage file and renaming the directory leaves neither,
    no row, and no lineage directory that only it had made."""
    receipt_of(tg, ev)
    parent = tmp_path / "out"
    parent.mkdir()
    place = builder_module.place_lineage

    def place_then_fail(source: Path, destination: Path) -> None:
        place(source, destination)
        assert destination.is_file()
        raise OSError("disk gone")

    monkeypatch.setattr(builder_module, "place_lineage", place_then_fail)
    with pytest.raises(BuildError, match="disk gone"):
        build(tg, parent / "mt", "model_training", 3)
    assert list(parent.iterdir()) == []
    assert tg.store.db.execute("SELECT COUNT(*) FROM builds") == [(0,)]


@pytest.mark.store
def test_settling_forgets_a_build_killed_before_its_directory_appeared(
    tg: Traingate, ev: Events, tmp_path: Path
) -> None:
    """Killed with its lineage file placed but its directory not renamed: the row and the
    file go."""
    receipt_of(tg, ev)
    build_id, _ = _killed_after_rename(tg, tmp_path)
    path, _, _ = _row(tg, build_id)
    (tmp_path / "mt").rename(tmp_path / "elsewhere")
    tg.datasets.settle()
    assert tg.store.db.execute("SELECT COUNT(*) FROM builds") == [(0,)]
    assert not Path(path).exists() and not (tmp_path / LINEAGE_DIR).exists()


@pytest.mark.store
def test_settling_completes_only_a_build_whose_lineage_file_is_whole(
    tg: Traingate, ev: Events, tmp_path: Path
) -> None:
    """A pending build whose lineage file is not the one its row recorded is not completed."""
    receipt_of(tg, ev)
    build_id, _ = _killed_after_rename(tg, tmp_path)
    path, _, _ = _row(tg, build_id)
    Path(path).write_bytes(b"not the lineage")
    tg.datasets.settle()
    assert tg.store.db.execute("SELECT COUNT(*) FROM builds") == [(0,)]
    assert tg.datasets.lineage(conversation_id="c1").builds == ()


@pytest.mark.store
def test_builds_of_before_migration_14_are_read_beside_newer_ones(
    tg: Traingate, ev: Events, tmp_path: Path
) -> None:
    """A build recorded in build_items (no lineage file) and a build with its file answer
    together, oldest first, in lineage and in the privacy answer."""
    receipt_of(tg, ev)
    key = conversation_item_key(tg.keys.signing_key, "c1")
    record = conversation_record_id(tg.keys.signing_key, "c1", "opt_in")
    tg.store.db.execute(
        "INSERT INTO builds (build_id, built_at, purpose, as_of, policy_id, policy_sha256,"
        " engine, format, path, manifest_sha256, records, messages)"
        " VALUES ('build-old', 1, 'model_training', 7, 'consumer-2024', 'ab', 'duckdb',"
        " 'parquet', '/d', 'cd', 1, 4)"
    )
    tg.store.db.execute(
        "INSERT INTO build_items (build_id, item_key, record_id, kind, messages)"
        " VALUES (?, ?, ?, 'conversation', 4)",
        ("build-old", item_key_bytes(key), bytes.fromhex(record)),
    )
    new = build(tg, tmp_path / "mt", "model_training", 3)
    (old, newer) = tg.datasets.lineage(conversation_id="c1").builds
    assert (old.build.build_id, old.record_ids, old.messages) == ("build-old", (record,), 4)
    assert (newer.build.build_id, newer.messages) == (new.build_id, 1)
    answer = tg.privacy.answer(account_id="a", as_of=parse_instant(T(3))).to_dict()
    (c1,) = [c for c in answer["conversations"] if c["conversation_id"] == "c1"]
    assert c1["builds"]["model_training"] == ["build-old", new.build_id]
