"""Ingest benchmark: events/s and peak RSS of `traingate ingest`, against a bare executemany.

    python benchmarks/ingest.py [--events 1000000] [--backends sqlite,postgresql]

Generates a deterministic JSONL file of N events (accounts, consent, conversations of ~8
messages, a little feedback, flags and clears), then for each backend, in separate processes so
peak RSS is each run's own:

- traingate: the full ingest (validation, idempotency, state checks, vault snapshots), with
  its default parse workers (``traingate._ingest.default_workers()``: one less than the cores,
  so one on two cores) parsing the lines past the first 20,000 while it checks and writes;
- baseline: ``json.loads`` of each line and a bare ``executemany`` of the same rows into the same
  tables of a fresh database of the same backend, with no checks at all, committed every
  ``DEFAULT_BATCH`` events as traingate commits.

Prints one table with both and the ratio (traingate time / baseline time), and the CPU
seconds of each (for traingate, its own and its parse workers'), with the CPU ratio of the
ingesting process to the baseline's, and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _phases import rss_mb, run_phase

PG_URL = os.environ.get("TRAINGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
WORDS = tuple(
    [
        "the",
        "model",
        "answer",
        "question",
        "please",
        "explain",
        "how",
        "why",
        "what",
        "data",
        "privacy",
        "training",
        "feedback",
        "report",
        "conversation",
        "message",
        "account",
        "assistant",
        "user",
        "help",
        "code",
        "python",
        "error",
        "table",
        "chart",
        "summary",
        "draft",
        "email",
        "letter",
        "plan",
        "travel",
        "recipe",
        "budget",
        "schedule",
        "meeting",
        "notes",
    ]
)


def _at(seconds: int) -> str:
    base = 1_704_067_200  # 2024-01-01T00:00:00Z
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + seconds))


def _text(rng: random.Random, low: int, high: int) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
    if rng.random() < 0.05:
        words.insert(rng.randrange(len(words)), f"someone{rng.randint(1, 999)}@example.org")
    return " ".join(words)


def generate(n_events: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Deterministic events: per account an account event, sometimes consent, then
    conversations of about eight messages, with occasional feedback and flags."""
    rng = random.Random(seed)
    count = 0
    account = 0
    clock = 0
    while True:
        account += 1
        acct = f"acct-{account:07d}"
        clock += 60
        plan = rng.choice(["free", "free", "pro", "max", "team"])
        org = f"org-{account % 97}" if plan == "team" else None
        yield {
            "type": "account.updated",
            "event_id": f"ev-{count}",
            "at": _at(clock),
            "account_id": acct,
            "email": f"{acct}@example.com",
            "plan": plan,
            "organization_id": org,
        }
        count += 1
        if rng.random() < 0.3:
            yield {
                "type": "consent.updated",
                "event_id": f"ev-{count}",
                "at": _at(clock + 1),
                "scope": "account",
                "account_id": acct,
                "setting": "model_training",
                "granted": True,
                "source": "privacy_settings",
            }
            count += 1
        for conv_index in range(rng.randint(1, 4)):
            conv = f"{acct}-c{conv_index}"
            clock += 5
            yield {
                "type": "conversation.updated",
                "event_id": f"ev-{count}",
                "at": _at(clock),
                "conversation_id": conv,
                "account_id": acct,
                "title": _text(rng, 2, 5),
            }
            count += 1
            messages = []
            for index in range(rng.randint(6, 10)):
                clock += 3
                mid = f"{conv}-m{index}"
                role = "user" if index % 2 == 0 else "assistant"
                content = _text(rng, 10, 40) if role == "user" else _text(rng, 40, 160)
                messages.append(mid)
                yield {
                    "type": "message.created",
                    "event_id": f"ev-{count}",
                    "at": _at(clock),
                    "conversation_id": conv,
                    "message_id": mid,
                    "account_id": acct,
                    "role": role,
                    "content": content,
                    "attachments": [],
                }
                count += 1
                if count >= n_events:
                    return
            if rng.random() < 0.03:
                yield {
                    "type": "feedback.submitted",
                    "event_id": f"ev-{count}",
                    "at": _at(clock + 1),
                    "feedback_id": f"{conv}-fb",
                    "account_id": acct,
                    "conversation_id": conv,
                    "message_id": messages[-1],
                    "rating": rng.choice(["up", "down"]),
                    "comment": _text(rng, 3, 12),
                    "categories": ["helpful"],
                }
                count += 1
            if rng.random() < 0.02:
                yield {
                    "type": "safety.flagged",
                    "event_id": f"ev-{count}",
                    "at": _at(clock + 2),
                    "flag_id": f"{conv}-flag",
                    "conversation_id": conv,
                    "policy": "usage_policy",
                    "reason": "automated",
                }
                count += 1
            if count >= n_events:
                return


