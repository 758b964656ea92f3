"""Dataset build benchmark: messages/s and peak RSS of a ``model_training`` build, against a
raw DuckDB read+write baseline and against the naive scalar loop.

    python benchmarks/build.py [--conversations 20000] [--conversations 50000 ...]
                               [--backend sqlite] [--backend postgresql] [--workdir benchmarks/out]
                               [--policy consumer-2024] [--sample 2000] [--keep] [--no-naive]
                               [--shape chat --shape kto --shape openai [--rounds 3]]

For each N: a deterministic generator writes N conversations (about 8 messages each, realistic
text lengths, 5% with e-mail addresses, consent timelines with revocations, organizations,
flags and clears, feedback, deletions) and ingests them into a fresh store, a SQLite file or a
PostgreSQL schema, kept in ``--workdir`` and reused by later runs with the same N and backend.
Then, each in its own process so that peak RSS is that run's own:

- build:    ``tg.datasets.build(purpose="model_training")`` with the DuckDB engine;
- baseline: DuckDB reading the same messages (through the same store export) joined to their
            accounts and writing them to one Parquet file: the cost of merely reading and
            writing the data, no policy, no de-identification, no records;
- naive:    a per-message Python loop over the scalar evaluator (the conversation's facts,
            ``decide_message``, then the message's de-identified content when eligible), timed
            on the messages of ``--sample`` conversations;
- scalar:   the scalar engine (facts once per conversation, records assembled) on the same
            sample: the reference engine, already less naive.

``--policy`` names the policies in force for the build, naive and scalar runs (as
``TRAINGATE_POLICY``; default ``consumer-2024``); the store, ingested under the default, is the
same for every policy. Prints one table: messages, build seconds (and the building process's
CPU seconds), messages/s, peak RSS, build/baseline time ratio, build/naive and build/scalar
speed ratios (``--no-naive``: not measured).

``--before TREE`` (a git worktree of an earlier commit) and ``--write-threads N`` (repeatable)
compare instead, ``--rounds`` rounds interleaved, each run in its own process: builds by the
code of ``TREE`` (its ``src`` first on PYTHONPATH), builds by this tree (with N part-writing
threads each, else the engine's default), and the baseline; prints each one's median and
every run's seconds, CPU seconds (of the process, every thread, DuckDB's included, and of
the SQLite snapshot process; the build's include forgetting it again), peak RSS, and the
medians' ratios to the baseline (wall and CPU: on a loaded machine the CPU ratio is the
steadier) and to ``TREE``'s. Run it from a tree at a commit (``python
TREE2/benchmarks/build.py`` with ``PYTHONPATH=TREE2/src``) when the checkout holds uncommitted
work, such as a migration the earlier tree would refuse: every phase opens (and migrates) the
store.

``--shape S`` (repeatable; issue 16) measures builds of those shapes against ``records`` instead:
``--rounds`` rounds, each building ``records`` then every shape in turn (alternating, so a noisy
machine slows them alike), each build in its own process; prints each shape's rows, median and
fastest build seconds, and its median / records' median in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import resource
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from _phases import rss_mb, run_phase

AS_OF = "2025-06-01T00:00:00Z"
PG_URL = os.environ.get("TRAINGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
_BASE = 1_704_067_200  # 2024-01-01T00:00:00Z
_PROSE = (
    "the a model answer question please explain how why what data privacy training feedback "
    "report conversation message account assistant user help code python error table chart "
    "summary draft letter plan travel recipe budget schedule meeting notes could would should "
    "because however therefore example result function value list string number test build "
    "write read file system memory performance policy consent research safety review of to in "
    "for with on is are was be it this that you we they I can will not and or but if then"
)
_VOCABULARY = _PROSE.split()


def _at(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_BASE + seconds))


class _Text:
    """Cheap deterministic prose: slices of one long pseudo-random text."""

    def __init__(self, rng: random.Random) -> None:
        words = [rng.choice(_VOCABULARY) for _ in range(400_000)]
        self.corpus = " ".join(words)
        self.rng = rng

    def words(self, low: int, high: int) -> str:
        length = self.rng.randint(low, high) * 6
        start = self.rng.randrange(0, len(self.corpus) - length - 1)
        start = self.corpus.find(" ", start) + 1
        end = self.corpus.rfind(" ", start, start + length)
        return self.corpus[start : max(end, start + 1)]


def generate(conversations: int, seed: int = 20240101) -> Iterator[dict[str, Any]]:
    """Deterministic events for ``conversations`` conversations, in time order."""
    rng = random.Random(seed)
    text = _Text(rng)
    ids = iter(range(1, 1 << 62))
    clock = 0

    def event(kind: str, at: int, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": f"ev-{next(ids)}", "at": _at(at), **fields}

    organizations = max(1, conversations // 400)
    for org in range(organizations):
        if rng.random() < 0.6:
            yield event(
                "consent.updated",
                0,
                scope="organization",
                organization_id=f"org-{org}",
                setting="model_training",
                granted=True,
                source="development_partner_program",
            )
    made = 0
    account = 0
    while made < conversations:
        account += 1
        acct = f"acct-{account:08d}"
        clock += 37
        commercial = rng.random() < 0.15
        plan = (
            rng.choice(["team", "enterprise", "api"])
            if commercial
            else rng.choice(["free", "free", "free", "pro", "max"])
        )
        org = f"org-{rng.randrange(organizations)}" if commercial else None
        yield event(
            "account.updated",
            clock,
            account_id=acct,
            email=f"{acct}@example.com",
            plan=plan,
            organization_id=org,
        )
        if rng.random() < 0.45:
            yield event(
                "consent.updated",
                clock + 1,
                scope="account",
                account_id=acct,
                setting="model_training",
                granted=True,
                source="privacy_settings",
            )
        revoke_at = clock + rng.randint(1_000, 4_000_000) if rng.random() < 0.1 else None
        for conv_index in range(rng.randint(1, 7)):
            if made >= conversations:
                break
            made += 1
            conv = f"{acct}-c{conv_index}"
            start = clock + rng.randint(10, 3_000_000)
            fields: dict[str, Any] = {"title": text.words(2, 6)}
            if rng.random() < 0.2:
                fields["custom_style"] = {"tone": rng.choice(["formal", "casual"]), "len": 3}
            if rng.random() < 0.2:
                fields["preferences"] = {"language": rng.choice(["en", "fr", "de"])}
            yield event(
                "conversation.updated", start, conversation_id=conv, account_id=acct, **fields
            )
            with_email = rng.random() < 0.05
            count = rng.randint(6, 10)
            mids = []
            at = start
            for index in range(count):
                at += rng.randint(5, 600)
                role = "user" if index % 2 == 0 else "assistant"
                content = text.words(8, 60) if role == "user" else text.words(40, 250)
                if with_email and index == 0:
                    content += f" write to person{rng.randint(1, 99999)}@example.org thanks"
                attachments = []
                if role == "user" and rng.random() < 0.03:
                    attachments.append(
                        {
                            "attachment_id": f"{conv}-a{index}",
                            "source": rng.choice(["upload", "google_drive", "github"]),
                            "name": "notes.txt",
                            "content": text.words(20, 200),
                        }
                    )
                mid = f"{conv}-m{index}"
                mids.append((mid, at))
                yield event(
                    "message.created",
                    at,
                    conversation_id=conv,
                    message_id=mid,
                    account_id=acct,
                    role=role,
                    content=content,
                    attachments=attachments,
                )
            roll = rng.random()
            if roll < 0.02:
                mid, rated_at = mids[-1]
                yield event(
                    "feedback.submitted",
                    rated_at + 30,
                    feedback_id=f"fb-{conv}",
                    account_id=acct,
                    conversation_id=conv,
                    message_id=mid,
                    rating=rng.choice(["up", "down"]),
                    comment=text.words(3, 20),
                    categories=["helpful"],
                )
            elif roll < 0.04:
                yield event(
                    "safety.flagged",
                    at + 60,
                    flag_id=f"fl-{conv}",
                    conversation_id=conv,
                    policy="usage_policy",
                    reason=None,
                )
                if rng.random() < 0.5:
                    yield event("safety.cleared", at + 9_000, flag_id=f"fl-{conv}")
            elif roll < 0.05:
                yield event("conversation.deleted", at + 100, conversation_id=conv, account_id=acct)
        if revoke_at is not None:
            yield event(
                "consent.updated",
                revoke_at,
                scope="account",
                account_id=acct,
                setting="model_training",
                granted=False,
                source="privacy_settings",
            )
            if rng.random() < 0.5:
                yield event(
                    "consent.updated",
                    revoke_at + 86_400,
                    scope="account",
                    account_id=acct,
                    setting="model_training",
                    granted=True,
                    source="privacy_settings",
                )


# -- phases (each runs in its own process) ---------------------------------------------------


def _cpu_s() -> float:
    """CPU seconds of this process (every thread) and of its children that have ended: the
    SQLite snapshot process (``_store/reader_process.py``) reads the store in a child of its own."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _open(store: Path) -> Any:
    from traingate._facade import Traingate
    from traingate._settings import Settings

    url = (store / "url").read_text().strip()
    policy = os.environ.get("TRAINGATE_BENCH_POLICY") or None
    return Traingate.open(Settings(db_url=url, key_file=store / "keys.json", policy=policy))


