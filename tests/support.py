"""Helpers shared by the test modules (no tests, no fixtures: conftest.py keeps those).

- ``run``: the command line in this process (click's ``CliRunner`` on the ``traingate`` group),
  as ``python -m traingate`` would run in a directory; ``run_process``: the real entry point in
  a subprocess, for what needs one (the module's ``__main__``, signals, servers, file
  descriptors). Both without the caller's ``TRAINGATE_*`` variables, both give a
  ``CompletedProcess``.
- ``run_engine``: a build in memory (every record and decision, no files); ``read_dataset``: a
  dataset directory's records; ``all_strings``: every string of a record.
- ``history``: a random but valid history for the Spark tests; ``_engine``: their engine;
  ``_manifest``: a manifest without what differs between engines.
- ``_records``: a batch of ``n`` records numbered from ``start``, for the writer tests.
- ``world``: Alice's three conversations (``ALICE``, ``LISBON``, ``LANDLORD``, ``DINNER``)
  that the page and browser tests share; ``csrf_of``: a page's CSRF token.
- ``moved_between_plans``: an account moved from a team plan to a free one; ``PURPOSES``, the
  purposes of the privacy answer; ``NOT_USED``, its answer for a purpose that uses nothing.
- ``_population``: opted-in accounts with a conversation each, as lines of events;
  ``_server``: ``traingate serve`` in a subprocess on a free port; ``_env``: its environment.
- ``variant_text``, ``variant``: consumer-2024 under another id, its feedback kept until
  deleted or another ``deleted_after``; ``KEEP``: the variant that keeps feedback.
- ``scenario``: five accounts around one instant each, the build scenario (``AS_OF``);
  ``ingest``: events into a store, none refused.
- ``deid_history``: ids, e-mail addresses and times that no record may carry (``IDS``,
  ``MAIL``, ``FORBIDDEN``, ``EMAIL``, ``TIME``); ``leaks``: what of them a record carries.
- ``decide_in_duckdb``: the compiled SQL of a purpose (``_core/policy/compile.py``) run on an
  in-memory DuckDB over one conversation's facts (``_core/facts.py``) given as Arrow ledgers:
  the bulk evaluator's decisions with no store and no ingest.
- ``pg_schema``: a URL of the PostgreSQL server whose search_path is a fresh schema, dropped
  on exit (conftest's ``pg_schema_url`` is one a test; this one serves each Hypothesis example).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import subprocess
import sys
import traceback
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from tests.api_support import free_port, wait_until_serving
from tests.factories import Event, Events, jsonl
from tests.pg import fresh_schema
from traingate._core.deid import EMAIL_PATTERN
from traingate._core.facts import ConversationFacts
from traingate._core.policy import Policy, PolicySet, parse_policy
from traingate._core.policy.compile import LEDGERS, compile_purpose
from traingate._datasets.builder import produce
from traingate._datasets.engines.base import BuildRequest, Engine, Tally
from traingate._datasets.engines.duckdb import DuckDBEngine
from traingate._datasets.engines.scalar import ScalarEngine
from traingate._datasets.records import RECORD_SCHEMA
from traingate._facade import Traingate
from traingate._settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from traingate._datasets.engines.spark import SparkEngine

__all__ = [
    "ALICE",
    "AS_OF",
    "BOB",
    "DINNER",
    "EMAIL",
    "EVENT_PREFIX",
    "FORBIDDEN",
    "IDS",
    "KEEP",
    "LANDLORD",
    "LISBON",
    "MAIL",
    "NOT_USED",
    "PURPOSES",
    "TIME",
    "Built",
    "_engine",
    "_env",
    "_manifest",
    "_population",
    "_records",
    "_server",
    "all_strings",
    "csrf_of",
    "decide_in_duckdb",
    "deid_history",
    "history",
    "ingest",
    "leaks",
    "ledgers_of",
    "moved_between_plans",
    "pg_schema",
    "read_dataset",
    "run",
    "run_engine",
    "run_process",
    "scenario",
    "variant",
    "variant_text",
    "world",
]


def _clean_env(env: dict[str, str] | None) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")}
    return clean | (env or {})


def run_process(
    args: list[str], *, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m traingate ARGS`` in ``cwd``: the real entry point, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "traingate", *args],
        cwd=cwd,
        env=_clean_env(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run(
    args: list[str], *, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``traingate ARGS`` in ``cwd``, in this process: the same exit status, standard output
    and standard error as ``run_process`` (an uncaught exception: status 1, its traceback on
    standard error; a warning: printed on standard error, as Python's default filters do)."""
    from traingate._cli import cli

    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TRAINGATE_")}
    stderr: list[str] = []

    def show(message: Any, category: Any, filename: str, lineno: int, *_: Any) -> None:
        stderr.append(warnings.formatwarning(message, category, filename, lineno))

    with contextlib.chdir(cwd), warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        result = CliRunner().invoke(
            cli, args, input=stdin, env=unset | (env or {}), prog_name="traingate"
        )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr.append("".join(traceback.format_exception(result.exception)))
    return subprocess.CompletedProcess(
        ["traingate", *args], result.exit_code, result.stdout, result.stderr + "".join(stderr)
    )


