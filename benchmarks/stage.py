"""Staging benchmark (PostgreSQL): one table of N rows staged as Parquet the way the Spark
engine staged every ledger before (the baseline: one connection, rows through Python,
``StoreReader.batches``), and by ``_store/export.stage_parquet`` (``COPY ... TO STDOUT``
parsed by Arrow: what both engines now do) on 1, 2 and 4 connections of one exported
snapshot, each a range of the table's heap blocks (a TID Range Scan: together the streams
read the table once); ``--rounds`` rounds, the variants interleaved in each.

    python benchmarks/stage.py [--rows 1000000] [--streams 1 2 4] [--rounds 3]
                               [--spark-streams 2 4] [--table conversations|reports]

``--spark-streams N``: the same COPY streams run in Spark ``local[2]`` tasks, as the Spark
engine stages a PostgreSQL store (``engines/spark_stage.py``): the client CPU is then the
driver's alone (the tasks' is in Spark's Python workers, not counted), which is what shows
whether the driver's work grows with the ledgers.

``--table conversations`` (the default) is the shape of the ``conversations`` ledger
(conversation id, account id, mode), filled by ``generate_series``; ``--table reports`` the
vault's table of reports as the store declares it (``_store/schema.py``), each report's
ciphertext 6,400 characters of base64 (4,800 random bytes: what the 10B extrapolation of
docs/scale.md assumes), read by the vault's own query (``vault.usable_reports_query``); a
modest ``--rows`` (100,000: 0.7 GB) runs in minutes. Either in a schema of its own, dropped
at the end. For every run it measures wall seconds, rows/s and MB/s (of the query's column
values), this process's CPU seconds (every thread: reading the COPY stream, parsing its CSV,
writing Parquet) and the CPU seconds of the PostgreSQL backends that served it
(``/proc/PID/stat`` of each backend, found in ``pg_stat_activity`` by the run's
``application_name`` and sampled every ``_SAMPLE_S``: a backend's last ~20 ms before it
exits are not counted). Prints every run, then the medians per variant with their ratios to
one stream and to the baseline, and the load average before and after. Each stream reads
its own blocks, so the server's CPU stays about that of one scan however many streams; the
client's streams are threads of one process: on a machine of few cores, shared with the
server, streams add little.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from traingate._datasets.engines.spark_feedback import STORED_SCHEMA
from traingate._datasets.engines.spark_stage import StagedQuery, stage_queries
from traingate._store.db import connect
from traingate._store.export import _write_parquet, open_reader, stage_parquet
from traingate._vault.vault import usable_reports_query

PG_URL = os.environ.get("TRAINGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
_CONVERSATIONS = pa.schema(
    [("conversation_id", pa.string()), ("account_id", pa.string()), ("mode", pa.string())]
)
_SAMPLE_S = 0.02
_CIPHERTEXT_BYTES = 4_800  # 6,400 characters of base64
_DAY = 86_400_000_000
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process on this machine (None: gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


@contextmanager
def _server_cpu(application: str) -> Iterator[Callable[[], float]]:
    """The CPU seconds of the backends whose ``application_name`` is ``application``,
    sampled on a thread until the block ends (the server must run on this machine)."""
    seen: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            while not stop.is_set():
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                    (application,),
                ).fetchall()
                for (pid,) in rows:
                    cpu = _cpu_s(pid)
                    if cpu is not None:
                        seen[pid] = cpu
                stop.wait(_SAMPLE_S)

    worker = threading.Thread(target=sample)
    worker.start()
    try:
        yield lambda: sum(seen.values())
    finally:
        stop.set()
        worker.join()


def _run(schema: str, query: StagedQuery, streams: int, spark: Any = None) -> dict[str, float]:
    """One staging of ``query`` (``streams`` 0: the baseline), on connections of its own; in
    Spark tasks when ``spark`` is a session."""
    application = f"tg_stage_{secrets.token_hex(4)}"
    path = f"-csearch_path={schema}"
    separator = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{separator}options={quote(path)}&application_name={application}"
    db = connect(url)
    try:
        with (
            _server_cpu(application) as server,
            tempfile.TemporaryDirectory() as out,
            open_reader(db) as reader,
        ):
            time.sleep(3 * _SAMPLE_S)  # the reader's backend is seen before it works
            began, cpu, server_before = time.perf_counter(), time.process_time(), server()
            sql, params, rows_schema = query.sql, query.params, query.schema
            if streams == 0:
                paths = [Path(out) / "part-0.parquet"]
                batches = reader.batches(sql, params, schema=rows_schema)
                _write_parquet(batches, rows_schema, paths[0])
            elif spark is not None:
                staged = stage_queries(spark, reader, [query], root=Path(out), streams=streams)
                paths = sorted(staged[query.name].glob("*.parquet"))
            else:
                paths = stage_parquet(
                    reader, sql, params, schema=rows_schema, directory=Path(out),
                    streams=streams, table=query.table,
                )  # fmt: skip
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
            rows = sum(pq.read_metadata(p).num_rows for p in paths)
            time.sleep(3 * _SAMPLE_S)
            server_cpu = server() - server_before
    finally:
        db.close()
    return {"seconds": seconds, "rows": rows, "client_cpu_s": cpu, "server_cpu_s": server_cpu}


def _fill_conversations(conn: psycopg.Connection[Any], schema: str, rows: int) -> StagedQuery:
    conn.execute(
        f"CREATE TABLE {schema}.conversations AS SELECT 'conv-' || md5(g::text)"
        " AS conversation_id, 'acc-' || (g % 100000) AS account_id, 'standard' AS mode"
        f" FROM generate_series(1, {rows}) g"
    )
    sql = "SELECT conversation_id, account_id, mode FROM conversations"
    return StagedQuery("conversations", sql, (), _CONVERSATIONS, table="conversations")


def _fill_reports(conn: psycopg.Connection[Any], schema: str, rows: int) -> StagedQuery:
    """The vault's table of reports (``_store/schema.py``, PostgreSQL's prefix), ``rows``
    reports of random ciphertext, all usable at the query's instant."""
    conn.execute(
        f"""CREATE TABLE {schema}.vault_reports (
            report_id TEXT PRIMARY KEY, dedupe_key TEXT NOT NULL UNIQUE,
            secret_hash TEXT NOT NULL, submitted_day BIGINT NOT NULL,
            expires_day BIGINT NOT NULL, scheme TEXT NOT NULL, master_key_id TEXT NOT NULL,
            wrapped_key TEXT NOT NULL, nonce TEXT NOT NULL, ciphertext TEXT NOT NULL,
            UNIQUE (expires_day, report_id), UNIQUE (master_key_id, report_id))"""
    )
    text = base64.urlsafe_b64encode
    with conn.cursor().copy(f"COPY {schema}.vault_reports FROM STDIN") as copy:
        for i in range(rows):
            copy.write_row((
                text(os.urandom(16)).decode(), text(os.urandom(32)).decode(),
                text(os.urandom(32)).decode(), 10 * _DAY, 2000 * _DAY, "aes256gcm-v1", "mk-1",
                text(os.urandom(60)).decode(), text(os.urandom(12)).decode(),
                text(os.urandom(_CIPHERTEXT_BYTES)).decode(),
            ))  # fmt: skip
            if i % 20_000 == 0:
                print(f"filling: {i:,} reports", flush=True)
    sql, params = usable_reports_query("vault_", 100 * _DAY)
    return StagedQuery("reports", sql, params, STORED_SCHEMA, table="vault_reports")


