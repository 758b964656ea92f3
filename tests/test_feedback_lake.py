"""Feedback on conversations whose messages are in the lake (issue 20): a report is taken as
known when received whichever holds the messages, the store or a lake read at receipt.

The same history gives the same vault snapshot with its messages in the store, in the lake
only, in both, or offloaded by ``traingate lake export``; the lake read opens only the
conversation's days; ownership and the errors stay those of the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from tests.api_support import Api, running_api, user_report
from tests.budgets import budget
from tests.factories import Events, jsonl
from tests.snapshots import _events, _expected, conversations
from tests.support import run
from traingate._core.timeutil import parse_instant
from traingate._datasets.lake import LAKE_ATTACHMENT, LAKE_SCHEMA, ParquetLake, write_lake
from traingate._errors import StoreError
from traingate._facade import Traingate
from traingate._ingest import LakeArchive
from traingate._settings import Settings

T = Events.t
Event = dict[str, Any]


def _lake_batch(messages: Iterable[Event], *, seq_start: int = 0) -> pa.RecordBatch:
    """``message.created`` events as lake rows, ``seq`` their order in the file."""
    rows = list(messages)
    columns: dict[str, list[Any]] = {name: [] for name in LAKE_SCHEMA.names}
    for n, event in enumerate(rows):
        columns["conversation_id"].append(event["conversation_id"])
        columns["message_id"].append(event["message_id"])
        columns["account_id"].append(event["account_id"])
        columns["role"].append(event["role"])
        columns["at"].append(parse_instant(event["at"]))
        columns["seq"].append(seq_start + n)
        columns["content"].append(event["content"])
        columns["attachments"].append(
            [
                {
                    "attachment_id": a["attachment_id"],
                    "source": a["source"],
                    "name": a.get("name"),
                    "content": a.get("content"),
                }
                for a in event.get("attachments", [])
            ]
        )
    arrays = [
        pa.array(columns["at"], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        if name == "at"
        else pa.array(columns[name], pa.list_(LAKE_ATTACHMENT))
        if name == "attachments"
        else pa.array(columns[name], LAKE_SCHEMA.field(name).type)
        for name in LAKE_SCHEMA.names
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=LAKE_SCHEMA)


def land(root: Path, messages: Iterable[Event], *, name: str | None = None) -> None:
    """Land messages in the lake at ``root`` as another writer would: new files in their
    date partitions, beside what is there."""
    name = name or secrets.token_hex(6)
    staging = root.parent / f".landing-{name}"
    write_lake([_lake_batch(messages)], staging)
    for day in staging.iterdir():
        (root / day.name).mkdir(parents=True, exist_ok=True)
        for part in day.glob("*.parquet"):
            part.rename(root / day.name / f"{name}-{part.name}")
    shutil.rmtree(staging)


def _is_message(event: Event) -> bool:
    return bool(event["type"] == "message.created")


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    root.mkdir()
    return root


@pytest.fixture
def lake_tg(settings: Settings, lake: Path) -> Iterator[Traingate]:
    with Traingate.open(dataclasses.replace(settings, lake=lake)) as app:
        yield app


def _snapshot(tg: Traingate, receipt: str) -> dict[str, Any]:
    _, snapshot = tg.vault.show(receipt)
    return dict(json.loads(snapshot.to_json()))


def _started(case: dict[str, Any]) -> dict[str, Any]:
    """The case with a conversation.updated starting the conversation (as the product sends
    it when the messages go to the lake: the store then knows the owner)."""
    if case["updates"]:
        return case
    return {**case, "updates": [{"offset": min(m["offset"] for m in case["messages"])}]}


@pytest.mark.store
@settings(
    max_examples=budget(quick=15, thorough=40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=conversations().map(_started))
def test_store_lake_and_both_give_the_same_snapshot(
    lake_tg: Traingate, lake: Path, case: dict[str, Any]
) -> None:
    """The property: one history, its messages in the store, in the lake only, or in both
    (a lake export of stored messages), gives one snapshot: SPEC §3's."""
    tag = secrets.token_hex(4)
    snapshots = {}
    for where in ("store", "lake", "both"):
        events = list(_events(case, f"{tag}{where}"))
        messages = [e for e in events if _is_message(e)]
        if where != "store":
            land(lake, messages)
        stored = [e for e in events if where != "lake" or not _is_message(e)]
        summary = lake_tg.events.ingest(jsonl(stored))
        assert summary.rejected == 0, (where, summary.errors)
        ((_, _, receipt),) = summary.receipts
        snapshots[where] = _snapshot(lake_tg, receipt)
    assert snapshots["lake"] == snapshots["store"]
    assert snapshots["both"] == snapshots["store"]
    assert snapshots["store"] == _expected(case)