def _new_store(store: Path, backend: str, conversations: int) -> None:
    """An empty store directory: its database URL (a fresh PostgreSQL schema, or a SQLite
    file inside it) and, later, its key file."""
    store.mkdir(parents=True)
    if backend == "sqlite":
        url = f"sqlite:///{(store / 'traingate.sqlite').resolve()}"
    else:
        import psycopg

        # One schema per store directory: two work directories never share one.
        digest = hashlib.sha256(str(store.resolve()).encode()).hexdigest()[:8]
        schema = f"tg_bench_{conversations}_{digest}"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in PG_URL else "?"
        url = f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    (store / "url").write_text(url)


def phase_ingest(store: Path, conversations: int) -> dict[str, Any]:
    started = time.perf_counter()
    with _open(store) as tg:
        summary = tg.events.ingest(
            (json.dumps(e) for e in generate(conversations)), batch_size=20_000
        )
        messages = tg.store.count("messages")
    return {
        "seconds": time.perf_counter() - started,
        "accepted": summary.accepted,
        "rejected": summary.rejected,
        "messages": messages,
    }


def phase_build(store: Path, out: Path, shape: str = "records") -> dict[str, Any]:
    """The build; then its lineage rows are deleted again, so that every run builds against
    the same store (lineage grows with every build, and so would the cost of inserting it)."""
    from traingate._core.timeutil import parse_instant
    from traingate._datasets.lineage import forget_build

    threads = os.environ.get("TRAINGATE_BENCH_WRITE_THREADS")
    if threads:  # the DuckDB engine with that many part-writing threads (--write-threads)
        from traingate._datasets import engines
        from traingate._datasets.engines.duckdb import DuckDBEngine

        engines.engine_named = lambda name, **_: DuckDBEngine(write_threads=int(threads))  # type: ignore[assignment]
    with _open(store) as tg:
        started, cpu = time.perf_counter(), _cpu_s()
        result = tg.datasets.build(
            purpose="model_training", out=out, as_of=parse_instant(AS_OF), shape=shape
        )
        seconds = time.perf_counter() - started
        forget_build(tg.store.db, build_id=result.build_id)
    cpu = _cpu_s() - cpu  # once the store is closed: its snapshot process has ended
    considered = result.manifest["exclusions"]["messages"]["considered"]
    return {
        "seconds": seconds,
        "messages": considered,
        "records": result.manifest["counts"]["records"],
        "rows": result.manifest["shape"]["rows"],
        "cpu_s": cpu,
        "rss_mb": rss_mb(),
    }