def ledgers_of(facts: Iterable[ConversationFacts], *, as_of: int) -> dict[str, pa.Table]:
    """The ledgers (``compile.LEDGERS``, by name) that a store holding these conversations
    gives a build as of ``as_of``: the rows of its ledger queries, as Arrow tables."""
    rows: dict[str, list[tuple[Any, ...]]] = {ledger.name: [] for ledger in LEDGERS}
    consents: set[tuple[Any, ...]] = set()
    accounts: set[str] = set()
    for f in facts:
        rows["l_conversations"].append((f.conversation_id, f.account_id, f.mode))
        if f.account_id not in accounts:  # an account's ledgers once, however many chats
            accounts.add(f.account_id)
            rows["l_account_plans"] += [
                (f.account_id, p.at, p.seq, p.plan, p.organization_id) for p in f.plans
            ]
            rows["l_account_deletions"] += [(f.account_id, t) for t in f.account_deleted]
        for (scope, subject, setting), changes in f.consents.items():
            consents.update((scope, subject, setting, c.at, c.seq, int(c.granted)) for c in changes)
        rows["l_conversation_deletions"] += [(f.conversation_id, t) for t in f.conversation_deleted]
        for flag in f.flags:
            rows["l_flags"].append((flag.flag_id, f.conversation_id, flag.policy, flag.at))
            rows["l_flag_clears"] += [(flag.flag_id, t) for t in flag.cleared_at]
    rows["l_consents"] = [
        (scope, subject, setting, at, granted)
        for scope, subject, setting, at, _, granted in sorted(consents)
    ]
    tables: dict[str, pa.Table] = {}
    for ledger in LEDGERS:
        ts = ledger.schema.names.index("ts") if "ts" in ledger.schema.names else None
        kept = [r for r in rows[ledger.name] if ts is None or r[ts] <= as_of]  # WHERE at <= ?
        columns = list(zip(*kept, strict=True)) or [() for _ in ledger.schema]
        tables[ledger.name] = pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(columns, ledger.schema, strict=True)],
            schema=ledger.schema,
        )
    return tables


def decide_in_duckdb(
    *, policy: Policy | PolicySet, facts: ConversationFacts, purpose: str, as_of: int
) -> dict[str, tuple[str | None, str | None]]:
    """Each message of ``facts`` that exists at as-of, by id, with the (basis, first reason)
    of the compiled SQL for ``purpose``, run as the DuckDB engine runs it: the ledgers loaded
    into tables, ``prepare``, then ``decide`` over one batch of the conversation's messages."""
    compiled = compile_purpose(policy=policy, purpose=purpose, as_of=as_of)
    messages = sorted((m for m in facts.messages if m.at <= as_of), key=lambda m: (m.at, m.seq))
    with duckdb.connect() as con:
        for name, table in ledgers_of([facts], as_of=as_of).items():
            con.register("ledger_source", table)
            con.execute(f"CREATE OR REPLACE TABLE {name} AS FROM ledger_source")
            con.unregister("ledger_source")
        for statement in compiled.prepare:
            con.execute(statement)
        batch = pa.table(
            {
                "conversation_id": pa.array([facts.conversation_id] * len(messages), pa.string()),
                "ts": pa.array([m.at for m in messages], pa.int64()),
                "seq": pa.array([m.seq for m in messages], pa.int64()),
                "idx": pa.array(range(len(messages)), pa.int64()),
            }
        )
        con.register("batch", batch)
        bounds = {"lo": facts.conversation_id, "hi": facts.conversation_id}
        con.execute(compiled.decide, bounds)
        decided = con.execute("SELECT idx, basis, reason FROM decided ORDER BY idx").fetchall()
        con.unregister("batch")
    assert [idx for idx, _, _ in decided] == list(range(len(messages)))
    return {messages[idx].message_id: (basis, reason) for idx, basis, reason in decided}