def _megabytes(conn: psycopg.Connection[Any], schema: str, query: StagedQuery) -> float:
    """The megabytes of the query's column values (as text: what COPY sends, but quoting)."""
    columns = " + ".join(f"octet_length(CAST(q.{n} AS TEXT))" for n in query.schema.names)
    conn.execute(f"SET search_path = {schema}")
    (total,) = conn.execute(
        f"SELECT sum({columns}) FROM ({query.sql.replace('?', '%s')}) AS q", query.params
    ).fetchone() or (0,)
    conn.execute("RESET search_path")
    return float(total or 0) / 1e6


def _name(variant: tuple[str, int]) -> str:
    where, streams = variant
    if streams == 0:
        return "baseline (rows through Python)"
    tasks = " in Spark tasks" if where == "spark" else ""
    return f"COPY, {streams} connection(s){tasks}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true", help="COPY variants only")
    parser.add_argument("--spark-streams", type=int, nargs="*", default=[])
    parser.add_argument("--table", choices=["conversations", "reports"], default="conversations")
    args = parser.parse_args()
    spark = None
    if args.spark_streams:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.master("local[2]").appName("stage-bench").getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        spark.sparkContext.pythonExec = sys.executable  # the workers import this traingate
    schema = f"tg_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        fill = _fill_reports if args.table == "reports" else _fill_conversations
        query = fill(conn, schema, args.rows)
        conn.execute(f"VACUUM ANALYZE {schema}.{query.table}")
        megabytes = _megabytes(conn, schema, query)
    variants = [("driver", 0)] if not args.no_baseline else []
    variants += [("driver", n) for n in args.streams]
    variants += [("spark", n) for n in args.spark_streams]
    runs: dict[tuple[str, int], list[dict[str, float]]] = {v: [] for v in variants}
    load_before = os.getloadavg()
    try:
        for round_ in range(args.rounds):
            order = variants if round_ % 2 == 0 else variants[::-1]
            for variant in order:
                run = _run(schema, query, variant[1], spark if variant[0] == "spark" else None)
                assert run["rows"] == args.rows, (variant, run)
                runs[variant].append(run)
                print(
                    f"round {round_}: {_name(variant)}: {run['seconds']:.2f} s,"
                    f" client CPU {run['client_cpu_s']:.2f} s,"
                    f" server CPU {run['server_cpu_s']:.2f} s",
                    flush=True,
                )
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        if spark is not None:
            spark.stop()
    load_after = os.getloadavg()
    median = {
        v: {k: statistics.median(r[k] for r in runs[v]) for k in runs[v][0]} for v in variants
    }
    one = median[("driver", args.streams[0])]["seconds"]
    baseline = median.get(("driver", 0))
    print(
        f"\n{args.table}: {args.rows:,} rows, {megabytes:,.0f} MB of values, {args.rounds} rounds,"
        f" medians; {os.cpu_count()} cores"
    )
    print(
        "| variant | wall s | rows/s | rows/s a stream | MB/s | MB/s a stream | client CPU s"
        " | server CPU s | vs first COPY | vs baseline |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for v in variants:
        m = median[v]
        base = f"{baseline['seconds'] / m['seconds']:.2f}x" if baseline else "-"
        streams = max(1, v[1])
        rate, mb = args.rows / m["seconds"], megabytes / m["seconds"]
        print(
            f"| {_name(v)} | {m['seconds']:.2f} | {rate:,.0f} | {rate / streams:,.0f} |"
            f" {mb:,.1f} | {mb / streams:,.1f} | {m['client_cpu_s']:.2f} |"
            f" {m['server_cpu_s']:.2f} | {one / m['seconds']:.2f}x | {base} |"
        )
    print(
        "load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in load_after)
    )


if __name__ == "__main__":
    main()