def phase_baseline(store: Path, out: Path) -> dict[str, Any]:
    import duckdb
    import pyarrow as pa

    from traingate._core.timeutil import parse_instant
    from traingate._store.export import open_reader

    with _open(store) as tg:
        started, cpu = time.perf_counter(), _cpu_s()
        out.mkdir(parents=True)
        con = duckdb.connect(str(out / "work.duckdb"), config={"memory_limit": "768MB"})
        with open_reader(tg.store.db) as source:
            accounts = source.reader(
                "SELECT account_id, plan, organization_id FROM account_plans",
                schema=pa.schema(
                    [
                        ("account_id", pa.string()),
                        ("plan", pa.string()),
                        ("organization_id", pa.string()),
                    ]
                ),
            )
            con.register("accounts_source", accounts)
            con.execute(
                "CREATE TABLE accounts AS SELECT account_id, any_value(plan) AS plan,"
                " any_value(organization_id) AS organization_id FROM accounts_source"
                " GROUP BY account_id"
            )
            messages = source.reader(
                "SELECT conversation_id, account_id, role, at, content, attachments"
                " FROM messages WHERE at <= ?",
                (parse_instant(AS_OF),),
                schema=pa.schema(
                    [
                        ("conversation_id", pa.string()),
                        ("account_id", pa.string()),
                        ("role", pa.string()),
                        ("ts", pa.int64()),
                        ("content", pa.string()),
                        ("attachments", pa.string()),
                    ]
                ),
            )
            con.register("messages_source", messages)
            target = out / "baseline.parquet"
            con.execute(
                "COPY (SELECT m.*, a.plan, a.organization_id FROM messages_source m"
                f" JOIN accounts a USING (account_id)) TO '{target}'"
                " (FORMAT parquet, COMPRESSION zstd)"
            )
            count = con.execute(f"SELECT count(*) FROM '{target}'").fetchone()
        con.close()
        seconds = time.perf_counter() - started
    cpu = _cpu_s() - cpu  # once the store is closed: its snapshot process has ended
    return {
        "seconds": seconds,
        "messages": int(count[0]) if count else 0,
        "cpu_s": cpu,
        "rss_mb": rss_mb(),
    }