def pg_schema(server: str) -> contextlib.AbstractContextManager[str]:
    """A URL of ``server`` whose search_path is a fresh schema, dropped on exit."""
    return fresh_schema(server, prefix="tg_prop")


@dataclass(frozen=True)
class Built:
    records: list[dict[str, Any]]
    messages: Tally
    reports: Tally
    decisions: list[tuple[str, int, str | None, str | None, int]]


def run_engine(
    tg: Traingate, *, purpose: str, as_of: int, engine: Engine | str = "duckdb"
) -> Built:
    """Every record of a build, in output order, with its decisions, without writing files."""
    if isinstance(engine, str):
        engine = DuckDBEngine() if engine == "duckdb" else ScalarEngine()
    request = BuildRequest(policy=tg.policies, purpose=purpose, as_of=as_of, keep_decisions=True)
    records: list[dict[str, Any]] = []
    messages, reports = Tally(), Tally()
    decisions: list[tuple[str, int, str | None, str | None, int]] = []
    steps = produce(store=tg.store, vault=tg.vault, keys=tg.keys, request=request, engine=engine)
    for step in steps:
        records.extend(step.records.to_pylist())
        messages, reports = messages + step.messages, reports + step.reports
        if step.decisions is not None:
            decisions.extend(
                (r["conversation_id"], r["seq"], r["basis"], r["reason"], r["policy"])
                for r in step.decisions.to_pylist()
            )
    return Built(records=records, messages=messages, reports=reports, decisions=sorted(decisions))


def read_dataset(directory: Path) -> list[dict[str, Any]]:
    """The records of a dataset directory, in file order."""
    manifest = json.loads((directory / "manifest.json").read_text())
    out: list[dict[str, Any]] = []
    for entry in manifest["files"]:
        path = directory / entry["path"]
        if path.suffix == ".parquet":
            table: pa.Table = pq.read_table(path)
            out.extend(table.to_pylist())
        else:
            out.extend(json.loads(line) for line in path.read_text().splitlines())
    return out


def all_strings(value: Any) -> Iterator[str]:
    """Every string in a record: values and keys, at any depth, JSON text parsed too."""
    if isinstance(value, str):
        yield value
        if value[:1] in "{[":
            try:
                parsed = json.loads(value)
            except ValueError:
                return
            yield from all_strings(parsed)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from all_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from all_strings(item)