def _history(e: Events) -> list[Event]:
    """Account ``a``: conversation ``c`` over two days, ``c2`` on a third; account ``b``:
    conversation ``d``."""
    return [
        e.account("a", T(0)),
        e.account("b", T(0)),
        e.conversation("c", "a", T(1), custom_style={"tone": "dry, mail a@example.com"}),
        e.message("m1", "c", "a", T(1, 10), content="write to me at a@example.com"),
        e.message("m2", "c", "a", T(1, 20), role="assistant", content="sure"),
        e.conversation("c", "a", T(2), preferences={"lang": "fr"}),
        e.message(
            "m3",
            "c",
            "a",
            T(2, 5),
            content="see the file",
            attachments=[
                {"attachment_id": "x1", "source": "upload", "name": "n.txt", "content": "b@x.org"},
                {"attachment_id": "x2", "source": "gmail", "name": "mail", "content": "secret"},
            ],
        ),
        e.message("m4", "c", "a", T(2, 9), role="assistant", content="read it"),
        e.message("m5", "c", "a", T(4), content="days later: not in a report of day 2"),
        e.conversation("c2", "a", T(3)),
        e.message("k1", "c2", "a", T(3, 1)),
        e.conversation("d", "b", T(1)),
        e.message("n1", "d", "b", T(1, 1)),
    ]


def _reports(e: Events) -> list[Event]:
    return [
        e.feedback("f1", "a", "c", "m2", T(2, 7), comment="from a@example.com"),
        e.feedback("f2", "a", "c", "m4", T(3), rating="up", categories=["ok"]),
        e.feedback("f3", "b", "d", "n1", T(1, 2)),
    ]


@pytest.mark.store
def test_messages_offloaded_by_lake_export_give_the_snapshots_of_the_store(
    lake_tg: Traingate, lake: Path, tmp_path: Path
) -> None:
    """A store holding the messages exports them (``traingate lake export``); a store holding
    everything but the messages, reading that lake, vaults the same snapshots."""
    e = Events()
    history, reports = _history(e), _reports(e)
    source = Settings(db_url=f"sqlite:///{tmp_path / 'src.sqlite'}", key_file=tmp_path / "k.json")
    with Traingate.open(source) as full:
        summary = full.events.ingest(jsonl([*history, *reports]))
        assert summary.rejected == 0, summary.errors
        expected = [_snapshot(full, receipt) for _, _, receipt in summary.receipts]
        lake.rmdir()
        full.datasets.export_lake(out=lake)
    summary = lake_tg.events.ingest(jsonl([*(x for x in history if not _is_message(x)), *reports]))
    assert summary.rejected == 0, summary.errors
    assert [_snapshot(lake_tg, receipt) for _, _, receipt in summary.receipts] == expected
    assert expected[0]["messages"][0]["content"] == "write to me at [email]"
    assert len(expected[1]["messages"]) == 4  # m5, days later, is not in it


@pytest.mark.store
def test_older_messages_in_the_lake_and_recent_ones_in_the_store(
    lake_tg: Traingate, lake: Path, tmp_path: Path
) -> None:
    """A rolling window: the conversation's first day in the lake, the next in the store."""
    e = Events()
    history, reports = _history(e), _reports(e)
    older = [x for x in history if _is_message(x) and x["at"] < T(2)]
    land(lake, older)
    summary = lake_tg.events.ingest(jsonl([*(x for x in history if x not in older), *reports]))
    assert summary.rejected == 0, summary.errors
    split = [_snapshot(lake_tg, receipt) for _, _, receipt in summary.receipts]
    source = Settings(db_url=f"sqlite:///{tmp_path / 'src.sqlite'}", key_file=tmp_path / "k.json")
    with Traingate.open(source) as full:
        with_store = full.events.ingest(jsonl([*history, *reports]))
        assert split == [_snapshot(full, receipt) for _, _, receipt in with_store.receipts]
    assert [len(s["messages"]) for s in split] == [3, 4, 1]