def write_file(path: Path, n_events: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for event in generate(n_events):
            out.write(json.dumps(event))
            out.write("\n")


# --- the two measured phases, each run in its own process --------------------------------------


def _fresh_db_url(backend: str, workdir: Path, name: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{workdir / name / 'traingate.sqlite'}"
    import psycopg

    schema = f"tg_bench_{name}_{os.getpid()}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user and system) of this process, and of its ended child processes (the
    parse workers, once ingest has waited for them)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def phase_traingate(file: Path, db_url: str, key_file: Path) -> dict[str, Any]:
    from traingate._facade import Traingate
    from traingate._settings import Settings

    with Traingate.open(Settings(db_url=db_url, key_file=key_file)) as tg:
        started, cpu = time.perf_counter(), _cpu_seconds()
        with file.open(encoding="utf-8") as lines:
            summary = tg.events.ingest(lines)
        elapsed = time.perf_counter() - started
        own, workers = (after - before for after, before in zip(_cpu_seconds(), cpu, strict=True))
    assert summary.rejected == 0, summary.errors[:3]
    return {"seconds": elapsed, "events": summary.accepted, "cpu": own, "worker_cpu": workers}


def _bare_rows(
    event: dict[str, Any], seq: int, seen_conversations: set[str]
) -> list[tuple[str, tuple[Any, ...]]]:
    """The rows traingate writes for one event, taken straight from the JSON."""
    kind = event["type"]
    if kind == "message.created":
        return [
            (
                "messages",
                (
                    event["message_id"],
                    seq,
                    event["conversation_id"],
                    event["account_id"],
                    event["role"],
                    0,
                    event["content"],
                    "[]",
                ),
            )
        ]
    if kind == "account.updated":
        return [
            (
                "account_plans",
                (
                    seq,
                    event["account_id"],
                    0,
                    event["plan"],
                    event["organization_id"],
                    event["email"],
                ),
            )
        ]
    if kind == "consent.updated":
        return [
            (
                "consents",
                (seq, event["scope"], event["account_id"], 0, event["granted"], event["source"]),
            )
        ]
    if kind == "safety.flagged":
        return [
            (
                "flags",
                (
                    event["flag_id"],
                    seq,
                    event["conversation_id"],
                    event["policy"],
                    0,
                    event["reason"],
                ),
            )
        ]
    if kind == "conversation.updated":
        rows: list[tuple[str, tuple[Any, ...]]] = [
            (
                "conversation_settings",
                (seq, event["conversation_id"], 0, json.dumps({"title": event["title"]})),
            )
        ]
        if event["conversation_id"] not in seen_conversations:
            seen_conversations.add(event["conversation_id"])
            rows.append(("conversations", (event["conversation_id"], event["account_id"], seq)))
        return rows
    return []


def phase_baseline(file: Path, db_url: str) -> dict[str, Any]:
    """json.loads + executemany of the same rows into the same tables, no checks."""
    from traingate._ingest import DEFAULT_BATCH
    from traingate._store.db import connect
    from traingate._store.schema import migrate

    db = connect(db_url)
    migrate(db)
    batches: dict[str, list[tuple[Any, ...]]] = {}
    sql = {
        "events": "INSERT INTO events (seq, event_key, body_hash, type, at) VALUES (?, ?, ?, ?, ?)",
        "messages": "INSERT INTO messages (message_id, event_seq, conversation_id, account_id,"
        " role, at, content, attachments) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        "account_plans": "INSERT INTO account_plans (event_seq, account_id, at, plan,"
        " organization_id, email) VALUES (?, ?, ?, ?, ?, ?)",
        "consents": "INSERT INTO consents (event_seq, scope, subject, at, granted, source)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        "conversations": "INSERT INTO conversations (conversation_id, account_id, first_seq)"
        " VALUES (?, ?, ?)",
        "conversation_settings": "INSERT INTO conversation_settings (event_seq,"
        " conversation_id, at, fields) VALUES (?, ?, ?, ?)",
        "flags": "INSERT INTO flags (flag_id, event_seq, conversation_id, policy, at, reason)"
        " VALUES (?, ?, ?, ?, ?, ?)",
    }
    seen_conversations: set[str] = set()

    def flush() -> None:
        with db.transaction():
            for table, rows in batches.items():
                db.executemany(sql[table], rows)
        batches.clear()

    started, cpu = time.perf_counter(), _cpu_seconds()
    count = 0
    with file.open(encoding="utf-8") as lines:
        for seq, line in enumerate(lines, start=1):
            event = json.loads(line)
            batches.setdefault("events", []).append((seq, event["event_id"], "", event["type"], 0))
            for table, row in _bare_rows(event, seq, seen_conversations):
                batches.setdefault(table, []).append(row)
            count += 1
            if count % DEFAULT_BATCH == 0:  # the same transactions as traingate's
                flush()
    flush()
    elapsed = time.perf_counter() - started
    own = _cpu_seconds()[0] - cpu[0]
    db.close()
    return {"seconds": elapsed, "events": count, "cpu": own, "worker_cpu": 0.0}


def _child(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    url = _fresh_db_url(args.backend, workdir, args.phase)
    if args.phase == "traingate":
        result = phase_traingate(Path(args.file), url, workdir / "keys.json")
    else:
        result = phase_baseline(Path(args.file), url)
    result["peak_rss_mb"] = rss_mb()
    print(json.dumps(result))


def _run_child(phase: str, backend: str, file: Path, workdir: Path) -> dict[str, Any]:
    return run_phase(
        __file__,
        [
            "--child",
            "--phase",
            phase,
            "--backend",
            backend,
            "--file",
            str(file),
            "--workdir",
            str(workdir),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    with tempfile.TemporaryDirectory(prefix="tg-bench-") as tmp:
        workdir = Path(tmp)
        file = workdir / "events.jsonl"
        started = time.perf_counter()
        write_file(file, args.events)
        print(
            f"generated {args.events:,} events ({file.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - started:.1f}s"
        )
        from traingate._ingest import default_workers

        print(f"traingate parses with {default_workers()} worker process(es) beside its own")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(
            f"{'backend':<11} {'run':<10} {'events/s':>10} {'seconds':>8} {'peak RSS':>9}"
            f" {'ratio':>6} {'CPU s':>6} {'worker CPU s':>12} {'CPU ratio':>9}"
        )
        for backend in args.backends.split(","):
            ours = _run_child("traingate", backend, file, workdir)
            base = _run_child("baseline", backend, file, workdir)
            ratio = ours["seconds"] / base["seconds"]
            cpu_ratio = ours["cpu"] / base["cpu"]
            for name, result in (("traingate", ours), ("baseline", base)):
                rate = result["events"] / result["seconds"]
                print(
                    f"{backend:<11} {name:<10} {rate:>10,.0f} {result['seconds']:>8.1f}"
                    f" {result['peak_rss_mb']:>7.0f}MB"
                    f" {ratio if name == 'traingate' else 1.0:>6.2f}"
                    f" {result['cpu']:>6.1f} {result['worker_cpu']:>12.1f}"
                    f" {cpu_ratio if name == 'traingate' else 1.0:>9.2f}"
                )
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
