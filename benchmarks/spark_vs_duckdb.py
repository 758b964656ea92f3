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
On a shared machine the wall clock follows the load; the CPU that Spark's JVM and Python
workers spent on the build (from /proc, their process tree) does much less, and the
difference of that CPU between two sizes, divided by the difference in messages, is the
rate per core with Spark's fixed costs (JIT, class loading, worker start) taken out.

For each Spark build the benchmark's session runs with its status UI on (the engine's own
sessions do not), and reads from its REST API every stage's tasks, executor time and CPU,
input, shuffle bytes written and read and spills: the table of stages, and the shuffled
bytes per message (every stage's shuffle write over the messages), which is what a
cluster's network carries beyond what the local shuffle here already counts.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
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
    from traingate._facade import Traingate
    from traingate._settings import Settings

    return Traingate.open(
        Settings(db_url=f"sqlite:///{store / 'traingate.sqlite'}", key_file=store / "keys.json")
    )


def phase_ingest(store: Path, conversations: int) -> dict[str, Any]:
    events = _generator().generate(conversations)
    started = time.perf_counter()
    with _open(store) as tg:
        summary = tg.events.ingest((json.dumps(e) for e in events), batch_size=20_000)
        messages = tg.store.count("messages")
    return {"seconds": time.perf_counter() - started, "accepted": summary.accepted,
            "rejected": summary.rejected, "messages": messages}  # fmt: skip


def phase_export(store: Path, lake: Path) -> dict[str, Any]:
    started = time.perf_counter()
    with _open(store) as tg:
        result = tg.datasets.export_lake(out=lake)
    return {"seconds": time.perf_counter() - started, **result.to_dict()}


def phase_build(store: Path, out: Path, engine: str, lake: str, master: str) -> dict[str, Any]:
    from traingate._core.timeutil import parse_instant

    session_s = 0.0
    spark = None
    if engine == "spark-driver":  # the baseline: the driver makes and writes every record
        from traingate._datasets.engines.spark import SparkEngine

        SparkEngine.writes_parts = False
        engine = "spark"
    if engine == "spark":
        from pyspark.sql import SparkSession

        started = time.perf_counter()
        spark = (
            SparkSession.builder.master(master)
            .appName("traingate-bench")
            .config("spark.ui.enabled", "true")  # its REST API gives each stage's shuffle bytes
            .config("spark.ui.port", "0")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.driver.memory", "2g")
            .config("spark.local.dir", str(out.parent / "spark-local"))
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        spark.sparkContext.pythonExec = sys.executable
        session_s = time.perf_counter() - started
    stages: list[dict[str, Any]] = []
    jvm_cpu = workers_cpu = 0.0
    try:
        with _open(store) as tg:
            started, cpu = time.perf_counter(), time.process_time()
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            tree = _tree_cpu()
            result = tg.datasets.build(
                purpose="model_training", out=out, as_of=parse_instant(AS_OF), engine=engine,
                messages=lake or None,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            driver_cpu = time.process_time() - cpu
            if spark is not None:
                after_tree = _tree_cpu()
                jvm_cpu = after_tree["java"] - tree["java"]
                workers_cpu = after_tree["python"] - tree["python"]
                stages = _stages(spark)
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
        "spark_cpu_s": jvm_cpu + workers_cpu,
        "jvm_cpu_s": jvm_cpu,
        "workers_cpu_s": workers_cpu,
        "stages": stages,
    }


def _tree_cpu() -> dict[str, float]:
    """CPU seconds (user and system, with their reaped children's) of this process's
    descendants that are alive, by program: Spark's JVM (``java``) and its Python workers
    (``python``; not the store's snapshot process). Read from /proc (Linux)."""
    parents: dict[int, int] = {}
    times: dict[int, tuple[str, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name, rest = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:  # gone since the listing
            continue
        fields = rest.split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"traingate._store.reader_process" in command:  # the store's, counted once it ends
            continue
        program = "java" if "java" in name else "python"
        times[pid] = (program, sum(int(f) for f in fields[11:15]) / tick)
    me = os.getpid()
    total = {"java": 0.0, "python": 0.0}
    for pid, (program, cpu) in times.items():
        ancestor = parents.get(pid)
        while ancestor is not None and ancestor not in (me, 0, 1):
            ancestor = parents.get(ancestor)
        if ancestor == me:
            total[program] += cpu
    return total


def _stages(spark: Any) -> list[dict[str, Any]]:
    """The completed stages of the session's application, from Spark's status REST API:
    tasks, executor run and CPU time, input bytes, and shuffle bytes written and read."""
    import urllib.request

    context = spark.sparkContext
    url = f"{context.uiWebUrl}/api/v1/applications/{context.applicationId}/stages?status=complete"
    with urllib.request.urlopen(url, timeout=30) as response:
        found = json.load(response)
    return [
        {
            "stage": s["stageId"],
            "name": str(s["name"]).split(" at ")[0],
            "tasks": s["numTasks"],
            "run_s": s["executorRunTime"] / 1e3,
            "cpu_s": s["executorCpuTime"] / 1e9,
            "input_bytes": s["inputBytes"],
            "shuffle_write_bytes": s["shuffleWriteBytes"],
            "shuffle_read_bytes": s["shuffleReadBytes"],
            "shuffle_write_records": s["shuffleWriteRecords"],
            "spilled_bytes": s["diskBytesSpilled"],
        }
        for s in sorted(found, key=lambda s: s["stageId"])
    ]


def _cores(master: str) -> int:
    match = re.fullmatch(r"local\[(\d+)\]", master)
    if match is None:
        raise SystemExit(f"--master {master}: give local[N] (cores per run are reported)")
    return int(match.group(1))


def _print_stages(run: dict[str, Any]) -> None:
    """One run's Spark stages: where the executors' time and the shuffled bytes went."""
    print(f"\n{run['source']} {run['engine']}: Spark stages")
    print("| stage | name | tasks | run s | CPU s | input MB | shuffle write MB |"
          " shuffle read MB | shuffle records | spilled MB |")  # fmt: skip
    print("|" + "---|" * 10)
    mb = 1 << 20
    for s in run["stages"]:
        print(
            f"| {s['stage']} | {s['name']} | {s['tasks']} | {s['run_s']:.1f} | {s['cpu_s']:.1f} |"
            f" {s['input_bytes'] / mb:,.1f} | {s['shuffle_write_bytes'] / mb:,.1f} |"
            f" {s['shuffle_read_bytes'] / mb:,.1f} | {s['shuffle_write_records']:,} |"
            f" {s['spilled_bytes'] / mb:,.1f} |"
        )


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
                "spark_cpu_s": b["spark_cpu_s"], "stages": b["stages"],
                "jvm_cpu_s": b["jvm_cpu_s"], "workers_cpu_s": b["workers_cpu_s"],
                "shuffled": sum(st["shuffle_write_bytes"] for st in b["stages"]),
            })  # fmt: skip
    shutil.rmtree(runs, ignore_errors=True)
    print(f"| source | engine | messages | records | build s | messages/s | "
          f"messages/s per core ({args.master}) | Spark CPU s (JVM + Python workers) |"
          " messages per Spark CPU s |"
          " shuffled bytes | shuffled bytes per message | session start s | driver CPU s |"
          " snapshot reader CPU s | driver RSS MB | same manifest |")  # fmt: skip
    print("|" + "---|" * 16)
    for r in rows:
        spark = r["engine"].startswith("spark")
        per_core = f"{r['per_core']:,.0f}" if r["per_core"] is not None else ""
        session = f"{r['session_s']:.1f}" if spark else ""
        cpu = (
            f"{r['spark_cpu_s']:.1f} ({r['jvm_cpu_s']:.1f} + {r['workers_cpu_s']:.1f})"
            if spark
            else ""
        )
        per_cpu = f"{r['messages'] / r['spark_cpu_s']:,.0f}" if spark and r["spark_cpu_s"] else ""
        shuffled = f"{r['shuffled']:,}" if spark else ""
        per_message = f"{r['shuffled'] / r['messages']:,.1f}" if spark and r["messages"] else ""
        print(
            f"| {r['source']} | {r['engine']} | {r['messages']:,} | {r['records']:,} | "
            f"{r['seconds']:.1f} | {r['msgs_per_s']:,.0f} | {per_core} | {cpu} | {per_cpu} | "
            f"{shuffled} | {per_message} | {session} | "
            f"{r['driver_cpu_s']:.2f} | {r['child_cpu_s']:.2f} | {r['rss_mb']:,.0f} | "
            f"{'yes' if r['same_manifest'] else 'NO'} |"
        )
    for r in rows:
        if r["stages"]:
            _print_stages(r)
    if exported is not None:
        print(f"\nlake export: {exported['messages']:,} messages in {exported['seconds']:.1f}s "
              f"({exported['messages'] / exported['seconds']:,.0f} messages/s), "
              f"{exported['partitions']} partitions, {exported['files']} files")  # fmt: skip
    if not all(r["same_manifest"] for r in rows):
        raise SystemExit("the engines' manifests differ")


if __name__ == "__main__":
    main()