def phase_naive(store: Path, sample: int) -> dict[str, Any]:
    """The naive loop: for each message of the sample, its conversation's facts, the scalar
    decision, and (when eligible) its de-identified content; no batching, no SQL beyond the
    store's own per-item reads."""
    from traingate._core.deid import redact, redact_json_text, strip_attachment
    from traingate._core.policy import decide_message
    from traingate._core.timeutil import parse_instant

    with _open(store) as tg:
        db, policy, as_of = tg.store.db, tg.policies, parse_instant(AS_OF)
        ids = [
            row[0]
            for row in db.execute(
                "SELECT conversation_id FROM conversations ORDER BY conversation_id LIMIT ?",
                (sample,),
            )
        ]
        started = time.perf_counter()
        messages = eligible = 0
        for conversation_id in ids:
            for (message_id,) in db.execute(
                "SELECT message_id FROM messages WHERE conversation_id = ? AND at <= ?"
                " ORDER BY at, event_seq",
                (conversation_id, as_of),
            ):
                facts = tg.store.conversation_facts(conversation_id)
                message = next(m for m in facts.messages if m.message_id == message_id)
                decision = decide_message(
                    policy=policy,
                    facts=facts,
                    message=message,
                    purpose="model_training",
                    as_of=as_of,
                )
                messages += 1
                if decision.eligible:
                    ((role, content, attachments),) = db.execute(
                        "SELECT role, content, attachments FROM messages WHERE message_id = ?",
                        (message_id,),
                    )
                    settings = tg.store.settings_as_of(conversation_id, as_of)
                    _ = (
                        role,
                        redact(content),
                        [strip_attachment(a) for a in json.loads(attachments)],
                        redact_json_text(settings["custom_style"]),
                    )
                    eligible += 1
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "messages": messages, "rss_mb": rss_mb()}