def history(seed: int, conversations: int = 40) -> list[Event]:
    """A random but valid history: plan changes, account and organization consent granted,
    revoked and granted again, messages before an account exists, ties in time, settings,
    incognito conversations, flags raised and cleared, deletions of conversations and of an
    account (last in the file, so that nothing after them is refused)."""
    rng = random.Random(seed)
    e = Events(prefix=f"h{seed}-")
    texts = ["hi", "mail bob@example.org", "x@y.zz and z@w.io", "plain", "é@x.io ünï"]
    plans = ["free", "pro", "max", "team", "enterprise", "api"]
    setup: list[Event] = [e.consent("o1", Events.t(0), True, scope="organization")]
    accounts = [f"a{i}" for i in range(10)]
    for index, account in enumerate(accounts):
        for change in range(0 if index == 0 else rng.choice([1, 1, 2])):  # a0: no plan ever
            plan = rng.choice(plans)
            org = rng.choice(["o1", "o2"]) if plan in ("team", "enterprise", "api") else None
            setup.append(e.account(account, Events.t(rng.randint(0, 2) + 6 * change), plan, org))
        granted = rng.random() < 0.7
        for day in (rng.randint(0, 3), rng.randint(5, 9), rng.randint(10, 13)):
            setup.append(e.consent(account, Events.t(day, rng.choice([0, 1])), granted))
            granted = not granted if rng.random() < 0.6 else granted
    setup.append(e.consent("o2", Events.t(6), True, scope="organization"))
    talk: list[Event] = []
    later: list[Event] = []
    for c in range(conversations):
        account = rng.choice(accounts)
        conversation = f"c{c:03d}"
        fields: dict[str, Any] = {}
        if rng.random() < 0.2:
            fields["incognito"] = True
        if rng.random() < 0.3:
            fields["custom_style"] = {"tone": rng.choice(texts)}
        if rng.random() < 0.3:
            fields["preferences"] = {rng.choice(texts): 1}
        talk.append(e.conversation(conversation, account, Events.t(rng.randint(0, 3)), **fields))
        for m in range(rng.randint(1, 6)):
            attachment = {
                "attachment_id": f"{conversation}-{m}",
                "source": rng.choice(["upload", "github"]),
                "name": rng.choice(texts),
                "content": rng.choice(texts),
            }
            attachments = [attachment] if rng.random() < 0.2 else []
            talk.append(
                e.message(
                    f"{conversation}-m{m}",
                    conversation,
                    account,
                    Events.t(rng.randint(1, 15), rng.choice([0, 0, 1])),
                    role=rng.choice(["user", "assistant"]),
                    content=rng.choice(texts),
                    attachments=attachments,
                )
            )
        if rng.random() < 0.2:
            later.append(e.flag(f"f-{conversation}", conversation, Events.t(rng.randint(2, 12))))
            if rng.random() < 0.5:
                later.append(e.clear(f"f-{conversation}", Events.t(rng.randint(12, 18))))
        if rng.random() < 0.1:
            later.append(
                e.conversation_deleted(conversation, account, Events.t(rng.randint(5, 18)))
            )
    later.append(e.account_deleted(accounts[-1], Events.t(11)))
    return [*setup, *talk, *later]


def _engine(spark: SparkSession) -> SparkEngine:
    from traingate._datasets.engines.spark import SparkEngine

    # three partitions over a few dozen conversations: batches end mid-partition too
    return SparkEngine(session=spark, partitions=3, batch_messages=7)


