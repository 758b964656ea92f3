"""An incremental build (``--since``) against a full build of the same state, in one run.

A store of N conversations (``build.generate``) gets a base ``model_training`` build as of
2025-06-01; then about 1% more events arrive (resumed chats: three new messages in each of
a random sample of conversations, and a consent revocation for one account in a hundred of
theirs). The full build and the incremental build of that state as of a day later then run
in turns, each in a fresh process: wall and CPU seconds (with the SQLite snapshot reader's
child process), peak RSS, the messages each decided
(the full build every message; the incremental build the dirty conversations' messages, once
as the base decided them, without content, and once now), and the ratio of the two. Both
builds' part files are compared (equal bytes expected).

Run: ``python benchmarks/incremental.py --conversations 100000 [--backend postgresql]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from _phases import rss_mb, run_phase
from build import _new_store, _open, generate

T1 = "2025-06-01T00:00:00Z"
T2 = "2025-06-02T00:00:00Z"


def _delta(tg: Any, share: float, seed: int = 7) -> list[dict[str, Any]]:
    """About ``share`` of the store's events again, as new events after T1."""
    rng = random.Random(seed)
    events = tg.store.count("events")
    rows = tg.store.db.execute(
        "SELECT conversation_id, account_id FROM conversations ORDER BY conversation_id"
    )
    chosen = rng.sample(rows, max(1, int(events * share) // 3))
    out: list[dict[str, Any]] = []
    for n, (conv, account) in enumerate(chosen):
        for i in range(3):
            out.append(
                {
                    "type": "message.created",
                    "event_id": f"delta-{n}-{i}",
                    "at": f"2025-06-01T01:{n % 60:02d}:{i:02d}Z",
                    "conversation_id": conv,
                    "message_id": f"{conv}-delta-{i}",
                    "account_id": account,
                    "role": "user" if i % 2 == 0 else "assistant",
                    "content": "resumed: and one more thing about the plan",
                    "attachments": [],
                }
            )
        if n % 100 == 0:
            out.append(
                {
                    "type": "consent.updated",
                    "event_id": f"delta-{n}-revoke",
                    "at": "2025-06-01T02:00:00Z",
                    "scope": "account",
                    "account_id": account,
                    "setting": "model_training",
                    "granted": False,
                    "source": "privacy_settings",
                }
            )
    return out


def phase_prepare(store: Path, conversations: int, share: float) -> dict[str, Any]:
    from traingate._core.timeutil import parse_instant

    with _open(store) as tg:
        tg.events.ingest((json.dumps(e) for e in generate(conversations)), batch_size=20_000)
        base = tg.datasets.build(
            purpose="model_training", out=store / "base", as_of=parse_instant(T1)
        )
        delta = _delta(tg, share)
        summary = tg.events.ingest(json.dumps(e) for e in delta)
        events = tg.store.count("events")
    return {
        "base": base.build_id,
        "delta": summary.accepted,
        "events": events,
        "base_records": base.manifest["counts"]["records"],
    }


def _cpu() -> float:
    """CPU seconds of this process and its ended children (the SQLite snapshot reader)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def phase_build(store: Path, out: Path, since: str) -> dict[str, Any]:
    from traingate._core.timeutil import parse_instant
    from traingate._datasets.lineage import forget_build

    with _open(store) as tg:
        started, cpu = time.perf_counter(), _cpu()
        result = tg.datasets.build(
            purpose="model_training", out=out, as_of=parse_instant(T2), since=since or None
        )
        seconds, cpu = time.perf_counter() - started, _cpu() - cpu
        forget_build(tg.store.db, build_id=result.build_id)
    manifest = result.manifest
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "rss_mb": rss_mb(),
        "considered": manifest["exclusions"]["messages"]["considered"],
        "records": manifest["counts"]["records"],
        "since": manifest.get("since"),
        "files": [entry["sha256"] for entry in manifest["files"]],
    }


def bench(conversations: int, backend: str, workdir: Path, rounds: int, share: float) -> None:
    store = workdir / f"incremental-{backend}-{conversations}"
    if not (store / "ready").exists():
        shutil.rmtree(store, ignore_errors=True)
        _new_store(store, backend, conversations)
        prepared = run_phase(
            __file__, ["--phase", "prepare", str(store), str(conversations), str(share)]
        )
        (store / "ready").write_text(json.dumps(prepared))
    prepared = json.loads((store / "ready").read_text())
    print(f"# {backend}, {conversations:,} conversations: {prepared}", flush=True)
    print("| round | build | wall s | CPU s | peak RSS MB | messages decided | records |")
    print("|---|---|---|---|---|---|---|")
    for round_ in range(1, rounds + 1):
        figures = {}
        for name, since in (("full", ""), ("incremental", prepared["base"])):
            out = store / f"out-{name}"
            shutil.rmtree(out, ignore_errors=True)
            figures[name] = run_phase(__file__, ["--phase", "build", str(store), str(out), since])
            shutil.rmtree(out, ignore_errors=True)
        full, incr = figures["full"], figures["incremental"]
        decided = incr["since"]["decided"]
        read = (
            "in full"
            if decided is None
            else f"{decided['messages_then']:,} then + {decided['messages_now']:,} now"
            f" ({decided['conversations']:,} conversations)"
        )
        for name, row, what in (
            ("full", full, f"{full['considered']:,}"),
            ("incremental", incr, read),
        ):
            print(
                f"| {round_} | {name} | {row['seconds']:.1f} | {row['cpu_s']:.1f} |"
                f" {row['rss_mb']:.0f} | {what} | {row['records']:,} |"
            )
        print(
            f"| {round_} | ratio | {incr['seconds'] / full['seconds']:.2f} |"
            f" {incr['cpu_s'] / full['cpu_s']:.2f} | | | parts equal:"
            f" {incr['files'] == full['files']} |",
            flush=True,
        )
    print(f"load average: {os.getloadavg()}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--phase":
        phase, args = sys.argv[2], sys.argv[3:]
        if phase == "prepare":
            result = phase_prepare(Path(args[0]), int(args[1]), float(args[2]))
        else:
            result = phase_build(Path(args[0]), Path(args[1]), args[2])
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, action="append")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workdir", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--share", type=float, default=0.01, help="new events / events")
    options = parser.parse_args()
    for n in options.conversations or [100_000]:
        bench(n, options.backend, options.workdir, options.rounds, options.share)


if __name__ == "__main__":
    main()
