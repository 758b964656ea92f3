"""HTTP ingest under load: ``POST /v1/events`` on loopback from concurrent clients.

    python benchmarks/ingest_http.py [--backends sqlite,postgresql] [--clients 4]
                                     [--seconds 30] [--batch 500] [--pool-size 4]

For each backend: a fresh store (a SQLite file, or a fresh schema of ``TRAINGATE_TEST_PG``), an
``ingest`` token, and ``traingate serve`` in its own process on 127.0.0.1 (nothing listens
beyond loopback). The request bodies are generated before the clock starts (each batch of
``--batch`` events is valid on its own: accounts, consent, conversations and their messages,
distinct per client), then ``--clients`` threads post them back to back, each on its own
keep-alive connection, for ``--seconds``. A batch counts as acknowledged when the answer is 2xx
(its ``accepted`` is added up); after the clients stop, the store's own counts are read. The two
must be equal: every acknowledged event is stored, nothing more. Prints one table.

The machine's cores are shared by the server, the clients and whatever else runs: events/s is
a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

PG_URL = os.environ.get("TRAINGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
HOST = "127.0.0.1"
_VOCABULARY = (
    "the model answer question please explain how why what data privacy training feedback "
    "report conversation message account assistant user help code python error table chart "
    "summary draft letter plan travel recipe budget schedule meeting notes"
)
WORDS = _VOCABULARY.split()


def _at(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_704_067_200 + seconds))


def batch_events(client: int, number: int, size: int, rng: random.Random) -> list[dict[str, Any]]:
    """``size`` valid events of their own: accounts with consent, conversations, messages."""
    events: list[dict[str, Any]] = []
    serial = 0

    def event(kind: str, at: int, **fields: Any) -> None:
        nonlocal serial
        serial += 1
        events.append(
            {"type": kind, "event_id": f"h{client}-{number}-{serial}", "at": _at(at), **fields}
        )

    account_no = 0
    while len(events) < size:
        account_no += 1
        account = f"h{client}-{number}-a{account_no}"
        clock = number * 1_000 + account_no * 10
        event("account.updated", clock, account_id=account, email=f"{account}@example.com",
              plan=rng.choice(["free", "free", "pro", "max"]),
              organization_id=None)  # fmt: skip
        if len(events) < size:
            event("consent.updated", clock + 1, scope="account", account_id=account,
                  setting="model_training", granted=rng.random() < 0.5,
                  source="privacy_settings")  # fmt: skip
        for c in range(4):
            if len(events) >= size:
                break
            conversation = f"{account}-c{c}"
            event("conversation.updated", clock + 2, conversation_id=conversation,
                  account_id=account, title="a title")  # fmt: skip
            for m in range(11):
                if len(events) >= size:
                    break
                words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 60)))
                event("message.created", clock + 3 + m, conversation_id=conversation,
                      message_id=f"{conversation}-m{m}", account_id=account,
                      role="user" if m % 2 == 0 else "assistant", content=words,
                      attachments=[])  # fmt: skip
    return events


@dataclass
class ClientResult:
    requests: int = 0
    acknowledged: int = 0
    failed: int = 0
    exhausted: bool = False
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def client(
    port: int, token: str, bodies: list[bytes], stop: threading.Event, result: ClientResult
) -> None:
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for body in bodies:
        if stop.is_set():
            break
        started = time.perf_counter()
        try:
            connection.request("POST", "/v1/events", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            result.failed += 1
            result.errors.append(repr(exc))
            connection.close()
            connection = http.client.HTTPConnection(HOST, port, timeout=120)
            continue
        result.latencies.append(time.perf_counter() - started)
        result.requests += 1
        if 200 <= response.status < 300:
            result.acknowledged += int(json.loads(payload)["accepted"])
        else:
            result.failed += 1
            result.errors.append(f"{response.status}: {payload[:200]!r}")
    else:
        result.exhausted = True
    connection.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, server: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"traingate serve exited with {server.returncode}")
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=2)
            connection.request("GET", "/openapi.json")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("traingate serve did not start")


def _store(backend: str, workdir: Path) -> tuple[str, str | None]:
    """A database URL for a fresh store, and the PostgreSQL schema to drop afterwards."""
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'traingate.sqlite'}", None
    import psycopg

    schema = f"bench_http_{secrets.token_hex(4)}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}", schema


def _drop(schema: str | None) -> None:
    if schema is None:
        return
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def run(backend: str, *, clients: int, seconds: float, batch: int, pool_size: int,
        max_events: int) -> dict[str, Any]:  # fmt: skip
    from traingate._facade import Traingate
    from traingate._settings import Settings

    with tempfile.TemporaryDirectory(prefix="tg-http-") as tmp:
        workdir = Path(tmp)
        url, schema = _store(backend, workdir)
        key_file = workdir / "keys.json"
        settings = Settings(db_url=url, key_file=key_file)
        try:
            with Traingate.open(settings) as tg:
                token = tg.access.create_token(role="ingest", name="bench").token
                before = tg.store.count("events")
            per_client = max(1, max_events // batch // clients)
            rng = random.Random(11)
            bodies = [
                [json.dumps(batch_events(c, n, batch, rng)).encode() for n in range(per_client)]
                for c in range(clients)
            ]
            port = _free_port()
            server = subprocess.Popen(
                [sys.executable, "-m", "traingate", "--db", url, "--key-file", str(key_file),
                 "serve", "--host", HOST, "--port", str(port), "--pool-size", str(pool_size)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                _wait_ready(port, server)
                stop = threading.Event()
                results = [ClientResult() for _ in range(clients)]
                threads = [
                    threading.Thread(target=client, args=(port, token, bodies[c], stop, results[c]))
                    for c in range(clients)
                ]
                started = time.perf_counter()
                for thread in threads:
                    thread.start()
                stop.wait(seconds)
                stop.set()
                for thread in threads:
                    thread.join()
                elapsed = time.perf_counter() - started
            finally:
                server.send_signal(signal.SIGINT)
                try:
                    server.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    server.kill()
            with Traingate.open(settings) as tg:
                stored = tg.store.count("events") - before
                messages = tg.store.count("messages")
        finally:
            _drop(schema)
    latencies = sorted(x for r in results for x in r.latencies)
    acknowledged = sum(r.acknowledged for r in results)
    return {
        "backend": backend,
        "clients": clients,
        "pool_size": pool_size,
        "seconds": elapsed,
        "requests": sum(r.requests for r in results),
        "failed": sum(r.failed for r in results),
        "exhausted": any(r.exhausted for r in results),
        "acknowledged": acknowledged,
        "stored": stored,
        "messages": messages,
        "events_per_s": acknowledged / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else 0.0,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0,
        "errors": [e for r in results for e in r.errors][:5],
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | clients | pool | seconds | requests | failed | acknowledged | stored | "
        "equal | events/s | p50 ms | p99 ms |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['clients']} | {r['pool_size']} | {r['seconds']:.1f} | "
            f"{r['requests']:,} | {r['failed']} | {r['acknowledged']:,} | {r['stored']:,} | "
            f"{'yes' if r['acknowledged'] == r['stored'] else 'NO'} | "
            f"{r['events_per_s']:,.0f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument(
        "--max-events",
        type=int,
        default=600_000,
        help="events generated in advance (the clients stop early past them)",
    )
    args = parser.parse_args()
    rows = []
    for backend in args.backends.split(","):
        row = run(backend, clients=args.clients, seconds=args.seconds, batch=args.batch,
                  pool_size=args.pool_size, max_events=args.max_events)  # fmt: skip
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    print(table(rows))
    if any(r["acknowledged"] != r["stored"] or r["failed"] for r in rows):
        raise SystemExit("acknowledged and stored events differ, or requests failed")


if __name__ == "__main__":
    main()
