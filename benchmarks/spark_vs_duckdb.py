"""Spark local[N] against DuckDB on the same input: a full ``model_training`` build of N
conversations, from the store and from a lake, both engines in one run.

    python benchmarks/spark_vs_duckdb.py [--conversations 200000] [--workdir benchmarks/out]
                                         [--master local[2]] [--sources store,lake]

The input is benchmarks/build.py's deterministic generator (about 8 messages a conversation,
consent timelines, organizations, flags, deletions, feedback), ingested once into a SQLite
store under ``--workdir`` (reused by later runs with the same N) and exported once as a lake
(``traingate lake export``; its time is reported). Then, each in its own process: the build
with ``--engine duckdb`` and with ``--engine spark`` for each source. Spark's session is
started before its build and timed apart (JVM start-up is not the engine's work). Every
pair of builds must give the same manifest but for ``engine`` (the same part files, byte for
byte). Prints one table: messages, seconds, messages/s, and for Spark messages/s per core.

Spark's rate per core is the figure that extrapolates (docs/scale.md): on one machine Spark
pays for its shuffle and sort with no more cores to spread them over, so DuckDB wins here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import resource
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from _phases import rss_mb, run_phase

AS_OF = "2025-06-01T00:00:00Z"
HERE = Path(__file__).resolve().parent


def _generator() -> ModuleType:
    """benchmarks/build.py, for its event generator."""
    spec = importlib.util.spec_from_file_location("bench_build", HERE / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _open(store: Path) -> Any:
    from traingate.app import Traingate
    from traingate.settings import Settings

    return Traingate.open(
        Settings(db_url=f"sqlite:///{store / 'traingate.sqlite'}", key_file=store / "keys.json")
    )


def phase_ingest(store: Path, conversations: int) -> dict[str, Any]:
    events = _generator().generate(conversations)
    started = time.perf_counter()
    with _open(store) as tg:
        summary = tg.ingest((json.dumps(e) for e in events), batch_size=20_000)
        messages = tg.store.count("messages")
    return {"seconds": time.perf_counter() - started, "accepted": summary.accepted,
            "rejected": summary.rejected, "messages": messages}  # fmt: skip


def phase_export(store: Path, lake: Path) -> dict[str, Any]:
    started = time.perf_counter()
    with _open(store) as tg:
        result = tg.export_lake(out=lake)
    return {"seconds": time.perf_counter() - started, **result.to_dict()}


def phase_build(store: Path, out: Path, engine: str, lake: str, master: str) -> dict[str, Any]:
    from traingate.timeutil import parse_instant

    session_s = 0.0
    spark = None
    if engine == "spark-driver":  # the baseline: the driver makes and writes every record
        from traingate.build.engines.spark import SparkEngine

        SparkEngine.writes_parts = False
        engine = "spark"
    if engine == "spark":
        from pyspark.sql import SparkSession

        started = time.perf_counter()
        spark = (
            SparkSession.builder.master(master)
            .appName("traingate-bench")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.driver.memory", "2g")
            .config("spark.local.dir", str(out.parent / "spark-local"))
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        spark.sparkContext.pythonExec = sys.executable
        session_s = time.perf_counter() - started
    try:
        with _open(store) as tg:
            started, cpu = time.perf_counter(), time.process_time()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = tg.build_dataset(
                purpose="model_training", out=out, as_of=parse_instant(AS_OF), engine=engine,
                messages=lake or None,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            driver_cpu = time.process_time() - cpu
        # Closing the store ended its snapshot process (SQLite), whose CPU now counts; Spark's
        # JVM and workers are still running, so theirs does not.
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    finally:
        if spark is not None:
            spark.stop()
    manifest = dict(result.manifest)
    return {
        "seconds": seconds,
        "driver_cpu_s": driver_cpu,
        "child_cpu_s": child_cpu,
        "session_s": session_s,
        "messages": manifest["exclusions"]["messages"]["considered"],
        "records": manifest["counts"]["records"],
        "files": manifest["files"],
        "manifest": {k: v for k, v in manifest.items() if k not in ("engine", "signature")},
        "rss_mb": rss_mb(),
    }


def _cores(master: str) -> int:
    match = re.fullmatch(r"local\[(\d+)\]", master)
    if match is None:
        raise SystemExit(f"--master {master}: give local[N] (cores per run are reported)")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=200_000)
    parser.add_argument("--workdir", type=Path, default=HERE / "out")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--sources", default="store,lake")
    parser.add_argument(
        "--engines",
        default="duckdb,spark",
        help="of duckdb, spark and spark-driver (Spark decides, the driver makes the records"
        " and writes the parts, as before issue 20)",
    )
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        if name == "ingest":
            result = phase_ingest(Path(rest[0]), int(rest[1]))
        elif name == "export":
            result = phase_export(Path(rest[0]), Path(rest[1]))
        else:
            result = phase_build(Path(rest[0]), Path(rest[1]), rest[2], rest[3], rest[4])
        print(json.dumps(result))
        return
    cores = _cores(args.master)
    n = args.conversations
    store = args.workdir / f"store-{n}"
    if not (store / "ready").exists():
        import shutil

        shutil.rmtree(store, ignore_errors=True)
        store.mkdir(parents=True)
        ingested = run_phase(__file__, ["--phase", "ingest", str(store), str(n)])
        (store / "ready").write_text(json.dumps(ingested))
        print(f"ingested {json.dumps(ingested)}", file=sys.stderr)
    lake = args.workdir / f"lake-{n}"
    exported = None
    if "lake" in args.sources and not lake.exists():
        exported = run_phase(__file__, ["--phase", "export", str(store), str(lake)])
        print(f"exported {json.dumps(exported)}", file=sys.stderr)
    runs = args.workdir / f"spark-runs-{n}"
    import shutil

    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    rows = []
    for source in args.sources.split(","):
        spec = f"parquet:{lake}" if source == "lake" else ""
        built = {}
        engines = args.engines.split(",")
        for engine in engines:
            out = runs / f"{source}-{engine}"
            built[engine] = run_phase(
                __file__, ["--phase", "build", str(store), str(out), engine, spec, args.master]
            )
            print(f"{source} {engine}: {built[engine]['seconds']:.1f}s", file=sys.stderr)
        same = len({json.dumps(b["manifest"], sort_keys=True) for b in built.values()}) == 1
        for engine in engines:
            b = built[engine]
            rate = b["messages"] / b["seconds"]
            rows.append({
                "source": source, "engine": engine, "messages": b["messages"],
                "records": b["records"], "seconds": b["seconds"], "session_s": b["session_s"],
                "msgs_per_s": rate,
                "per_core": rate / cores if engine.startswith("spark") else None,
                "rss_mb": b["rss_mb"], "same_manifest": same,
                "driver_cpu_s": b["driver_cpu_s"], "child_cpu_s": b["child_cpu_s"],
            })  # fmt: skip
    shutil.rmtree(runs, ignore_errors=True)
    print(f"| source | engine | messages | records | build s | messages/s | "
          f"messages/s per core ({args.master}) | session start s | driver CPU s |"
          " snapshot reader CPU s | driver RSS MB | same manifest |")  # fmt: skip
    print("|" + "---|" * 12)
    for r in rows:
        per_core = f"{r['per_core']:,.0f}" if r["per_core"] is not None else ""
        session = f"{r['session_s']:.1f}" if r["engine"].startswith("spark") else ""
        print(
            f"| {r['source']} | {r['engine']} | {r['messages']:,} | {r['records']:,} | "
            f"{r['seconds']:.1f} | {r['msgs_per_s']:,.0f} | {per_core} | {session} | "
            f"{r['driver_cpu_s']:.2f} | {r['child_cpu_s']:.2f} | {r['rss_mb']:,.0f} | "
            f"{'yes' if r['same_manifest'] else 'NO'} |"
        )
    if exported is not None:
        print(f"\nlake export: {exported['messages']:,} messages in {exported['seconds']:.1f}s "
              f"({exported['messages'] / exported['seconds']:,.0f} messages/s), "
              f"{exported['partitions']} partitions, {exported['files']} files")  # fmt: skip
    if not all(r["same_manifest"] for r in rows):
        raise SystemExit("the engines' manifests differ")


if __name__ == "__main__":
    main()