def _manifest(directory: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((directory / "manifest.json").read_text())
    assert manifest.pop("engine") in ("duckdb", "spark")
    manifest.pop("signature")
    return manifest


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


ALICE, BOB = "acct-alice", "acct-bob"
LISBON, LANDLORD, DINNER = "conv-lisbon", "conv-landlord", "conv-dinner"


def world() -> list[dict[str, Any]]:
    """Alice, on the free plan, opted in since 2024-01-01, with three conversations (the
    browser tests use the same world)."""
    ev = Events()
    t = ev.t
    drive = {
        "attachment_id": "att-1",
        "source": "google_drive",
        "name": "lisbon-itinerary.docx",
        "content": "Flight TP1351 lands 09:40; hotel in Chiado.",
    }
    return [
        ev.account(ALICE, t(0), plan="free", email="alice@example.com"),
        ev.consent(ALICE, t(0), granted=True, source="privacy_settings"),
        ev.conversation(
            LISBON,
            ALICE,
            t(10),
            title="Two days in Lisbon",
            custom_style={"tone": "concise"},
            preferences={"units": "metric"},
        ),
        ev.message(
            "m-l1",
            LISBON,
            ALICE,
            t(10, 1),
            "user",
            "I have two days in Lisbon. What should I not miss?",
            [drive],
        ),
        ev.message(
            "m-l2",
            LISBON,
            ALICE,
            t(10, 2),
            "assistant",
            "Day one: walk Alfama up to São Jorge Castle, then ride tram 28 to Estrela.\n"
            "Day two: Belém for the tower and pastéis de nata, LX Factory at sunset.",
        ),
        ev.message("m-l3", LISBON, ALICE, t(10, 3), "user", "Is tram 28 worth the queue?"),
        ev.message(
            "m-l4",
            LISBON,
            ALICE,
            t(10, 4),
            "assistant",
            "Board at Martim Moniz before 9:00 and the queue is short; later in the day "
            "walking the same route is often faster.",
        ),
        ev.conversation(LANDLORD, ALICE, t(20), title="Reply to my landlord"),
        ev.message(
            "m-r1",
            LANDLORD,
            ALICE,
            t(20, 1),
            "user",
            "Draft a polite reply to landlord@example.com about the broken heater.",
        ),
        ev.message(
            "m-r2",
            LANDLORD,
            ALICE,
            t(20, 2),
            "assistant",
            "Dear Ms Costa, thank you for your note. The heater in the living room has "
            "stopped working again; could a technician come by this week?",
        ),
        ev.conversation(DINNER, ALICE, t(30), title="Weeknight dinner ideas"),
        ev.message("m-d1", DINNER, ALICE, t(30, 1), "user", "Three dinners in 20 minutes?"),
        ev.message(
            "m-d2",
            DINNER,
            ALICE,
            t(30, 2),
            "assistant",
            "Shakshuka, a chickpea and spinach curry, and lemon-garlic prawn pasta.",
        ),
    ]


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


PURPOSES = (
    "model_training",
    "safety_model_training",
    "safety_review",
    "service_analytics",
    "research",
    "behavior_research",
)
NOT_USED = {"used": False, "bases": [], "conversations": []}


def moved_between_plans(ev: Events) -> list[Event]:
    """As the demo's acct-0001: on ``team`` with org-1 opted in (two conversations), then on
    ``free`` without opt-in from day 100 (one more conversation)."""
    t = ev.t
    return [
        ev.account("a1", t(0), plan="team", organization_id="org-1"),
        ev.consent("org-1", t(1), granted=True, scope="organization"),
        ev.conversation("c1", "a1", t(2), title="Quarterly report"),
        ev.message("m1", "c1", "a1", t(2)),
        ev.message("m2", "c1", "a1", t(2, 5), role="assistant"),
        ev.conversation("c2", "a1", t(3), title="Hiring plan"),
        ev.message("m3", "c2", "a1", t(3)),
        ev.account("a1", t(100), plan="free"),
        ev.conversation("c3", "a1", t(101), title="Holiday"),
        ev.message("m4", "c3", "a1", t(101)),
    ]


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")}
    env["TRAINGATE_DB"] = settings.db_url
    env["TRAINGATE_KEY_FILE"] = str(settings.key_file)
    return env


def _population(accounts: int, messages: int) -> Iterator[str]:
    """Opted-in consumer accounts, one conversation each."""
    n = 0

    def event(body: dict[str, Any]) -> str:
        nonlocal n
        n += 1
        return json.dumps({"event_id": f"p{n}", **body})

    for a in range(accounts):
        acc, conv = f"acc{a}", f"conv{a}"
        yield event(
            {
                "type": "account.updated",
                "at": "2024-01-01T00:00:00Z",
                "account_id": acc,
                "email": f"{acc}@example.com",
                "plan": "free",
                "organization_id": None,
            }
        )
        yield event(
            {
                "type": "consent.updated",
                "at": "2024-01-01T00:00:01Z",
                "scope": "account",
                "account_id": acc,
                "setting": "model_training",
                "granted": True,
                "source": "privacy_settings",
            }
        )
        for m in range(messages):
            yield event(
                {
                    "type": "message.created",
                    "at": f"2024-01-02T00:{m // 60:02d}:{m % 60:02d}Z",
                    "conversation_id": conv,
                    "message_id": f"{conv}-m{m}",
                    "account_id": acc,
                    "role": "user" if m % 2 == 0 else "assistant",
                    "content": f"message {m}: write to {acc}@example.com " + "lorem ipsum " * 8,
                    "attachments": [],
                }
            )


@contextlib.contextmanager
def _server(settings: Settings, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "traingate", "serve", "--port", str(port)),
            *("--datasets-dir", str(tmp_path / "datasets")),
        ],
        env=_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server)
        yield server, base
    finally:
        if server.poll() is None:
            server.terminate()
        server.wait(timeout=30)


