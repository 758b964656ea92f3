"""Incremental builds (``--since BUILD``, _datasets/incremental.py) are full builds: for random
histories, a base build as of T1, more events (messages, consent changes, plan changes,
deletions, flags and clears, settings, feedback) and a purge at a random instant, the build as
of T2 >= T1 from the base holds the records of a full build as of T2, in the same order, so the
same part files byte for byte, and the same counts and exclusions; it verifies. Both backends
(SQLite carries the examples). Then the refusals, the fallback to a full build after a purge,
and the command line and API routes.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.api_support import Api
from tests.budgets import budget
from tests.factories import Events, jsonl
from tests.histories import VERSIONS, histories, history, instants, ops
from tests.stores import Stores
from tests.support import pg_schema, run
from traingate._core.timeutil import parse_instant
from traingate._errors import BuildError
from traingate._facade import Traingate
from traingate._settings import Settings

DAY = 86_400_000_000
SPECS = pytest.mark.parametrize("spec", [None, VERSIONS], ids=["consumer-2024", "versions"])
# What the manifest says of the records and the decisions (not its documents or signature,
# which name the base in ``since``).
SAME = ("purpose", "as_of", "policy", "policies", "record_format", "shape", "counts",
        "exclusions", "files")  # fmt: skip


def _rows(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(path / "data").to_pylist()
    return rows


def _manifest(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((path / "manifest.json").read_text())
    return manifest


def check_incremental(
    tg: Traingate,
    root: Path,
    *,
    events: list[dict[str, Any]],
    split: int,
    purpose: str,
    t1: int,
    t2: int,
    purge_at: int | None,
) -> None:
    tg.events.ingest(jsonl(events[:split]))
    base = tg.datasets.build(purpose=purpose, out=root / "base", as_of=t1)
    tg.events.ingest(jsonl(events[split:]))
    if purge_at is not None:
        tg.retention.purge(as_of=purge_at)
    try:
        tg.datasets.build(purpose=purpose, out=root / "since", as_of=t2, since=base.build_id)
    except BuildError as exc:  # only a policy starting in between refuses
        assert "comes into force" in str(exc)
        event("refused: a policy starts in between")
        return
    tg.datasets.build(purpose=purpose, out=root / "full", as_of=t2)
    assert _rows(root / "since") == _rows(root / "full")
    made, expected = _manifest(root / "since"), _manifest(root / "full")
    assert {k: made[k] for k in SAME} == {k: expected[k] for k in SAME}
    assert made["since"]["build_id"] == base.build_id
    assert tg.datasets.verify(path=root / "since").ok
    how = "built in full" if made["since"]["full_rebuild"] else "incremental"
    event(how)
    decided = made["since"]["decided"]
    for what, n in (
        ("records of the base", base.manifest["counts"]["records"]),
        ("records now", made["counts"]["records"]),
        ("conversations decided again", None if decided is None else decided["conversations"]),
    ):
        event(f"{what}: {'3 or more' if n is not None and n >= 3 else n}")


later = st.lists(ops, max_size=12)
# The purposes message bases grant, mostly (feedback records are made again in any case).
purposes = st.sampled_from(
    ["model_training", "model_training", "safety_review", "safety_model_training", "research"]
)
purges = st.none() | instants.map(lambda i: parse_instant(Events.t(i[0] + 30, i[1])))
t1s = instants.map(lambda i: parse_instant(Events.t(i[0] + 3, i[1])))


@SPECS
@settings(
    max_examples=budget(quick=10, thorough=30),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    first=histories,
    then=later,
    purpose=purposes,
    t1=t1s,
    gap=st.sampled_from([0, 0, 1, DAY, 3 * DAY, 2000 * DAY]),
    purge_at=purges,
)
def test_an_incremental_build_is_a_full_build_on_sqlite(
    stores: Stores,
    spec: str | None,
    first: list[tuple[Any, ...]],
    then: list[tuple[Any, ...]],
    purpose: str,
    t1: int,
    gap: int,
    purge_at: int | None,
) -> None:
    events = history(first + then)
    split = len(history(first))
    with tempfile.TemporaryDirectory() as tmp:  # the builds' directories, new each example
        check_incremental(
            stores.empty(spec), Path(tmp), events=events, split=split, purpose=purpose, t1=t1,
            t2=t1 + gap, purge_at=purge_at,
        )  # fmt: skip


@pytest.mark.store
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(first=histories, then=later, purpose=purposes, t1=t1s, purge_at=purges)
def test_an_incremental_build_is_a_full_build_on_postgresql(
    pg_server: str,
    first: list[tuple[Any, ...]],
    then: list[tuple[Any, ...]],
    purpose: str,
    t1: int,
    purge_at: int | None,
) -> None:
    events = history(first + then)
    split = len(history(first))
    with (
        tempfile.TemporaryDirectory() as tmp,
        pg_schema(pg_server) as url,
        Traingate.open(Settings(db_url=url, key_file=Path(tmp) / "k.json")) as tg,
    ):
        check_incremental(
            tg, Path(tmp), events=events, split=split, purpose=purpose, t1=t1, t2=t1 + DAY,
            purge_at=purge_at,
        )  # fmt: skip


# -- refusals, the purge fallback, routes -------------------------------------------------------


def _history(e: Events) -> list[dict[str, Any]]:
    return [
        e.account("a", Events.t(0)),
        e.consent("a", Events.t(0), True),
        e.message("m1", "c", "a", Events.t(1), content="one"),
        e.message("m2", "d", "a", Events.t(1), content="two"),
        e.conversation_deleted("d", "a", Events.t(2)),
    ]


T1, T2 = parse_instant(Events.t(3)), parse_instant(Events.t(4))


def test_what_cannot_be_a_base_is_refused(tg: Traingate, tmp_path: Path) -> None:
    tg.events.ingest(jsonl(_history(Events())))
    base = tg.datasets.build(purpose="model_training", out=tmp_path / "b", as_of=T1)
    chat = tg.datasets.build(purpose="model_training", out=tmp_path / "c", as_of=T1, shape="chat")
    lines = tg.datasets.build(
        purpose="model_training", out=tmp_path / "j", as_of=T1, format="jsonl"
    )

    def refused(since: str, match: str, **kwargs: Any) -> None:
        arguments: dict[str, Any] = {"purpose": "model_training", "as_of": T2, **kwargs}
        with pytest.raises(BuildError, match=match):
            tg.datasets.build(out=tmp_path / "x", since=since, **arguments)
        assert not (tmp_path / "x").exists()

    refused("build-nope", "no such build")
    refused(base.build_id, "not 'research'", purpose="research")
    refused(base.build_id, "later than this build's", as_of=T1 - 1)
    refused(chat.build_id, "shape records")
    refused(lines.build_id, "a base must be Parquet")
    refused(base.build_id, "duckdb engine", engine="scalar")
    manifest = tmp_path / "b" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"model_training"', '"research"', 1))
    refused(base.build_id, "not the manifest the build recorded")
    tg.store.db.execute("UPDATE builds SET watermark = NULL WHERE build_id = ?", (chat.build_id,))
    refused(chat.build_id, "no watermark")


def test_another_policy_set_is_refused(tmp_path: Path) -> None:
    def settings_(policy: str) -> Settings:
        return Settings(
            db_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
            key_file=tmp_path / "k.json",
            policy=policy,
        )

    with Traingate.open(settings_("consumer-2024")) as tg:
        tg.events.ingest(jsonl(_history(Events())))
        base = tg.datasets.build(purpose="model_training", out=tmp_path / "b", as_of=T1)
    with (
        Traingate.open(settings_("consumer-2025")) as tg,
        pytest.raises(BuildError, match="policy"),
    ):
        tg.datasets.build(
            purpose="model_training", out=tmp_path / "x", as_of=T2, since=base.build_id
        )
    switch = f"consumer-2024,consumer-2025@{Events.t(3, 1)}"
    with Traingate.open(settings_(switch)) as tg:
        with pytest.raises(BuildError, match="does not have it"):
            tg.datasets.build(
                purpose="model_training", out=tmp_path / "x", as_of=T2, since=base.build_id
            )
        base = tg.datasets.build(purpose="model_training", out=tmp_path / "b2", as_of=T1)
        with pytest.raises(BuildError, match="comes into force"):
            tg.datasets.build(
                purpose="model_training", out=tmp_path / "x", as_of=T2, since=base.build_id
            )


def test_a_purge_of_what_the_base_considered_makes_a_full_build(
    tg: Traingate, tmp_path: Path
) -> None:
    tg.events.ingest(jsonl(_history(Events())))
    base = tg.datasets.build(purpose="model_training", out=tmp_path / "b", as_of=T1)
    assert (
        tg.retention.purge(as_of=T1 + 40 * DAY).messages_purged == 1
    )  # d's message, deleted at T(2)
    since = tg.datasets.build(
        purpose="model_training", out=tmp_path / "s", as_of=T2, since=base.build_id
    )
    full = tg.datasets.build(purpose="model_training", out=tmp_path / "f", as_of=T2)
    assert "purge" in since.manifest["since"]["full_rebuild"]
    assert since.manifest["files"] == full.manifest["files"]
    assert since.manifest["exclusions"] == full.manifest["exclusions"]
    nothing = tg.datasets.build(
        purpose="model_training", out=tmp_path / "n", as_of=T2, since=since.build_id
    )
    assert nothing.manifest["since"] == {
        "build_id": since.build_id,
        "manifest_sha256": hashlib.sha256(
            (tmp_path / "s" / "manifest.json").read_bytes()
        ).hexdigest(),
        "as_of": Events.t(4),
        "decided": {"conversations": 0, "messages_then": 0, "messages_now": 0},
        "full_rebuild": None,
    }
    assert nothing.manifest["files"] == full.manifest["files"]


@pytest.mark.parametrize("shape", ["chat", "openai"])
def test_an_incremental_build_of_another_shape_and_format_is_a_full_build(
    tg: Traingate, tmp_path: Path, shape: str
) -> None:
    e = Events()
    tg.events.ingest(jsonl(_history(e)))
    base = tg.datasets.build(purpose="model_training", out=tmp_path / "b", as_of=T1)
    more = [
        e.message("m3", "c", "a", Events.t(3, 1), role="assistant", content="three"),
        e.message("m4", "e", "a", Events.t(3, 2), role="assistant", content="four"),
    ]
    tg.events.ingest(jsonl(more))
    made = {
        name: tg.datasets.build(
            purpose="model_training", out=tmp_path / name, as_of=T2, shape=shape,
            format="jsonl", **({"since": base.build_id} if name == "since" else {}),
        ).manifest
        for name in ("since", "full")
    }  # fmt: skip
    assert made["since"]["files"] == made["full"]["files"]
    assert made["since"]["shape"] == made["full"]["shape"]
    assert made["since"]["since"]["decided"]["conversations"] == 2
    assert tg.datasets.verify(path=tmp_path / "since").ok


def test_the_command_line_builds_since_a_build(tmp_path: Path) -> None:
    e = Events()
    (tmp_path / "events.jsonl").write_text("\n".join(jsonl(_history(e))) + "\n")
    assert run(["ingest", "events.jsonl"], cwd=tmp_path).returncode == 0
    built = run(
        ["dataset", "build", "--purpose", "model_training", "--as-of", Events.t(3), "--out", "b"],
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    base = json.loads(built.stdout)["build_id"]
    more = [e.message("m3", "c", "a", Events.t(3, 1), content="three")]
    (tmp_path / "more.jsonl").write_text("\n".join(jsonl(more)) + "\n")
    assert run(["ingest", "more.jsonl"], cwd=tmp_path).returncode == 0
    args = ["dataset", "build", "--purpose", "model_training", "--as-of", Events.t(4)]
    since = run([*args, "--out", "s", "--since", base], cwd=tmp_path)
    assert since.returncode == 0, since.stderr
    full = run([*args, "--out", "f"], cwd=tmp_path)
    assert json.loads(since.stdout)["files"] == json.loads(full.stdout)["files"]
    assert _manifest(tmp_path / "s")["since"]["decided"] == {
        "conversations": 1,
        "messages_then": 1,
        "messages_now": 2,
    }
    assert run(["dataset", "verify", "s"], cwd=tmp_path).returncode == 0
    wrong = run([*args, "--out", "w", "--since", "build-0"], cwd=tmp_path)
    assert wrong.returncode != 0
    assert "--since build-0: no such build" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def _wait(api: Api, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        done = api.client.get(f"/v1/datasets/{job_id}", headers=api.as_role("analyst"))
        body: dict[str, Any] = done.json()
        if body["status"] in ("succeeded", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_the_api_builds_since_a_build(api: Api) -> None:
    analyst = api.as_role("analyst")

    def build(**extra: Any) -> dict[str, Any]:
        body = {"purpose": "model_training", "as_of": "2025-06-01T00:00:00Z", **extra}
        started = api.client.post("/v1/datasets", json=body, headers=analyst)
        assert started.status_code == 202, started.text
        assert started.json()["since"] == extra.get("since")
        return _wait(api, started.json()["job_id"])

    base = build()
    assert base["status"] == "succeeded", base
    since = build(since=base["build_id"])
    assert since["status"] == "succeeded", since
    assert since["manifest"]["since"]["build_id"] == base["build_id"]
    assert since["manifest"]["files"] == base["manifest"]["files"]
    failed = build(since="build-none")
    assert failed["status"] == "failed"
    assert "no such build" in failed["error"]
