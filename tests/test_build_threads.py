"""Parts written on several threads (``PartWriter(threads=N)``, the DuckDB engine's
``write_threads``): the same part names, boundaries and bytes for 1, 2 and 4 threads, in
both formats and every shape; a worker's error reaches the caller, and an aborted writer
leaves no thread running."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import Event, Events, jsonl
from tests.support import _records
from traingate._core.timeutil import parse_instant
from traingate._datasets.builder import build_dataset
from traingate._datasets.engines.base import BuildRequest
from traingate._datasets.engines.duckdb import DuckDBEngine
from traingate._datasets.shapes import as_shape
from traingate._datasets.writer import BackgroundWriter, Format, PartWriter, as_format
from traingate._errors import BuildError
from traingate._facade import Traingate
from traingate._settings import Settings

THREADS = (1, 2, 4)
T = Events.t
AS_OF = parse_instant(T(30))
_TEXTS = ["hi", "mail bob@example.org", "x@y.zz and z@w.io", "plain", "é@x.io ünï", "a\nb"]


def _history(seed: int, conversations: int) -> list[Event]:
    """Accounts that consent, some revoking later; conversations of one to six messages, some
    incognito or styled; feedback on some messages, with and without comments."""
    rng = random.Random(seed)
    e = Events(prefix=f"t{seed}-")
    accounts = [f"a{i}" for i in range(8)]
    events: list[Event] = []
    for account in accounts:
        events.append(e.account(account, T(0), rng.choice(["free", "pro", "max"])))
        events.append(e.consent(account, T(1), True))
        if rng.random() < 0.25:
            events.append(e.consent(account, T(rng.randint(10, 20)), False))
    for c in range(conversations):
        account, conversation = rng.choice(accounts), f"c{c:03d}"
        fields: dict[str, Any] = {}
        if rng.random() < 0.15:
            fields["incognito"] = True
        if rng.random() < 0.3:
            fields["custom_style"] = {"tone": rng.choice(_TEXTS)}
        events.append(e.conversation(conversation, account, T(2), **fields))
        for m in range(rng.randint(1, 6)):
            message = f"{conversation}-m{m}"
            events.append(
                e.message(
                    message,
                    conversation,
                    account,
                    T(3 + m, c),
                    role="user" if m % 2 == 0 else "assistant",
                    content=rng.choice(_TEXTS),
                )
            )
            if m % 2 == 1 and rng.random() < 0.4:
                comment = rng.choice([None, *_TEXTS])
                events.append(
                    e.feedback(
                        f"fb-{message}",
                        account,
                        conversation,
                        message,
                        T(9, c),
                        rating=rng.choice(["up", "down"]),
                        comment=comment,
                    )
                )
    return events


@pytest.fixture(scope="module")
def history_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traingate]:
    """One store of a random history (60 conversations, feedback included), for every build."""
    root = tmp_path_factory.mktemp("threads")
    settings = Settings(db_url=f"sqlite:///{root / 'db.sqlite'}", key_file=root / "k.json")
    with Traingate.open(settings) as tg:
        summary = tg.events.ingest(jsonl(_history(seed=11, conversations=60)))
        assert summary.rejected == 0, summary.errors
        yield tg


def _manifest_files(directory: Path) -> list[dict[str, Any]]:
    import json

    files: list[dict[str, Any]] = json.loads((directory / "manifest.json").read_text())["files"]
    return files


@pytest.mark.parametrize(
    ("rows_per_file", "shape", "record_format"),
    [
        (2, "records", "parquet"),
        (2, "openai", "jsonl"),
        (3, "chat", "parquet"),
        (3, "records", "jsonl"),
        (1000, "kto", "parquet"),
        (1000, "chat", "jsonl"),
    ],
)
def test_builds_on_any_number_of_threads_write_the_same_parts(
    history_store: Traingate, tmp_path: Path, rows_per_file: int, shape: str, record_format: str
) -> None:
    tg = history_store
    request = BuildRequest(policy=tg.policies, purpose="model_training", as_of=AS_OF)
    outputs = {}
    for threads in THREADS:
        out = tmp_path / f"threads-{threads}"
        build_dataset(
            store=tg.store, vault=tg.vault, keys=tg.keys, request=request,
            engine=DuckDBEngine(write_threads=threads), out=out, rows_per_file=rows_per_file,
            shape=as_shape(shape), format=as_format(record_format),
        )  # fmt: skip
        outputs[threads] = out
    files = _manifest_files(outputs[1])
    if rows_per_file < 1000:
        assert len(files) > 4 and all(f["rows"] == rows_per_file for f in files[:-1])
    assert files[-1]["rows"] <= rows_per_file
    for threads in THREADS[1:]:
        assert _manifest_files(outputs[threads]) == files
        names = sorted(p.name for p in (outputs[threads] / "data").iterdir())
        assert names == [Path(f["path"]).name for f in files]
        for entry in files:
            path = entry["path"]
            assert (outputs[threads] / path).read_bytes() == (outputs[1] / path).read_bytes()


def _write(directory: Path, batches: list[pa.RecordBatch], *, fmt: Format, **kw: Any) -> Any:
    directory.mkdir(parents=True)
    writer = BackgroundWriter(PartWriter(directory, format=fmt, **kw))
    for batch in batches:
        writer.write(batch)
    return writer.close()


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=70), max_size=6),
    rows_per_file=st.sampled_from([1, 2, 3, 17, 64]),
    fmt=st.sampled_from(["parquet", "jsonl"]),
)
def test_the_threads_cut_and_write_any_batches_as_one_writer(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], rows_per_file: int, fmt: Format
) -> None:
    """However the rows come in batches, 2 and 4 threads write the files of one."""
    root = tmp_path_factory.mktemp("parts")
    batches, start = [], 0
    for size in sizes:
        batches.append(_records(start, size))
        start += size
    one = _write(root / "1" / "data", batches, fmt=fmt, rows_per_file=rows_per_file)
    assert sum(f.rows for f in one) == start and len(one) == max(1, -(-start // rows_per_file))
    for threads in (2, 4):
        many = _write(root / str(threads) / "data", batches, fmt=fmt, rows_per_file=rows_per_file,
                      threads=threads)  # fmt: skip
        assert many == one
        for entry in one:
            name = Path(entry.path).name
            mine, theirs = root / str(threads) / "data" / name, root / "1" / "data" / name
            assert mine.read_bytes() == theirs.read_bytes()


def _part_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("traingate-part_")]


def test_a_part_that_fails_on_a_thread_fails_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import traingate._datasets.writer as writer_module

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(writer_module, "write_part", boom)
    writer = PartWriter(tmp_path, format="parquet", rows_per_file=5, threads=2)
    with pytest.raises(OSError, match="disk full"):
        for _ in range(4):  # raised when the writer waits for a part: a later write, or close
            writer.write(_records(0, 10))
        writer.close()
    writer.abort()
    assert not _part_threads()


def test_abort_waits_for_the_parts_being_written(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, format="jsonl", rows_per_file=100, threads=4)
    writer.write(_records(0, 450))
    writer.abort()
    assert not _part_threads()
    # Parts a thread had begun are whole once abort returns (the caller removes them); parts
    # still queued are cancelled, so how many exist depends on the threads' start.
    parts = sorted(tmp_path.iterdir())
    assert len(parts) <= 4
    assert [len(part.read_text().splitlines()) for part in parts] == [100] * len(parts)


def test_parts_are_adopted_only_between_parts(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, format="parquet", rows_per_file=10, threads=2)
    writer.write(_records(0, 3))  # a part begun: nothing may come before its end
    with pytest.raises(BuildError, match="cannot be adopted"):
        writer.adopt(_write(tmp_path / "other", [_records(0, 10)], fmt="parquet", rows_per_file=10))
    writer.abort()


def test_threads_must_be_at_least_one(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="at least 1"):
        PartWriter(tmp_path, format="parquet", threads=0)