MISSING = "the store holds no message 'm9' in conversation 'c'"


def _case_missing(e: Events) -> tuple[list[Event], list[Event]]:
    return [], []


def _case_another_accounts_row(e: Events) -> tuple[list[Event], list[Event]]:
    return [], [e.message("m9", "c", "b", T(1, 15))]  # a lake row naming account b


def _case_another_conversation(e: Events) -> tuple[list[Event], list[Event]]:
    return [e.conversation("c9", "a", T(1))], [e.message("m9", "c9", "a", T(1, 15))]


def _case_later_day(e: Events) -> tuple[list[Event], list[Event]]:
    return [], [e.message("m9", "c", "a", T(3))]  # a partition after the report's


CASES = {
    "missing everywhere": (_case_missing, MISSING),
    "lake row of another account": (_case_another_accounts_row, MISSING),
    "lake row of another conversation": (_case_another_conversation, MISSING),
    "lake row days after the report": (_case_later_day, MISSING),
}


@pytest.mark.store
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_message_the_lake_does_not_hold_for_the_owner_is_rejected_alike(
    lake_tg: Traingate, lake: Path, name: str
) -> None:
    """Missing, another account's or another conversation's: one error, the store's."""
    e = Events()
    setup, expected = CASES[name]
    stored, landed = setup(e)
    messages = [x for x in _history(e) if _is_message(x)]
    land(lake, [*messages, *landed])
    lake_tg.events.ingest(jsonl([*(x for x in _history(e) if not _is_message(x)), *stored]))
    summary = lake_tg.events.ingest(jsonl([e.feedback("f9", "a", "c", "m9", T(2))]))
    assert summary.rejected == 1 and not summary.receipts
    error = summary.errors[0].error
    assert error.endswith(f"field 'message_id': {expected}"), error


@pytest.mark.store
def test_ownership_and_time_checks_hold_for_lake_messages(lake_tg: Traingate, lake: Path) -> None:
    e = Events()
    history = _history(e)
    land(lake, [x for x in history if _is_message(x)])
    # a conversation the store does not know, though the lake holds it
    land(lake, [e.message("z1", "zz", "a", T(1, 3))])
    lake_tg.events.ingest(jsonl([x for x in history if not _is_message(x)]))
    summary = lake_tg.events.ingest(
        jsonl(
            [
                e.feedback("g1", "b", "c", "m1", T(2)),
                e.feedback("g2", "a", "zz", "z1", T(2)),
                e.feedback("g3", "a", "c", "m4", T(2, 8)),
                e.feedback("g4", "a", "c", "m4", T(2, 9)),
            ]
        )
    )
    errors = [err.error.split("field ", 1)[1] for err in summary.errors]
    assert errors == [
        "'account_id': conversation 'c' belongs to another account",
        "'message_id': the store holds no message 'z1' in conversation 'zz'",
        "'message_id': the rated message is later than the report",
    ]
    assert summary.accepted == 1 and len(summary.receipts) == 1


@pytest.mark.store
def test_the_read_opens_only_the_conversations_days(lake_tg: Traingate, lake: Path) -> None:
    """Partitions before the day ahead of the conversation's first event and after the
    report's day are never opened: broken files there change nothing. A broken file in one
    of its days fails the ingest as a store error, vaulting nothing."""
    e = Events()
    history = _history(e)
    land(lake, [x for x in history if _is_message(x)])
    for day in ("2023-06-01", "2024-01-01", "2024-01-05", "2030-01-01"):
        (lake / f"date={day}").mkdir(exist_ok=True)
        (lake / f"date={day}" / "broken.parquet").write_bytes(b"not parquet")
    lake_tg.events.ingest(jsonl([x for x in history if not _is_message(x)]))
    # c starts on 2024-01-02 (T(1)): its read covers 2024-01-01 .. the report's day
    summary = lake_tg.events.ingest(jsonl([e.feedback("f1", "a", "c2", "k1", T(3, 2))]))
    assert summary.rejected == 0 and len(summary.receipts) == 1, summary.errors
    with pytest.raises(StoreError, match=r"date=2024-01-01/broken\.parquet"):
        lake_tg.events.ingest(jsonl([e.feedback("f2", "a", "c", "m2", T(2))]))
    assert lake_tg.store.known_feedback([lake_tg.keys.id_hash("feedback", "f2")]) == set()