def variant_text(
    policy_id: str, *, keep_feedback: bool = False, deleted_after: str | None = None
) -> str:
    """consumer-2024's file under another id: its feedback basis without ``retention`` (kept
    until the receipt holder deletes it) when ``keep_feedback``, and ``deleted_after``."""
    text = Path(bundled_policy_path("consumer-2024")).read_text(encoding="utf-8")
    text = re.sub(r'(?m)^id = "consumer-2024"$', f'id = "{policy_id}"', text, count=1)
    if keep_feedback:
        text = re.sub(r'(?m)^retention = "P10Y"\n', "", text, count=1)
        text = re.sub(r"(?ms)^\[rules\.feedback_expired\]\n(?:[^\[\n].*?\n|\n)*", "", text)
    if deleted_after is not None:
        line = f'deleted_after = "{deleted_after}"'
        text, found = re.subn(r'(?m)^deleted_after = ".*"$', line, text, count=1)
        assert found == 1
    return text


def bundled_policy_path(policy_id: str) -> str:
    import traingate._core.policy

    return str(Path(traingate._core.policy.__file__).with_name(f"{policy_id}.toml"))


def variant(policy_id: str, **changes: Any) -> Policy:
    return parse_policy(variant_text(policy_id, **changes).encode(), source=policy_id)


KEEP = variant("keep-feedback", keep_feedback=True)


def scenario(e: Events) -> list[dict[str, Any]]:
    """Five accounts around one instant each; see the expectations below for who gets what."""
    upload = {"attachment_id": "att-1", "source": "upload", "name": "notes.txt",
              "content": "call carol@example.net"}  # fmt: skip
    drive = {"attachment_id": "att-2", "source": "google_drive", "name": "Plan.docx",
             "content": "drive text"}  # fmt: skip
    return [
        # alice: free, opted in on day 1, revoked on day 10, opted in again on day 11
        e.account("alice", Events.t(0), "free"),
        e.consent("alice", Events.t(1), True),
        e.conversation(
            "conv-alice-1",
            "alice",
            Events.t(1),
            custom_style={"tone": "formal", "signature": "alice@example.com"},
            preferences={"language": "en"},
        ),
        e.message(
            "m-a1",
            "conv-alice-1",
            "alice",
            Events.t(2),
            content="Write to bob@example.org please",
            attachments=[upload, drive],
        ),
        e.message(
            "m-a2", "conv-alice-1", "alice", Events.t(2, 1), role="assistant", content="Sure."
        ),
        e.conversation("conv-alice-2", "alice", Events.t(3)),
        e.message("m-a4", "conv-alice-2", "alice", Events.t(3), content="to be deleted"),
        e.consent("alice", Events.t(10), False),
        e.consent("alice", Events.t(11), True),
        e.message("m-a3", "conv-alice-1", "alice", Events.t(12), content="A new question"),
        e.conversation("conv-alice-1", "alice", Events.t(13), preferences={"language": "fr"}),
        e.conversation_deleted("conv-alice-2", "alice", Events.t(15)),
        # bob: pro, never opted in; his conversation is flagged; he sends feedback
        e.account("bob", Events.t(0), "pro"),
        e.message("m-b1", "conv-bob", "bob", Events.t(4), content="How do I pick a lock?"),
        e.message(
            "m-b2", "conv-bob", "bob", Events.t(4, 5), role="assistant", content="I can't help."
        ),
        e.flag("flag-1", "conv-bob", Events.t(5), reason="lockpicking"),
        e.feedback(
            "fb-1",
            "bob",
            "conv-bob",
            "m-b2",
            Events.t(6),
            rating="up",
            comment="good refusal, mail me at bob@example.org",
            categories=["safety"],
        ),
        # carol: team plan of org-acme, which opted in; her own account consent is ignored
        e.account("carol", Events.t(0), "team", organization_id="org-acme"),
        e.consent("org-acme", Events.t(0), True, scope="organization"),
        e.consent("carol", Events.t(0), False),
        e.message("m-c1", "conv-carol", "carol", Events.t(3), content="Quarterly numbers?"),
        e.message("m-c2", "conv-carol", "carol", Events.t(4), role="assistant", content="Here."),
        # dave: enterprise of org-beta, no organization consent; his own consent has no effect
        e.account("dave", Events.t(0), "enterprise", organization_id="org-beta"),
        e.consent("dave", Events.t(0), True),
        e.message("m-d1", "conv-dave", "dave", Events.t(5), content="Draft a memo"),
        # erin: wrote before her account existed
        e.message("m-e1", "conv-erin", "erin", Events.t(1), content="early bird"),
        e.account("erin", Events.t(2), "free"),
    ]