def phase_scalar(store: Path, sample: int) -> dict[str, Any]:
    """The scalar engine (one conversation's facts at a time, records assembled) on a sample:
    the reference engine, already smarter than the naive loop."""
    from traingate._core.timeutil import parse_instant
    from traingate._datasets.engines.base import BuildRequest
    from traingate._datasets.engines.scalar import ScalarEngine
    from traingate._datasets.records import conversation_records
    from traingate._store.export import open_reader

    with _open(store) as tg:
        ids = [
            row[0]
            for row in tg.store.db.execute(
                "SELECT conversation_id FROM conversations ORDER BY conversation_id LIMIT ?",
                (sample,),
            )
        ]
        request = BuildRequest(
            policy=tg.policies, purpose="model_training", as_of=parse_instant(AS_OF)
        )
        started = time.perf_counter()
        messages = 0
        with open_reader(tg.store.db) as source:
            engine = ScalarEngine(conversations=ids)
            for batch in engine.run(request=request, source=source, store=tg.store):
                conversation_records(batch.records, signing_key=tg.keys.signing_key)
                messages += batch.messages_seen
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "messages": messages, "rss_mb": rss_mb()}


def _ready_store(workdir: Path, backend: str, conversations: int) -> Path:
    """The benchmark's store of ``conversations`` on ``backend``, ingested once and kept."""
    store = workdir / f"store-{backend}-{conversations}"
    if not (store / "ready").exists():
        shutil.rmtree(store, ignore_errors=True)
        _new_store(store, backend, conversations)
        ingested = run_phase(__file__, ["--phase", "ingest", str(store), str(conversations)])
        (store / "ready").write_text(json.dumps(ingested))
    return store


def bench(
    conversations: int,
    workdir: Path,
    sample: int,
    keep: bool,
    backend: str,
    policy: str,
    naive: bool = True,
) -> dict[str, Any]:
    store = _ready_store(workdir, backend, conversations)
    os.environ["TRAINGATE_BENCH_POLICY"] = policy  # read by the phases' processes
    runs = workdir / f"runs-{conversations}"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir()
    built = run_phase(__file__, ["--phase", "build", str(store), str(runs / "dataset")])
    baseline = run_phase(__file__, ["--phase", "baseline", str(store), str(runs / "baseline")])
    rate = built["messages"] / built["seconds"]
    naive_rate = scalar_rate = float("nan")  # not measured (--no-naive)
    if naive:
        slow = run_phase(__file__, ["--phase", "naive", str(store), str(sample)])
        scalar = run_phase(__file__, ["--phase", "scalar", str(store), str(sample)])
        naive_rate = slow["messages"] / slow["seconds"]
        scalar_rate = scalar["messages"] / scalar["seconds"]
    if not keep:
        shutil.rmtree(runs)
    return {
        "backend": backend,
        "policy": policy,
        "conversations": conversations,
        "messages": built["messages"],
        "records": built["records"],
        "build_s": built["seconds"],
        "build_cpu_s": built["cpu_s"],
        "msgs_per_s": rate,
        "rss_mb": built["rss_mb"],
        "baseline_s": baseline["seconds"],
        "baseline_rss_mb": baseline["rss_mb"],
        "vs_baseline": built["seconds"] / baseline["seconds"],
        "naive_msgs_per_s": naive_rate,
        "vs_naive": rate / naive_rate,
        "scalar_msgs_per_s": scalar_rate,
        "vs_scalar": rate / scalar_rate,
    }


