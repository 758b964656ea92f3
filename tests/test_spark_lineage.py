"""A Spark build's lineage is written by Spark tasks as a directory of sorted, range-disjoint
files with an index (``engines/spark_lineage.py``, ``lineage_file.write_directory``): it
answers ``lineage`` and the privacy answer exactly as a DuckDB build of the same store; its
lookups equal one file's; settling and forgetting remove it; damage is a clear StoreError."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.factories import Events, jsonl
from tests.support import history
from traingate._core.timeutil import parse_instant
from traingate._datasets import lineage_file
from traingate._datasets.engines import spark_lineage
from traingate._datasets.lineage import forget_build
from traingate._datasets.lineage_file import (
    INDEX,
    SCHEMA,
    LineageRun,
    LineageSpool,
    find_items,
    lineage_digest,
    read_index,
    write_directory,
    write_lineage,
    write_run,
)
from traingate._datasets.records import LineageItem
from traingate._errors import StoreError
from traingate._facade import Traingate

T = Events.t
BUILD = "build-dir"


def _with_reports(seed: int) -> list[Any]:
    """test_spark's random history, and feedback reports on some of its messages."""
    events = history(seed=seed, conversations=30)
    e = Events(prefix=f"r{seed}-")
    gone = {ev.get("conversation_id") for ev in events if ev["type"] == "conversation.deleted"}
    gone |= {ev.get("account_id") for ev in events if ev["type"] == "account.deleted"}
    messages = [
        ev
        for ev in events
        if ev["type"] == "message.created" and not {ev["conversation_id"], ev["account_id"]} & gone
    ]
    reports = [
        e.feedback(f"fb{i}", m["account_id"], m["conversation_id"], m["message_id"], T(15, 1))
        for i, m in enumerate(messages[::4])
    ]
    return [*events, *reports]


def _row(tg: Traingate, build_id: str) -> tuple[str, str]:
    ((path, digest),) = tg.store.db.execute(
        "SELECT lineage_path, lineage_sha256 FROM builds WHERE build_id = ?", (build_id,)
    )
    return str(path), str(digest)


def _entries(answer: dict[str, Any], build_id: str) -> list[dict[str, Any]]:
    return [b["item"] for b in answer["builds"] if b["build_id"] == build_id]


