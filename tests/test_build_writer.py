"""Part files written on a worker thread (``BackgroundWriter``): the same bytes as written
inline, and the worker's errors raised in the caller's thread; parts written apart (where the
records are made, their boundaries from a prefix sum) are the parts written in one go."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import _records
from traingate._datasets.records import RECORD_SCHEMA
from traingate._datasets.writer import (
    BackgroundWriter,
    Format,
    PartWriter,
    part_name,
    part_pieces,
    write_part,
)
from traingate._errors import BuildError


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


@given(
    counts=st.lists(st.integers(min_value=0, max_value=40), max_size=8),
    rows_per_file=st.integers(min_value=1, max_value=17),
)
def test_pieces_cut_every_workers_rows_at_the_same_boundaries(
    counts: list[int], rows_per_file: int
) -> None:
    """Workers holding consecutive rows (starts: a prefix sum of their counts) cut them into
    pieces whose parts and boundaries are those of one writer holding them all: every row in
    exactly one piece, part p from row p * rows_per_file, a piece whole iff it is all of a
    full part."""
    start, parts = 0, {}
    for count in counts:
        pieces = part_pieces(start=start, count=count, rows_per_file=rows_per_file)
        assert [p.begin for p in pieces] == [0, *(p.end for p in pieces[:-1])][: len(pieces)]
        assert (pieces[-1].end if pieces else 0) == count
        for piece in pieces:
            rows = range(start + piece.begin, start + piece.end)
            assert all(row // rows_per_file == piece.part for row in rows)
            parts.setdefault(piece.part, []).append((len(rows), piece.whole))
        start += count
    for part, held in parts.items():
        size = min(rows_per_file, start - part * rows_per_file)
        assert sum(n for n, _ in held) == size
        whole = [w for _, w in held]
        assert whole == ([size == rows_per_file] if len(held) == 1 else [False] * len(held))


@pytest.mark.parametrize("record_format", ["parquet", "jsonl"])
def test_parts_written_apart_are_the_parts_written_in_one_go(
    tmp_path: Path, record_format: str
) -> None:
    """Parts written whole by ``write_part`` (as a Spark task does) and adopted, then the last
    rows written on: the same files as one ``PartWriter`` writing every row."""
    rows = pa.Table.from_batches([_records(0, 9100)])
    one, apart = tmp_path / "one" / "data", tmp_path / "apart" / "data"
    one.mkdir(parents=True)
    apart.mkdir(parents=True)
    fmt: Format = "parquet" if record_format == "parquet" else "jsonl"
    whole = PartWriter(one, format=fmt, rows_per_file=4500)
    for batch in rows.to_batches(max_chunksize=1000):
        whole.write(batch)
    expected = whole.close()
    written = [
        write_part(
            apart / part_name(p, fmt),
            rows.slice(p * 4500, 4500).to_batches(max_chunksize=700),
            format=fmt,
            schema=RECORD_SCHEMA,
        )
        for p in (0, 1)
    ]
    writer = BackgroundWriter(PartWriter(apart, format=fmt, rows_per_file=4500))
    writer.adopt(written)
    writer.write(rows.slice(9000).to_batches()[0])
    assert writer.close() == expected
    with pytest.raises(BuildError, match="out of order"):
        PartWriter(apart, format=fmt, rows_per_file=4500).adopt(written[1:])