@contextlib.contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """The phases started meanwhile see these environment variables (None: unset)."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def bench_compare(
    conversations: int,
    workdir: Path,
    backend: str,
    *,
    before: Path | None,
    write_threads: list[int],
    rounds: int,
) -> list[dict[str, Any]]:
    """Builds of this tree (with each of ``write_threads``, or the engine's default) and of
    the source tree ``before`` (its ``src`` first on PYTHONPATH), and the raw DuckDB
    read+write baseline, interleaved ``rounds`` times, each in its own process; the medians
    of each, with their ratios to the baseline's median and to ``before``'s."""
    import statistics

    store = _ready_store(workdir, backend, conversations)
    path = os.environ.get("PYTHONPATH")
    variants: list[tuple[str, dict[str, str | None]]] = []
    if before is not None:
        inherited = f"{before.resolve() / 'src'}{os.pathsep + path if path else ''}"
        variants.append(("before", {"PYTHONPATH": inherited}))
    for threads in write_threads or [0]:
        label = f"after, {threads} write thread(s)" if threads else "after"
        variants.append((label, {"TRAINGATE_BENCH_WRITE_THREADS": str(threads or "") or None}))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in [*variants, ("baseline", {})]}
    for round_ in range(rounds):
        order = [*variants, ("baseline", {})]
        for name, env in order if round_ % 2 == 0 else order[::-1]:
            out = workdir / f"compare-{conversations}-{len(runs[name])}"
            shutil.rmtree(out, ignore_errors=True)
            phase = "baseline" if name == "baseline" else "build"
            with _environment(**env):
                result = run_phase(__file__, ["--phase", phase, str(store), str(out)])
            shutil.rmtree(out, ignore_errors=True)
            runs[name].append(result)
            print(json.dumps({"variant": name, "round": round_, **result}), file=sys.stderr)
    baseline = statistics.median(r["seconds"] for r in runs["baseline"])
    baseline_cpu = statistics.median(r["cpu_s"] for r in runs["baseline"])
    reference = statistics.median(r["seconds"] for r in runs["before"]) if before else None
    rows = []
    for name, measured in runs.items():
        seconds = statistics.median(r["seconds"] for r in measured)
        rows.append(
            {
                "backend": backend,
                "conversations": conversations,
                "variant": name,
                "messages": measured[0]["messages"],
                "median_s": seconds,
                "all_s": [round(r["seconds"], 1) for r in measured],
                "cpu_s": statistics.median(r["cpu_s"] for r in measured),
                "rss_mb": max(r["rss_mb"] for r in measured),
                "vs_baseline": seconds / baseline,
                "cpu_vs_baseline": statistics.median(r["cpu_s"] for r in measured) / baseline_cpu,
                "vs_before": seconds / reference if reference else float("nan"),
            }
        )
    return rows


def compare_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | N conv. | variant | build s (median) | runs s | CPU s | messages/s |"
        " peak RSS MB | / baseline | CPU / baseline CPU | / before |"
    ]
    lines.append("|" + "---|" * 11)
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['conversations']:,} | {r['variant']} | {r['median_s']:.1f} |"
            f" {', '.join(str(s) for s in r['all_s'])} | {r['cpu_s']:.1f} |"
            f" {r['messages'] / r['median_s']:,.0f} | {r['rss_mb']:,.0f} |"
            f" {r['vs_baseline']:.2f}x | {r['cpu_vs_baseline']:.2f}x | {r['vs_before']:.2f}x |"
        )
    return "\n".join(lines)


def bench_shapes(
    conversations: int, workdir: Path, backend: str, shapes: list[str], rounds: int
) -> list[dict[str, Any]]:
    """Builds of ``records`` and each shape, alternating, ``rounds`` times (issue 16)."""
    import statistics

    store = _ready_store(workdir, backend, conversations)
    order = ["records", *[s for s in shapes if s != "records"]]
    seconds: dict[str, list[float]] = {shape: [] for shape in order}
    rows: dict[str, int] = {}
    for round_ in range(rounds):
        for shape in order:
            out = workdir / f"shape-{conversations}-{shape}-{round_}"
            shutil.rmtree(out, ignore_errors=True)
            built = run_phase(__file__, ["--phase", "build", str(store), str(out), shape])
            shutil.rmtree(out, ignore_errors=True)
            seconds[shape].append(built["seconds"])
            rows[shape] = built["rows"]
            print(json.dumps({"shape": shape, "round": round_, **built}), file=sys.stderr)
    base = statistics.median(seconds["records"])
    return [
        {
            "conversations": conversations,
            "shape": shape,
            "rows": rows[shape],
            "median_s": statistics.median(seconds[shape]),
            "min_s": min(seconds[shape]),
            "vs_records": statistics.median(seconds[shape]) / base,
        }
        for shape in order
    ]


def shapes_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| N conv. | shape | rows | median build s | fastest s | vs records |"]
    lines.append("|" + "---|" * 6)
    for r in rows:
        lines.append(
            f"| {r['conversations']:,} | {r['shape']} | {r['rows']:,} | {r['median_s']:.1f} | "
            f"{r['min_s']:.1f} | {r['vs_records']:.3f}x |"
        )
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| backend | policy | N conv. | messages | build s | build CPU s | messages/s |"
        " peak RSS MB | baseline s | build / baseline | naive msg/s | build / naive |"
        " scalar engine msg/s | build / scalar |"
    )
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['policy']} | {r['conversations']:,} | {r['messages']:,} | "
            f"{r['build_s']:.1f} | {r['build_cpu_s']:.1f} | "
            f"{r['msgs_per_s']:,.0f} | {r['rss_mb']:,.0f} | {r['baseline_s']:.1f} | "
            f"{r['vs_baseline']:.2f}x | {_measured(r['naive_msgs_per_s'], ',.0f')} | "
            f"{_measured(r['vs_naive'], '.0f', 'x')} | "
            f"{_measured(r['scalar_msgs_per_s'], ',.0f')} | "
            f"{_measured(r['vs_scalar'], '.1f', 'x')} |"
        )
    return "\n".join(lines)


def _measured(value: float, spec: str, unit: str = "") -> str:
    """``value`` formatted, or a dash where it was not measured (NaN: ``--no-naive``)."""
    return "—" if math.isnan(value) else f"{value:{spec}}{unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--conversations", type=int, action="append", help="N (repeatable) [default: 20000]"
    )
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out"))
    parser.add_argument(
        "--backend",
        choices=["sqlite", "postgresql"],
        action="append",
        help="store backend (repeatable) [default sqlite; postgresql at $TRAINGATE_TEST_PG or "
        f"{PG_URL}]",
    )
    parser.add_argument(
        "--no-naive", action="store_true", help="skip the naive loop and the scalar engine"
    )
    parser.add_argument(
        "--policy",
        default="consumer-2024",
        help="the policies in force, as TRAINGATE_POLICY [default consumer-2024]",
    )
    parser.add_argument("--sample", type=int, default=2000, help="conversations of the naive run")
    parser.add_argument("--keep", action="store_true", help="keep the datasets written")
    parser.add_argument(
        "--shape",
        action="append",
        choices=["records", "chat", "kto", "openai"],
        help="measure builds of this shape against records instead (repeatable; issue 16)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of --shape and of --before builds"
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="a source tree (a git worktree) whose builds to compare, interleaved, with this"
        " tree's and the baseline",
    )
    parser.add_argument(
        "--write-threads",
        type=int,
        action="append",
        help="this tree's builds with this many part-writing threads (repeatable; with"
        " --before or alone)",
    )
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        if name == "ingest":
            result = phase_ingest(Path(rest[0]), int(rest[1]))
        elif name == "build":
            result = phase_build(Path(rest[0]), Path(rest[1]), *rest[2:])
        elif name == "baseline":
            result = phase_baseline(Path(rest[0]), Path(rest[1]))
        elif name == "scalar":
            result = phase_scalar(Path(rest[0]), int(rest[1]))
        else:
            result = phase_naive(Path(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return
    if args.before or args.write_threads:
        compared = []
        for backend in args.backend or ["sqlite"]:
            for n in args.conversations or [20_000]:
                compared += bench_compare(
                    n,
                    args.workdir,
                    backend,
                    before=args.before,
                    write_threads=args.write_threads or [],
                    rounds=args.rounds,
                )
        print(compare_table(compared))
        print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
        return
    if args.shape:
        measured = []
        for backend in args.backend or ["sqlite"]:
            for n in args.conversations or [20_000]:
                measured += bench_shapes(n, args.workdir, backend, args.shape, args.rounds)
        print(shapes_table(measured))
        return
    rows = []
    for backend in args.backend or ["sqlite"]:
        for n in args.conversations or [20_000]:
            rows.append(
                bench(
                    n,
                    args.workdir,
                    args.sample,
                    args.keep,
                    backend,
                    args.policy,
                    naive=not args.no_naive,
                )
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    print(table(rows))


if __name__ == "__main__":
    main()