@pytest.mark.store
@pytest.mark.spark
@pytest.mark.usefixtures("spark")  # the engine builds in the session-wide Spark session
def test_a_spark_builds_lineage_answers_as_a_duckdb_builds(
    tg: Traingate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same store built by both engines: the Spark build's lineage is a directory of
    several task-written files, and every conversation's and every receipt's lineage, and
    every account's privacy answer, name it exactly where they name the DuckDB build, with
    the same records and messages. Forgetting the build removes the directory."""
    monkeypatch.setattr(spark_lineage, "FILE_ROWS", 7)  # many files from a small build
    summary = tg.events.ingest(jsonl(_with_reports(seed=3)))
    assert summary.rejected == 0, summary.errors
    as_of = parse_instant(T(16))
    duck = tg.datasets.build(purpose="model_training", out=tmp_path / "duckdb", as_of=as_of)
    sparked = tg.datasets.build(
        purpose="model_training", out=tmp_path / "spark", as_of=as_of, engine="spark"
    )
    directory, digest = _row(tg, sparked.build_id)
    assert Path(directory) == tmp_path / lineage_file.LINEAGE_DIR / sparked.build_id
    runs = read_index(Path(directory), build_id=sparked.build_id)
    assert len(runs) > 3 and sum(run.rows for run in runs) == sparked.manifest["counts"]["records"]
    assert hashlib.sha256((Path(directory) / INDEX).read_bytes()).hexdigest() == digest
    assert Path(_row(tg, duck.build_id)[0]).is_file()

    conversations = sorted(
        {e["conversation_id"] for e in _with_reports(seed=3) if "conversation_id" in e}
    )
    held = 0
    for conversation in [*conversations, "never-seen"]:
        answer = tg.datasets.lineage(conversation_id=conversation).to_dict()
        assert _entries(answer, sparked.build_id) == _entries(answer, duck.build_id)
        held += bool(_entries(answer, duck.build_id))
    assert held > 5
    receipts = [receipt for _, _, receipt in summary.receipts]
    reported = 0
    for receipt in receipts:
        answer = tg.datasets.lineage(receipt=receipt).to_dict()
        assert _entries(answer, sparked.build_id) == _entries(answer, duck.build_id)
        reported += bool(_entries(answer, duck.build_id))
    assert receipts and reported > 0
    accounts = sorted({e["account_id"] for e in _with_reports(seed=3) if "account_id" in e})
    for account in accounts:
        report = tg.privacy.answer(account_id=account, as_of=as_of).to_dict()
        for conversation in report["conversations"]:
            for ids in conversation["builds"].values():
                assert (duck.build_id in ids) == (sparked.build_id in ids), conversation

    forget_build(tg.store.db, build_id=sparked.build_id)
    assert not Path(directory).exists() and Path(_row(tg, duck.build_id)[0]).is_file()


# -- the directory layout, without Spark ----------------------------------------------------------


def _items(keys: list[bytes], rng: random.Random) -> list[LineageItem]:
    return [
        LineageItem(
            item_key=key.hex() + "00" * 16,
            kind=rng.choice(["conversation", "feedback"]),
            record_id=rng.randbytes(32).hex(),
            messages=rng.randint(0, 9),
        )
        for key in keys
    ]


def _table(items: list[LineageItem]) -> pa.Table:
    return pa.table(
        {
            "item_key": [bytes.fromhex(i.item_key[:32]) for i in items],
            "record_id": [bytes.fromhex(i.record_id) for i in items],
            "kind": [i.kind for i in items],
            "messages": [i.messages for i in items],
        }
    ).cast(SCHEMA)


def _directory(
    root: Path, ranges: list[list[LineageItem]], extra: list[LineageItem], build_id: str = BUILD
) -> Path:
    """A lineage directory: one file per range (as tasks write them), the extra items as the
    builder's file, and the index."""
    directory = root / build_id
    directory.mkdir()
    runs: list[LineageRun] = []
    for index, items in enumerate(ranges):
        run = write_run(
            _table(items), path=directory / f"run-{index:05d}.parquet", build_id=build_id
        )
        if run is not None:
            runs.append(run)
    spool = LineageSpool(root / f"{build_id}.spool")
    spool.add(extra)
    write_directory(spool, directory=directory, build_id=build_id, runs=runs)
    spool.close()
    spool.path.unlink()
    return directory


@hypothesis_settings(max_examples=40, deadline=None)
@given(
    keys=st.lists(st.binary(min_size=1, max_size=1).map(lambda b: b + b"\0" * 15), max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=5),
    overlap=st.integers(0, 8),
    seed=st.integers(0, 2**16),
)
def test_directory_lookups_equal_one_files(
    keys: list[bytes], cuts: list[int], overlap: int, seed: int
) -> None:
    """The same items as one lineage file and as a directory (sorted ranges cut anywhere,
    even inside a run of equal keys, and builder items overlapping them): every key's lookup,
    those at the ranges' boundaries and absent ones included, is the same; tiny row groups."""
    import tempfile

    rng = random.Random(seed)
    items = _items(keys, rng)
    ordered = sorted(items, key=lambda i: (i.item_key, i.record_id))
    extra, ordered = ordered[:overlap], ordered[overlap:]
    rng.shuffle(extra)
    bounds = sorted({0, len(ordered), *(c for c in cuts if c <= len(ordered))})
    ranges = [ordered[a:b] for a, b in itertools.pairwise(bounds)]
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(lineage_file, "ROW_GROUP", 3)
        root = Path(tmp)
        single = root / "single.parquet"
        spool = LineageSpool(root / "single.spool")
        spool.add(items)
        write_lineage(spool, path=single, build_id=BUILD)
        directory = _directory(root, ranges, extra)
        asked = sorted({*keys, b"\0" * 16, b"\xff" * 16, b"\x7f" + b"\0" * 15})
        for key in asked:
            assert find_items(directory, build_id=BUILD, item_keys=[key]) == find_items(
                single, build_id=BUILD, item_keys=[key]
            )
        assert find_items(directory, build_id=BUILD, item_keys=asked) == find_items(
            single, build_id=BUILD, item_keys=asked
        )
        assert (
            lineage_digest(directory, build_id=BUILD)
            == hashlib.sha256((directory / INDEX).read_bytes()).hexdigest()
        )


def _sample(tmp_path: Path, build_id: str = BUILD) -> Path:
    rng = random.Random(5)
    items = sorted(_items([rng.randbytes(16) for _ in range(40)], rng), key=lambda i: i.item_key)
    return _directory(tmp_path, [items[:20], items[20:]], items[:3], build_id=build_id)


def test_a_damaged_lineage_directory_is_a_store_error(tmp_path: Path) -> None:
    """An index that is not JSON, another build's, naming a file outside the directory, or a
    file that is missing or not the build's: lookups raise StoreError naming the build, and
    settling's digest says the lineage does not stand."""
    directory = _sample(tmp_path)
    key = read_index(directory, build_id=BUILD)[0].first
    assert find_items(directory, build_id=BUILD, item_keys=[key])
    with pytest.raises(StoreError, match="not the lineage index of build-other"):
        find_items(directory, build_id="build-other", item_keys=[key])
    index = directory / INDEX
    good = index.read_bytes()
    data = json.loads(good)

    cases: list[tuple[bytes, str]] = [
        (b"{not json", "cannot read the lineage of build-dir"),
        (json.dumps({"build_id": BUILD}).encode(), "is damaged"),
        (json.dumps({**data, "files": [{**data["files"][0], "first": "zz"}]}).encode(), "damaged"),
        (
            json.dumps({**data, "files": [{**data["files"][0], "name": "../x.parquet"}]}).encode(),
            "names a file outside it",
        ),
    ]
    for damaged, message in cases:
        index.write_bytes(damaged)
        with pytest.raises(StoreError, match=message):
            find_items(directory, build_id=BUILD, item_keys=[key])
        assert lineage_digest(directory, build_id=BUILD) is None
    index.write_bytes(good)
    digest = lineage_digest(directory, build_id=BUILD)
    assert digest == hashlib.sha256(good).hexdigest()

    first = directory / read_index(directory, build_id=BUILD)[0].name
    whole = first.read_bytes()
    first.write_bytes(whole[: len(whole) // 2])  # truncated
    with pytest.raises(StoreError, match="lineage of build-dir"):
        find_items(directory, build_id=BUILD, item_keys=[key])
    assert lineage_digest(directory, build_id=BUILD) is None
    first.unlink()
    with pytest.raises(StoreError, match="cannot read the lineage of build-dir"):
        find_items(directory, build_id=BUILD, item_keys=[key])
    other = _sample(tmp_path, build_id="build-other")
    (other / first.name).replace(first)  # the same items, but another build's file
    with pytest.raises(StoreError, match=f"{first} is not the lineage of build-dir"):
        find_items(directory, build_id=BUILD, item_keys=[key])
    assert lineage_digest(directory, build_id=BUILD) is None  # its sha256 differs


def test_removing_a_lineage_directory(tmp_path: Path) -> None:
    """``remove_lineage`` takes a directory whole, and the lineage folder when it is left
    empty; another build's lineage keeps it."""
    folder = tmp_path / lineage_file.LINEAGE_DIR
    folder.mkdir()
    directory = _sample(folder)
    (folder / "build-y.parquet").write_bytes(b"x")
    lineage_file.remove_lineage(directory)
    assert not directory.exists() and folder.is_dir()
    lineage_file.remove_lineage(folder / "build-y.parquet")
    assert not folder.exists()
