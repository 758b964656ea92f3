"""Part files written on a worker thread (``BackgroundWriter``): the same bytes as written
inline, and the worker's errors raised in the caller's thread."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from traingate.build.records import RECORD_SCHEMA
from traingate.build.writer import BackgroundWriter, PartWriter


def _records(start: int, n: int) -> pa.RecordBatch:
    rows = [
        {
            "record_id": f"r{i:06d}",
            "kind": "conversation",
            "basis": "opt_in",
            "date": "2025-01-01",
            "messages": [{"role": "user", "content": f"text {i}", "attachments": []}],
            "custom_style": None,
            "preferences": None,
            "rating": None,
            "comment": None,
            "categories": None,
            "rated_message_index": None,
        }
        for i in range(start, start + n)
    ]
    return pa.RecordBatch.from_pylist(rows, schema=RECORD_SCHEMA)


@pytest.mark.parametrize("record_format", ["parquet", "jsonl"])
def test_background_writes_the_same_bytes(tmp_path: Path, record_format: str) -> None:
    batches = [_records(0, 3000), _records(3000, 0), _records(3000, 5000), _records(8000, 7)]
    inline_dir, background_dir = tmp_path / "inline" / "data", tmp_path / "background" / "data"
    inline_dir.mkdir(parents=True)
    background_dir.mkdir(parents=True)
    inline = PartWriter(inline_dir, format=record_format, rows_per_file=6000)  # type: ignore[arg-type]
    background = BackgroundWriter(
        PartWriter(background_dir, format=record_format, rows_per_file=6000),  # type: ignore[arg-type]
        depth=1,
    )
    for batch in batches:
        inline.write(batch)
        background.write(batch)
    assert inline.close() == background.close()
    names = sorted(p.name for p in inline_dir.iterdir())
    assert names == sorted(p.name for p in background_dir.iterdir()) and len(names) == 2
    for name in names:
        assert (inline_dir / name).read_bytes() == (background_dir / name).read_bytes()


def test_a_worker_error_reaches_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: PartWriter, batch: pa.RecordBatch) -> None:
        raise KeyboardInterrupt

    writer = BackgroundWriter(PartWriter(tmp_path, format="parquet"), depth=1)
    monkeypatch.setattr(PartWriter, "write", boom)
    writer.write(_records(0, 10))
    with pytest.raises(KeyboardInterrupt):
        for _ in range(5):  # raised by a later write, or by close
            writer.write(_records(0, 10))
        writer.close()
    writer.abort()
    assert not writer._thread.is_alive()


def test_abort_stops_the_worker(tmp_path: Path) -> None:
    writer = BackgroundWriter(PartWriter(tmp_path, format="parquet"))
    writer.write(_records(0, 10))
    writer.abort()
    assert not writer._thread.is_alive()
