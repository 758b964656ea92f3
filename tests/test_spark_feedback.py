"""Feedback records of a Spark build are made in Spark tasks (``engines/spark_feedback.py``):
the driver stages the vault's rows still encrypted, tasks decrypt, decide and make the
records, and they join the part writing after the conversation rows. The build equals the
DuckDB build, whose builder makes them from the vault: the same manifest (but the engine),
the same part files byte for byte, the same lineage answers per receipt; with reports
included, excluded by mode and for want of a comment, expired, and purged; in every shape.
A key ring that does not open the vault fails the build with the vault's own error.

The Spark session is ``test_spark``'s (one local[2] session for the test session).
"""

from __future__ import annotations

import dataclasses
import json
import random
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.factories import Event, Events, jsonl
from tests.support import _engine, _manifest, history
from traingate._core.timeutil import parse_instant
from traingate._datasets.builder import BuildResult, build_dataset
from traingate._datasets.engines import spark_feedback
from traingate._datasets.engines.base import BuildRequest
from traingate._datasets.engines.duckdb import DuckDBEngine
from traingate._datasets.shapes import as_shape
from traingate._errors import StoreError
from traingate._facade import Traingate
from traingate._keys import MasterKey
from traingate._settings import Settings
from traingate._store.store import Store
from traingate._vault.vault import Vault

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark
T = Events.t
MECHANISMS = Path(__file__).parent / "policies" / "mechanisms.toml"
# consumer-2025 decides reports submitted before day 17 (five years, no incognito report),
# test-mechanisms those after (a comment needed, one year, no temporary report).
POLICIES = f"consumer-2025@2024-01-01T00:00:00Z,{MECHANISMS}@{T(17)}"
COMMENTS = [None, "", "  ", "ok", "write to a@b.cc", "é ü"]


def reported_history(seed: int) -> list[Event]:
    """``test_spark.history`` with a report on about half of the messages of conversations
    that are not deleted, before and after the policies' change, with and without comment."""
    events = history(seed=seed, conversations=50)
    rng = random.Random(seed)
    gone = {e["conversation_id"] for e in events if e["type"] == "conversation.deleted"}
    gone_accounts = {e["account_id"] for e in events if e["type"] == "account.deleted"}
    e = Events(prefix=f"r{seed}-")
    reports: list[Event] = []
    for event in events:
        if event["type"] != "message.created" or event["conversation_id"] in gone:
            continue
        if event["account_id"] in gone_accounts or rng.random() < 0.4:
            continue
        reports.append(
            e.feedback(
                f"fb-{event['message_id']}", event["account_id"], event["conversation_id"],
                event["message_id"], T(rng.choice([16, 18, 19])),
                rating=rng.choice(["up", "down"]), comment=rng.choice(COMMENTS),
                categories=rng.choice([[], ["unsafe"], ["wrong", "other"]]),
            )
        )  # fmt: skip
    return [*events, *reports]


def _open(tmp_path: Path, db_url: str | None = None) -> Traingate:
    url = db_url or f"sqlite:///{tmp_path / 'db.sqlite'}"
    settings = Settings(db_url=url, key_file=tmp_path / "keys.json", policy=POLICIES)
    return Traingate.open(settings)


def _ingest(tg: Traingate, seed: int) -> list[str]:
    summary = tg.events.ingest(jsonl(reported_history(seed)))
    assert summary.rejected == 0, summary.errors
    return [receipt for _, _, receipt in summary.receipts]


def _build(
    tg: Traingate, engine: Any, out: Path, *, as_of: int, shape: str = "records", **kw: Any
) -> BuildResult:
    request = BuildRequest(policy=tg.policies, purpose="model_training", as_of=as_of)
    return build_dataset(
        store=kw.get("store", tg.store), vault=kw.get("vault", tg.vault), keys=tg.keys,
        request=request, engine=engine, out=out, rows_per_file=5, shape=as_shape(shape),
    )  # fmt: skip


def _same_builds(tmp_path: Path, built: dict[str, BuildResult]) -> dict[str, Any]:
    """The two builds' manifests (but the engine) and part files are equal; the manifest."""
    files = built["duckdb"].manifest["files"]
    assert built["spark"].manifest["files"] == files
    manifests = [_manifest(tmp_path / name) for name in ("spark", "duckdb")]
    for manifest in manifests:
        manifest.pop("documents", None)  # the documents name the engine
    assert manifests[0] == manifests[1]
    for entry in files:
        path = entry["path"]
        assert (tmp_path / "spark" / path).read_bytes() == (tmp_path / "duckdb" / path).read_bytes()
    return manifests[0]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seven reports per task output row: a task's range makes several rows."""
    monkeypatch.setattr(spark_feedback, "_REPORTS_PER_BATCH", 7)