AS_OF = Events.t(20)


def ingest(tg: Traingate, events: list[dict[str, Any]]) -> None:
    summary = tg.events.ingest(jsonl(events))
    assert summary.rejected == 0, summary.errors


# Ids shaped so that no innocent text contains them.
IDS = {
    "account": ["acct-qz7x01", "acct-qz7x02", "acct-qz7x03"],
    "organization": ["org-qz7x09"],
    "conversation": ["conv-qz7x11", "conv-qz7x12", "conv-qz7x13"],
    "message": [f"msg-qz7x2{i}" for i in range(8)],
    "feedback": ["fb-qz7x31", "fb-qz7x32"],
    "flag": ["flag-qz7x41"],
    "attachment": ["att-qz7x51", "att-qz7x52"],
    "email": ["owner.one@corp-mail.example", "owner.two@corp-mail.example", "o3@x.example"],
}
EVENT_PREFIX = "evt-qz7x"
MAIL = "reach me at jane.doe+ai@mail.example.co.uk or J_D%x@sub-d.example.org."


def deid_history() -> list[dict[str, Any]]:
    e = Events(prefix=EVENT_PREFIX)
    a1, a2, a3 = IDS["account"]
    c1, c2, c3 = IDS["conversation"]
    m = IDS["message"]
    attachments = [
        {"attachment_id": IDS["attachment"][0], "source": "upload",
         "name": "cv of jane.doe@mail.example.com.pdf", "content": MAIL},
        {"attachment_id": IDS["attachment"][1], "source": "gmail", "name": "Inbox",
         "content": "secret thread with boss@corp.example"},
    ]  # fmt: skip
    style = {"persona@mail.example.com": MAIL, "nested": [{"k": MAIL}], "n": 3}
    return [
        e.account(a1, Events.t(0), "free", email=IDS["email"][0]),
        e.account(a2, Events.t(0), "team", IDS["organization"][0], email=IDS["email"][1]),
        e.account(a3, Events.t(0), "max", email=IDS["email"][2]),
        e.consent(a1, Events.t(0), True),
        e.consent(IDS["organization"][0], Events.t(0), True, scope="organization"),
        e.consent(a3, Events.t(0), True, source="trusted_tester_program"),
        e.conversation(c1, a1, Events.t(1), custom_style=style, preferences={"mail": MAIL}),
        e.message(m[0], c1, a1, Events.t(2), content=MAIL, attachments=attachments),
        e.message(m[1], c1, a1, Events.t(2, 30), role="assistant", content="noted: " + MAIL),
        e.message(m[2], c2, a2, Events.t(3), content="org user " + MAIL),
        e.message(m[3], c2, a2, Events.t(3, 1), role="assistant", content="ok"),
        e.message(
            m[4], c3, a3, Events.t(4, 17), content="flag me " + MAIL, attachments=attachments
        ),
        e.flag(IDS["flag"][0], c3, Events.t(5), reason="reason " + MAIL),
        e.feedback(
            IDS["feedback"][0], a1, c1, m[1], Events.t(6), comment=MAIL, categories=[MAIL, "x"]
        ),
        e.feedback(IDS["feedback"][1], a3, c3, m[4], Events.t(7), rating="up", comment=None),
    ]


FORBIDDEN = [value for values in IDS.values() for value in values] + [EVENT_PREFIX]
EMAIL = re.compile(EMAIL_PATTERN)
TIME = re.compile(r"\d{2}:\d{2}|\dT\d{2}|\b\d{9,}\b")  # a time of day, or epoch-like numbers


def leaks(records: list[dict[str, Any]]) -> list[str]:
    found = []
    for record in records:
        for text in all_strings(record):
            found += [f"{value!r} in {text!r}" for value in FORBIDDEN if value in text]
            found += [f"e-mail {m!r} in {text!r}" for m in EMAIL.findall(text)]
            found += [f"time {m!r} in {text!r}" for m in TIME.findall(text)]
    return found
