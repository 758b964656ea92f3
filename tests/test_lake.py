"""The message lake (docs/lake.md): the export's layout and rows, builds reading a lake equal to
builds reading the store (records and manifest, on both backends and under a policy set),
lake messages the store cannot vouch for (unknown conversation, another account's) excluded
as unknown_account, partitions after as-of never read, malformed lakes refused. DuckDB only:
the Spark engine's lake builds are in test_spark.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.factories import Events
from tests.support import AS_OF, ingest, read_dataset, scenario
from traingate._cli import cli
from traingate._core.timeutil import parse_instant
from traingate._datasets.engines.base import BuildRequest
from traingate._datasets.engines.duckdb import DuckDBEngine
from traingate._datasets.lake import LAKE_SCHEMA, ParquetLake, message_source, write_lake
from traingate._errors import BuildError
from traingate._facade import Traingate
from traingate._settings import Settings
from traingate._store.export import open_reader

T = Events.t


def _manifest(result: Any) -> dict[str, Any]:
    return dict(result.manifest)


def _lake_rows(root: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(root.glob("date=*/*.parquet")):
        table = pq.read_table(path)
        assert table.schema.equals(LAKE_SCHEMA), path
        day = path.parent.name.removeprefix("date=")
        for row in table.to_pylist():
            assert row["at"].date().isoformat() == day
            rows.append(row)
    return rows


@pytest.mark.store
def test_export_writes_every_message_by_date(tg: Traingate, ev: Events, tmp_path: Path) -> None:
    ingest(tg, scenario(ev))
    result = tg.datasets.export_lake(out=tmp_path / "lake")
    assert result.to_dict() == {
        "path": str(tmp_path / "lake"),
        "messages": 10,
        "partitions": 6,
        "files": 6,
    }
    rows = _lake_rows(tmp_path / "lake")
    assert sorted(r["message_id"] for r in rows) == sorted(
        row[0] for row in tg.store.db.execute("SELECT message_id FROM messages")
    )
    first = next(r for r in rows if r["message_id"] == "m-a1")
    assert first["attachments"][1] == {
        "attachment_id": "att-2",
        "source": "google_drive",
        "name": "Plan.docx",
        "content": "drive text",
    }
    assert first["conversation_id"] == "conv-alice-1" and first["account_id"] == "alice"
    # seq is the store's arrival order
    seqs = {r["message_id"]: r["seq"] for r in rows}
    assert seqs["m-a1"] < seqs["m-a2"] < seqs["m-a4"] < seqs["m-a3"]
    # the export is audited, and never writes into an existing directory
    assert list(tg.audit.log.entries())[-1].action == "lake.export"
    with pytest.raises(BuildError, match="already exists"):
        tg.datasets.export_lake(out=tmp_path / "lake")
    cut = tg.datasets.export_lake(out=tmp_path / "early", as_of=parse_instant(T(3)))
    assert cut.messages == 5


@pytest.mark.store
@pytest.mark.parametrize("purpose", ["model_training", "safety_model_training"])
def test_lake_build_equals_store_build(
    tg: Traingate, ev: Events, tmp_path: Path, purpose: str
) -> None:
    ingest(tg, scenario(ev))
    tg.datasets.export_lake(out=tmp_path / "lake")
    as_of = parse_instant(AS_OF)
    store = tg.datasets.build(purpose=purpose, out=tmp_path / "store", as_of=as_of)
    lake = tg.datasets.build(
        purpose=purpose,
        out=tmp_path / "lake-build",
        as_of=as_of,
        messages=f"parquet:{tmp_path}/lake",
    )
    assert read_dataset(tmp_path / "lake-build") == read_dataset(tmp_path / "store")
    assert _manifest(lake) == _manifest(store)  # the same bytes, the same signature
    entry = list(tg.audit.log.entries())[-1]
    assert entry.action == "dataset.build"
    assert json.loads(entry.details)["messages"] == f"parquet:{tmp_path}/lake"


def test_lake_build_under_a_policy_set_and_small_batches(tmp_path: Path) -> None:
    """Two policies in force (the lake counts messages per policy for the manifest), incognito
    conversations, and batches cut every few messages."""
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        key_file=tmp_path / "keys.json",
        policy="consumer-2024,consumer-2025@2024-01-05T00:00:00Z",
    )
    e = Events()
    with Traingate.open(settings) as tg:
        ingest(tg, [*scenario(e), e.conversation("conv-inc", "alice", T(12), incognito=True),
                    e.message("m-i1", "conv-inc", "alice", T(12)),
                    e.message("m-i2", "conv-inc", "alice", T(12), role="assistant")])  # fmt: skip
        tg.datasets.export_lake(out=tmp_path / "lake")
        as_of = parse_instant(AS_OF)
        store = tg.datasets.build(purpose="model_training", out=tmp_path / "a", as_of=as_of)
        lake = tg.datasets.build(
            purpose="model_training", out=tmp_path / "b", as_of=as_of,
            messages=f"parquet:{tmp_path}/lake",
        )  # fmt: skip
        assert _manifest(lake) == _manifest(store)
        request = BuildRequest(
            policy=tg.policies, purpose="model_training", as_of=as_of,
            messages=message_source(f"parquet:{tmp_path}/lake"), keep_decisions=True,
        )  # fmt: skip
        with open_reader(tg.store.db) as reader:
            batches = list(
                DuckDBEngine(batch_messages=2).run(request=request, source=reader, store=tg.store)
            )
    assert len(batches) > 4
    reasons: dict[str, list[tuple[str | None, int]]] = {}
    for batch in batches:
        assert batch.decisions is not None
        for row in batch.decisions.to_pylist():
            reasons.setdefault(row["conversation_id"], []).append((row["reason"], row["policy"]))
    # consumer-2025: incognito chats are excluded by every basis (SPEC §5 exclude_modes)
    assert reasons["conv-inc"] == [("mode_excluded", 1), ("mode_excluded", 1)]
    assert reasons["conv-carol"] == [(None, 0), (None, 1)]  # either side of its date
    records = [r for b in batches for r in b.records.to_pylist()]
    assert [r["conversation_id"] for r in records] == ["conv-alice-1", "conv-carol"]


def _extra_rows(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=LAKE_SCHEMA)


def _message(**fields: Any) -> dict[str, Any]:
    import datetime as dt

    at = dt.datetime.fromisoformat(fields.pop("at").replace("Z", "+00:00"))
    return {"seq": 1_000_000, "role": "user", "content": "hi", "attachments": [], "at": at,
            **fields}  # fmt: skip


def test_messages_the_store_cannot_vouch_for_are_unknown_accounts(
    tmp_path: Path, ev: Events
) -> None:
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'db.sqlite'}", key_file=tmp_path / "k.json")
    with Traingate.open(settings) as tg:
        ingest(tg, scenario(ev))
        lake = tmp_path / "lake"
        tg.datasets.export_lake(out=lake)
        extra = [
            # a conversation the store never heard of
            _message(conversation_id="conv-ghost", message_id="g1", account_id="alice", at=T(12)),
            # carol's conversation, claimed by another account in the lake
            _message(
                conversation_id="conv-carol",
                message_id="x1",
                account_id="mallory",
                at=T(4, 30),
                content="not carol's",
            ),
            # after as-of: does not exist for the build
            _message(
                conversation_id="conv-alice-1",
                message_id="late",
                account_id="alice",
                at=T(20, 3_600),
            ),
        ]
        for row in extra:
            day = lake / f"date={row['at'].date().isoformat()}"
            day.mkdir(exist_ok=True)
            pq.write_table(_extra_rows([row]), day / f"part-{row['message_id']}.parquet")
        # a partition after as-of's date is not even opened
        (lake / "date=2024-02-01").mkdir()
        (lake / "date=2024-02-01" / "part-0.parquet").write_text("not parquet")
        as_of = parse_instant(AS_OF)
        store = tg.datasets.build(purpose="model_training", out=tmp_path / "a", as_of=as_of)
        built = tg.datasets.build(
            purpose="model_training", out=tmp_path / "b", as_of=as_of, messages=f"parquet:{lake}"
        )
    assert read_dataset(tmp_path / "b") == read_dataset(tmp_path / "a")
    excluded = built.manifest["exclusions"]["messages"]
    assert excluded["considered"] == store.manifest["exclusions"]["messages"]["considered"] + 2
    assert excluded["by_reason"]["unknown_account"] == 3  # erin's, the ghost's, mallory's


def test_malformed_lakes_are_refused(tmp_path: Path) -> None:
    as_of = parse_instant(AS_OF)
    with pytest.raises(BuildError, match="not a directory"):
        ParquetLake(root=tmp_path / "missing").files(as_of=as_of)
    (tmp_path / "odd" / "day=2024-01-01").mkdir(parents=True)
    with pytest.raises(BuildError, match="date=YYYY-MM-DD"):
        ParquetLake(root=tmp_path / "odd").files(as_of=as_of)
    bad = tmp_path / "bad" / "date=2024-01-01"
    bad.mkdir(parents=True)
    pq.write_table(
        pa.table({"conversation_id": ["c"], "message_id": ["m"]}), bad / "part-0.parquet"
    )
    with pytest.raises(BuildError, match="'account_id' is missing"):
        ParquetLake(root=tmp_path / "bad").files(as_of=as_of)
    with pytest.raises(BuildError, match="parquet:PATH"):
        message_source("s3:bucket/lake")


def test_write_lake_refuses_an_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    with pytest.raises(FileExistsError):
        write_lake([], tmp_path / "lake")


def test_cli_lake_export_and_build(tmp_path: Path, ev: Events) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    base = ["--db", db, "--key-file", str(tmp_path / "keys.json")]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in scenario(ev)))
    runner = CliRunner()
    assert runner.invoke(cli, [*base, "ingest", str(events)]).exit_code == 0
    exported = runner.invoke(cli, [*base, "lake", "export", "--out", str(tmp_path / "lake")])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["messages"] == 10
    built = runner.invoke(
        cli,
        [*base, "dataset", "build", "--purpose", "model_training", "--as-of", AS_OF,
         "--out", str(tmp_path / "ds"), "--messages", f"parquet:{tmp_path / 'lake'}"],
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    assert json.loads(built.output)["counts"]["records"] == 3
    refused = runner.invoke(
        cli,
        [*base, "dataset", "build", "--purpose", "model_training", "--engine", "scalar",
         "--out", str(tmp_path / "ds2"), "--messages", f"parquet:{tmp_path / 'lake'}"],
    )  # fmt: skip
    assert refused.exit_code != 0
    assert "scalar engine reads the store's messages only" in refused.output
