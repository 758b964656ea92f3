"""The Spark engine gives the DuckDB engine's answer: the same decision for every message, the
same records in the same order, the same part files and manifest (only ``engine`` and the
signature over it differ), from the store on both backends and from a lake.

Spark is slow to start: one local[2] session serves the whole test session (``spark``, in
conftest.py), and
the tests are few. Select them with ``-m spark``; they run in CI (Java 17 comes from
``.ci/run``), and are skipped elsewhere when Java or PySpark is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from tests.factories import Events, jsonl
from tests.support import (
    AS_OF,
    _engine,
    _manifest,
    history,
    ingest,
    read_dataset,
    run_engine,
    scenario,
)
from traingate._cli import cli
from traingate._core.timeutil import parse_instant
from traingate._facade import Traingate
from traingate._settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark
T = Events.t


@pytest.mark.store
def test_spark_equals_duckdb_on_the_scenario(
    tg: Traingate, ev: Events, tmp_path: Path, spark: SparkSession
) -> None:
    """Whole builds through the facade: the same records, part files and manifest."""
    ingest(tg, scenario(ev))
    as_of = parse_instant(AS_OF)
    tg.datasets.build(purpose="model_training", out=tmp_path / "duckdb", as_of=as_of)
    tg.datasets.build(purpose="model_training", out=tmp_path / "spark", as_of=as_of, engine="spark")
    assert read_dataset(tmp_path / "spark") == read_dataset(tmp_path / "duckdb")
    assert _manifest(tmp_path / "spark") == _manifest(tmp_path / "duckdb")
    assert json.loads((tmp_path / "spark" / "manifest.json").read_text())["engine"] == "spark"


def test_spark_equals_duckdb_message_by_message(tmp_path: Path, spark: SparkSession) -> None:
    """A random history under two policies in force: every message's decision (basis or
    first reason, and the deciding policy), every record and the tallies are equal."""
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        key_file=tmp_path / "keys.json",
        policy="consumer-2024,consumer-2025@2024-01-09T00:00:00Z",
    )
    with Traingate.open(settings) as tg:
        summary = tg.events.ingest(jsonl(history(seed=7)))
        assert summary.rejected == 0, summary.errors
        as_of = parse_instant(T(16))
        for purpose in ("model_training", "safety_review"):
            duck = run_engine(tg, purpose=purpose, as_of=as_of)
            sparked = run_engine(tg, purpose=purpose, as_of=as_of, engine=_engine(spark))
            assert len(duck.decisions) > 100
            assert sparked.decisions == duck.decisions
            assert sparked.records == duck.records
            assert sparked.messages == duck.messages
            assert duck.records, f"{purpose}: the history should grant something"


def test_policy_diff_on_spark_equals_duckdb(tmp_path: Path, spark: SparkSession) -> None:
    """``policy diff --engine spark``: the same records entering, leaving and changing, with
    the same rules on both sides, as the DuckDB engine, for two purposes (the scalar
    evaluator gives the reasons; the engine decides which items)."""
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'db.sqlite'}", key_file=tmp_path / "k.json")
    later = "consumer-2024,consumer-2025@2024-01-09T00:00:00Z"
    with Traingate.open(settings) as tg:
        summary = tg.events.ingest(jsonl(history(seed=7)))
        assert summary.rejected == 0, summary.errors
        as_of = parse_instant(T(16))
        kept = ["model_training", "safety_review"]  # each purpose is two builds
        duck = tg.datasets.policy_diff(a="consumer-2024", b=later, as_of=as_of, purposes=kept)
        sparked = tg.datasets.policy_diff(
            a="consumer-2024", b=later, as_of=as_of, purposes=kept, engine="spark"
        )
        assert sparked.to_dict() == duck.to_dict()
        assert (
            sparked.to_dict()
            == tg.datasets.policy_diff(
                a="consumer-2024", b=later, as_of=as_of, purposes=kept, engine="scalar"
            ).to_dict()
        )
        # consumer-2025 covers by conversation (SPEC §5): two records enter that no_consent
        # kept out under consumer-2024, besides the seven that its incognito exclusion changes.
        assert [len(p.records) for p in duck.purposes] == [9, 1]


def test_spark_reads_a_lake(tmp_path: Path, ev: Events, spark: SparkSession) -> None:
    """``--engine spark --messages parquet:PATH`` from the command line: the store build's
    records and manifest; a lake message of an unknown conversation or of another account is
    excluded as unknown_account, as the DuckDB engine does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from traingate._datasets.lake import LAKE_SCHEMA

    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    base = ["--db", db, "--key-file", str(tmp_path / "keys.json")]
    settings = Settings(db_url=db, key_file=tmp_path / "keys.json")
    with Traingate.open(settings) as tg:
        ingest(tg, scenario(ev))
        tg.datasets.export_lake(out=tmp_path / "lake")
    import datetime as dt

    at = dt.datetime(2024, 1, 5, 12, 0, 30, tzinfo=dt.UTC)
    strays = [
        {"conversation_id": cid, "message_id": mid, "account_id": account, "role": "user",
         "at": at, "seq": 99, "content": "stray", "attachments": []}
        for cid, mid, account in (("conv-ghost", "g1", "alice"), ("conv-carol", "x1", "eve"))
    ]  # fmt: skip
    pq.write_table(
        pa.Table.from_pylist(strays, schema=LAKE_SCHEMA),
        tmp_path / "lake" / "date=2024-01-05" / "part-strays.parquet",
    )
    runner = CliRunner()
    outputs = {}
    for engine in ("duckdb", "spark"):
        result = runner.invoke(
            cli,
            [*base, "dataset", "build", "--purpose", "model_training", "--as-of", AS_OF,
             "--out", str(tmp_path / engine), "--engine", engine,
             "--messages", f"parquet:{tmp_path / 'lake'}"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs[engine] = json.loads(result.output)
    assert read_dataset(tmp_path / "spark") == read_dataset(tmp_path / "duckdb")
    assert _manifest(tmp_path / "spark") == _manifest(tmp_path / "duckdb")
    excluded = outputs["spark"]["exclusions"]["messages"]
    assert excluded["considered"] == 12
    assert excluded["by_reason"]["unknown_account"] == 3  # erin's, the ghost's, eve's
    assert outputs["spark"]["counts"]["records"] == 3
    assert spark.range(3).count() == 3  # the builds used the running session, and left it
    # ... with its SQL configuration as it was (the engine's query settings put back)
    assert spark.conf.get("spark.sql.execution.arrow.maxBytesPerBatch", None) is None


def test_the_engines_query_settings_are_put_back(spark: SparkSession) -> None:
    """``spark._settings`` sets the engine's query settings for a build, then restores each
    as it was: a set value to that value, an unset one unset."""
    from traingate._datasets.engines.spark import _settings

    size, records = "spark.sql.execution.arrow.maxBytesPerBatch", "spark.sql.shuffle.partitions"
    assert spark.conf.get(size, None) is None
    with _settings(spark, {size: "2147483647", records: "5"}):
        assert spark.conf.get(size) == "2147483647"
        assert spark.conf.get(records) == "5"
    assert spark.conf.get(size, None) is None
    assert spark.conf.get(records) == "2"  # the session's own (the fixture's)


def test_a_task_freezes_what_the_worker_holds_and_keeps_nothing_of_its_own(
    spark: SparkSession,
) -> None:
    """Every function the engine's tasks run freezes the worker's objects first
    (``engines/spark_worker.task``), so PySpark's collection after each task walks only the
    task's own objects; the frozen count stays level from task to task (a task's objects are
    still freed, none kept)."""
    import gc
    import os

    from traingate._datasets.engines.spark_worker import task

    frozen = task(lambda rows: [(os.getpid(), gc.get_freeze_count()) for _ in rows])
    one = spark.sparkContext.parallelize([0], 1)
    seen: dict[int, list[int]] = {}
    for _ in range(6):
        ((pid, count),) = one.mapPartitions(frozen).collect()
        seen.setdefault(pid, []).append(count)
    assert min(min(counts) for counts in seen.values()) > 1_000, seen  # pyspark's, at least
    level = [counts[1:] for counts in seen.values() if len(counts) >= 3]
    assert level, f"no worker ran three of the six tasks: {seen}"
    for counts in level:
        assert max(counts) - min(counts) < 50, seen


@pytest.mark.parametrize(
    ("rows_per_file", "shape"), [(2, "records"), (3, "chat"), (1000, "records")]
)
def test_spark_tasks_write_the_parts_the_builder_would(
    tmp_path: Path, spark: SparkSession, rows_per_file: int, shape: str
) -> None:
    """The Spark tasks write the conversation records' parts themselves (whole parts where
    one partition holds them, parts shared by neighbouring partitions assembled from their
    pieces, the last one left to the builder with the feedback records after it): the same
    files, byte for byte, as the DuckDB build, whose parts the builder writes."""
    from traingate._datasets.builder import build_dataset
    from traingate._datasets.engines.base import BuildRequest
    from traingate._datasets.engines.duckdb import DuckDBEngine
    from traingate._datasets.shapes import as_shape

    settings = Settings(db_url=f"sqlite:///{tmp_path / 'db.sqlite'}", key_file=tmp_path / "k.json")
    with Traingate.open(settings) as tg:
        summary = tg.events.ingest(jsonl(history(seed=11, conversations=60)))
        assert summary.rejected == 0, summary.errors
        request = BuildRequest(policy=tg.policies, purpose="model_training", as_of=T_AS_OF)
        built = {}
        for name, engine in (("duckdb", DuckDBEngine()), ("spark", _engine(spark))):
            built[name] = build_dataset(
                store=tg.store, vault=tg.vault, keys=tg.keys, request=request, engine=engine,
                out=tmp_path / name, rows_per_file=rows_per_file, shape=as_shape(shape),
            )  # fmt: skip
    files = built["duckdb"].manifest["files"]
    assert built["spark"].manifest["files"] == files
    spark_manifest, duckdb_manifest = _manifest(tmp_path / "spark"), _manifest(tmp_path / "duckdb")
    for manifest in (spark_manifest, duckdb_manifest):  # the documents name the engine
        manifest.pop("documents", None)
    assert spark_manifest == duckdb_manifest
    if rows_per_file < 1000:
        assert len(files) > 3 and all(f["rows"] == rows_per_file for f in files[:-1])
    for entry in files:
        path = entry["path"]
        assert (tmp_path / "spark" / path).read_bytes() == (tmp_path / "duckdb" / path).read_bytes()


T_AS_OF = parse_instant(T(16))