@pytest.mark.store
@pytest.mark.usefixtures("small_batches")
def test_spark_feedback_equals_duckdb(
    tmp_path: Path,
    db_url: str,
    spark: SparkSession,
) -> None:
    """Many reports, on both backends: the same parts, manifest and lineage per receipt."""
    with _open(tmp_path, db_url) as tg:
        receipts = _ingest(tg, seed=3)
        assert len(receipts) > 40
        as_of = parse_instant(T(30))
        built = {
            name: _build(tg, engine, tmp_path / name, as_of=as_of)
            for name, engine in (("duckdb", DuckDBEngine()), ("spark", _engine(spark)))
        }
        manifest = _same_builds(tmp_path, built)
        reports = manifest["exclusions"]["reports"]
        assert reports["considered"] == len(receipts)
        assert {"feedback_without_comment", "mode_excluded"} <= set(reports["by_reason"])
        assert manifest["counts"]["by_kind"]["feedback"]["records"] > 10
        answers = {"spark": 0, "duckdb": 0}
        for receipt in receipts:
            entries = {e.build.engine: e for e in tg.datasets.lineage(receipt=receipt).builds}
            assert set(entries) in ({"spark", "duckdb"}, set())
            if entries:
                assert entries["spark"].record_ids == entries["duckdb"].record_ids
                assert entries["spark"].messages == entries["duckdb"].messages
                answers = {name: n + 1 for name, n in answers.items()}
        assert answers["spark"] == manifest["counts"]["by_kind"]["feedback"]["records"]


@pytest.mark.parametrize("shape", ["kto", "chat"])
def test_spark_feedback_in_a_shape(tmp_path: Path, spark: SparkSession, shape: str) -> None:
    """The shape is applied to the feedback records in the tasks as the builder applies it
    (kto: a row per rated report, the others left out and counted)."""
    with _open(tmp_path) as tg:
        _ingest(tg, seed=5)
        as_of = parse_instant(T(30))
        built = {
            name: _build(tg, engine, tmp_path / name, as_of=as_of, shape=shape)
            for name, engine in (("duckdb", DuckDBEngine()), ("spark", _engine(spark)))
        }
        manifest = _same_builds(tmp_path, built)
        assert manifest["shape"]["name"] == shape
        assert manifest["counts"]["by_kind"]["feedback"]["records"] > 5


@pytest.mark.usefixtures("small_batches")
def test_spark_feedback_after_expiry_and_purge(tmp_path: Path, spark: SparkSession) -> None:
    """A year and more later the reports test-mechanisms decided have expired: a build
    before the purge leaves them out, and after it their vault rows are gone; then every
    conversation deleted and purged: a build with no message left, its feedback records
    alone. Spark equals DuckDB each time."""
    with _open(tmp_path) as tg:
        receipts = _ingest(tg, seed=9)
        later = parse_instant(T(400))
        counts = []
        for step in ("expired", "purged", "no_messages"):
            if step == "purged":
                tg.retention.purge(as_of=later)
            if step == "no_messages":
                e = Events(prefix="del-")
                owners = {
                    row[0]: row[1]
                    for row in tg.store.db.execute(
                        "SELECT conversation_id, account_id FROM conversations"
                    )
                }
                deletions = [e.conversation_deleted(c, a, T(300)) for c, a in owners.items()]
                summary = tg.events.ingest(jsonl(deletions))
                assert summary.rejected == 0, summary.errors
                tg.retention.purge(as_of=later)
            out = tmp_path / step
            built = {
                name: _build(tg, engine, out / name, as_of=later)
                for name, engine in (("duckdb", DuckDBEngine()), ("spark", _engine(spark)))
            }
            manifest = _same_builds(out, built)
            counts.append(
                (manifest["exclusions"]["reports"]["considered"], manifest["counts"]["by_kind"])
            )
        (expired, kinds), (purged, _), (alone, last) = counts
        assert 0 < expired < len(receipts)  # the expired ones are not even usable
        assert purged == expired and alone == expired
        assert kinds["feedback"]["records"] > 0
        assert last.get("conversation", {}).get("records", 0) == 0
        assert last["feedback"] == kinds["feedback"]


def test_a_key_ring_that_does_not_open_the_vault(tmp_path: Path, spark: SparkSession) -> None:
    """A master key of the same id but other bytes (a wrong key file): both engines fail the
    build with the vault's error naming the report and the key, and write nothing."""
    with _open(tmp_path) as tg:
        _ingest(tg, seed=5)
        master = tg.keys.active_master
        wrong = dataclasses.replace(
            tg.keys,
            master_keys=(MasterKey(id=master.id, key=secrets.token_bytes(32), created="x"),),
        )
        store = Store(tg.store.db, keys=wrong)
        vault = Vault(tg.store.db, keys=wrong, policy=tg.policies)
        for name, engine in (("duckdb", DuckDBEngine()), ("spark", _engine(spark))):
            with pytest.raises(StoreError, match=f"does not unwrap under master key {master.id}"):
                _build(
                    tg, engine, tmp_path / name, as_of=parse_instant(T(30)), store=store,
                    vault=vault,
                )  # fmt: skip
            assert not (tmp_path / name).exists()
        assert json.dumps([p.name for p in tmp_path.iterdir() if p.name.startswith(".")]) == "[]"