def test_conversation_messages_reads_the_named_days(lake: Path) -> None:
    e = Events()
    land(lake, [x for x in _history(e) if _is_message(x)], name="one")
    land(lake, [e.message("m6", "c", "a", T(2, 1))], name="two")
    reader = ParquetLake(root=lake)
    since, until = parse_instant(T(1)), parse_instant(T(2))
    rows = reader.conversation_messages(conversation_id="c", since=since, until=until)
    assert [(r.account_id, r.message.message_id) for r in rows] == [
        ("a", "m1"),
        ("a", "m2"),
        ("a", "m6"),
        ("a", "m3"),
        ("a", "m4"),
    ]
    assert [p.name for p in reader.day_partitions(since=since, until=until)] == [
        "date=2024-01-02",
        "date=2024-01-03",
    ]
    attachments = rows[3].message.attachments
    assert [a["source"] for a in attachments] == ["upload", "gmail"]


@pytest.mark.store
@contextlib.contextmanager
def _lake_api(settings: Settings, lake: Path, tmp_path: Path) -> Iterator[Api]:
    """A server reading ``lake``, its store holding the history but for its messages, which
    are in the lake."""
    history = _history(Events(prefix="h"))
    land(lake, [x for x in history if _is_message(x)])
    with running_api(dataclasses.replace(settings, lake=lake), tmp_path / "datasets") as api:
        api.ingest([x for x in history if not _is_message(x)])
        yield api


def _post_report(api: Api, report: Event) -> Any:
    return api.client.post("/v1/events?receipts=true", json=[report], headers=api.as_role("ingest"))


def test_api_events_and_end_user_feedback_on_lake_messages(
    settings: Settings, lake: Path, tmp_path: Path
) -> None:
    e = Events()
    with _lake_api(settings, lake, tmp_path) as api:
        done = _post_report(api, e.feedback("f1", "a", "c", "m2", T(2, 7)))
        assert done.status_code == 200, done.text
        receipt = done.json()["receipts"][0]["receipt"]
        shown = api.client.get(f"/v1/feedback/{receipt}", headers=api.as_role("ingest"))
        assert [m["content"] for m in shown.json()["snapshot"]["messages"]] == [
            "write to me at [email]",
            "sure",
            "see the file",
        ]
        user = api.as_user("a")
        mine = api.client.post(
            "/v1/feedback", json=user_report(e.feedback("x", "a", "c", "m4", T(0))), headers=user
        )
        assert mine.status_code == 201, mine.text
        theirs = api.client.post(
            "/v1/feedback", json=user_report(e.feedback("x", "a", "d", "n1", T(0))), headers=user
        )
        unknown = api.client.post(
            "/v1/feedback", json=user_report(e.feedback("x", "a", "q", "n1", T(0))), headers=user
        )
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.json()["error"] == {
            **unknown.json()["error"],
            "message": unknown.json()["error"]["message"].replace("'q'", "'d'"),
        }


