"""Ledger staging benchmark (PostgreSQL): one table of N rows staged as Parquet the way the
Spark engine staged every ledger before (the baseline: one connection, rows through Python,
``StoreReader.batches``), and by ``store/export.stage_parquet`` (``COPY ... TO STDOUT`` parsed
by Arrow) on one connection and on several connections of one exported snapshot, each a
range of key hashes, in the same run.

    python benchmarks/stage.py [--rows 1000000] [--streams 2 4]

The table is the shape of ``conversations`` (conversation id, account id, mode), filled by
``generate_series`` in a schema of its own, dropped at the end. Prints rows/s and the ratios
to one stream and to the baseline. Every stream scans the whole table on the server (each
keeps the rows of its hash range), and the client's streams are threads of one process:
on a machine of few cores, shared with the server, streams add little.
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from traingate.store.db import connect
from traingate.store.export import _write_parquet, open_reader, stage_parquet

PG_URL = os.environ.get("TRAINGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
_SCHEMA = pa.schema(
    [("conversation_id", pa.string()), ("account_id", pa.string()), ("mode", pa.string())]
)
_SQL = "SELECT conversation_id, account_id, mode FROM conversations"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--streams", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    schema = f"tg_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(
            f"CREATE TABLE {schema}.conversations AS SELECT 'conv-' || md5(g::text)"
            " AS conversation_id, 'acc-' || (g % 100000) AS account_id, 'standard' AS mode"
            f" FROM generate_series(1, {args.rows}) g"
        )
        conn.execute(f"ANALYZE {schema}.conversations")
    separator = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    db = connect(url)
    try:
        with tempfile.TemporaryDirectory() as out, open_reader(db) as reader:
            began = time.perf_counter()
            rows_before = reader.batches(_SQL, schema=_SCHEMA)
            _write_parquet(rows_before, _SCHEMA, Path(out) / "part-0.parquet")
            before = time.perf_counter() - began
        print(
            f"baseline, one connection, rows through Python (as staged before): {before:.2f} s,"
            f" {args.rows / before:,.0f} rows/s"
        )
        results: dict[int, float] = {}
        for streams in [1, *args.streams]:
            with tempfile.TemporaryDirectory() as out, open_reader(db) as reader:
                began = time.perf_counter()
                paths = stage_parquet(
                    reader, _SQL, schema=_SCHEMA, directory=Path(out), streams=streams
                )
                seconds = time.perf_counter() - began
                rows = sum(pq.read_metadata(p).num_rows for p in paths)
                assert rows == args.rows, (streams, rows)
            results[streams] = seconds
            print(
                f"{streams} stream(s): {seconds:.2f} s, {args.rows / seconds:,.0f} rows/s,"
                f" {results[1] / seconds:.2f}x one stream, {before / seconds:.2f}x the baseline"
            )
    finally:
        db.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