def test_cli_ingest_reads_the_lake_named_by_traingate_lake(tmp_path: Path, lake: Path) -> None:
    e = Events()
    history = _history(e)
    land(lake, [x for x in history if _is_message(x)])
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(jsonl([*(x for x in history if not _is_message(x))])) + "\n")
    assert run(["ingest", str(events)], cwd=tmp_path).returncode == 0
    report = tmp_path / "report.jsonl"
    report.write_text(json.dumps(e.feedback("f1", "a", "c", "m4", T(2, 10))) + "\n")
    receipts = tmp_path / "receipts.jsonl"
    without = run(["ingest", str(report)], cwd=tmp_path)
    assert json.loads(without.stdout)["rejected"] == 1  # no lake named: the store's answer
    done = run(
        ["ingest", str(report), "--receipts", str(receipts)],
        cwd=tmp_path,
        env={"TRAINGATE_LAKE": str(lake)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accepted"] == 1
    receipt = json.loads(receipts.read_text())["receipt"]
    shown = run(["feedback", "show", "--receipt", receipt], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["snapshot"]["messages"]) == 4


def test_settings_read_traingate_lake() -> None:
    resolved = Settings.resolve(environ={"TRAINGATE_LAKE": "some/lake"})
    assert resolved.lake is not None and resolved.lake.is_absolute()
    assert resolved.lake.parts[-2:] == ("some", "lake")
    assert Settings.resolve(environ={}).lake is None


def test_row_groups_whose_statistics_exclude_the_conversation_are_not_read(
    lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that sorts a partition by conversation lets the read skip row groups: of
    the groups ``c1``, ``c2``, ``c3``, only the second is read for ``c2``."""
    import pyarrow.parquet as pq

    e = Events()
    messages = [
        e.message(f"{conv}-m{k}", conv, "a", T(1, k), content=f"{conv} {k}")
        for conv in ("c1", "c2", "c3")
        for k in range(4)
    ]
    (lake / "date=2024-01-02").mkdir()
    table = pa.Table.from_batches([_lake_batch(messages)])
    pq.write_table(table, lake / "date=2024-01-02" / "part-0.parquet", row_group_size=4)
    read: list[int] = []
    original = pq.ParquetFile.read_row_group

    def counting(self: pq.ParquetFile, i: int, *args: Any, **kwargs: Any) -> pa.Table:
        read.append(i)
        return original(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    at = parse_instant(T(1))
    rows = ParquetLake(root=lake).conversation_messages(conversation_id="c2", since=at, until=at)
    assert [r.message.content for r in rows] == ["c2 0", "c2 1", "c2 2", "c2 3"]
    assert read == [1, 1]  # its ids, then its other columns


@pytest.mark.store
def test_an_unreadable_lake_is_a_503_and_vaults_nothing(
    settings: Settings, lake: Path, tmp_path: Path
) -> None:
    e = Events()
    with _lake_api(settings, lake, tmp_path) as api:
        (lake / "date=2024-01-03" / "broken.parquet").write_bytes(b"PAR1 but not parquet")
        done = _post_report(api, e.feedback("f1", "a", "c", "m2", T(2, 7)))
        assert done.status_code == 503, done.text
        assert done.json()["error"]["code"] == "store_unavailable"
        assert str(lake) not in done.text  # the path is for the server's log
        (lake / "date=2024-01-03" / "broken.parquet").unlink()
        again = _post_report(api, e.feedback("f1", "a", "c", "m2", T(2, 7)))
        assert again.status_code == 200 and len(again.json()["receipts"]) == 1, again.text


@dataclasses.dataclass
class _Recording:
    """A lake archive that notes whether each read ran inside the store's transaction."""

    inner: LakeArchive
    db: Any
    inside: list[bool] = dataclasses.field(default_factory=list)

    def conversation_messages(
        self, *, conversation_id: str, owner: str, since: int, until: int
    ) -> list[Any]:
        self.inside.append(self.db._depth > 0)
        return self.inner.conversation_messages(
            conversation_id=conversation_id, owner=owner, since=since, until=until
        )


@pytest.mark.store
def test_the_lake_is_read_before_the_write_lock_unless_the_batch_changes_the_conversation(
    lake_tg: Traingate, lake: Path
) -> None:
    e = Events()
    history = _history(e)
    land(lake, [x for x in history if _is_message(x)])
    land(lake, [e.message("new-m", "new", "a", T(5, 3))])
    lake_tg.events.ingest(jsonl([x for x in history if not _is_message(x)]))
    assert isinstance(lake_tg.archive, LakeArchive)
    recording = _Recording(inner=lake_tg.archive, db=lake_tg.store.db)
    lake_tg.archive = recording
    summary = lake_tg.events.ingest(jsonl(_reports(e)))
    assert summary.accepted == 3 and recording.inside == [False, False, False]
    recording.inside.clear()
    summary = lake_tg.events.ingest(
        jsonl(
            [
                e.conversation("new", "a", T(5)),  # the batch gives the conversation its owner
                e.feedback("f-new", "a", "new", "new-m", T(5, 4)),
            ]
        )
    )
    assert summary.accepted == 2, summary.errors
    assert recording.inside == [True]
