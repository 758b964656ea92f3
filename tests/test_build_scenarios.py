"""Dataset builds on a fixed scenario, every purpose, hand-checked records; what revocation,
deletion and flag clearing change in a later build; atomic output; deterministic bytes.
Every test runs on SQLite and PostgreSQL (the ``tg`` fixture)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.factories import Events
from tests.support import AS_OF, ingest, read_dataset, scenario
from traingate._core.timeutil import parse_instant
from traingate._datasets import builder as builder_module
from traingate._datasets.records import conversation_record_id
from traingate._errors import BuildError, PolicyError
from traingate._facade import Traingate

T = Events.t


def conversation_record(
    tg: Traingate, conversation_id: str, basis: str, date: str, messages: list[dict[str, Any]],
    *, custom_style: str | None = None, preferences: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "record_id": conversation_record_id(tg.keys.signing_key, conversation_id, basis),
        "kind": "conversation",
        "basis": basis,
        "date": date,
        "messages": messages,
        "custom_style": custom_style,
        "preferences": preferences,
        "rating": None,
        "comment": None,
        "categories": None,
        "rated_message_index": None,
    }


def msg(content: str, role: str = "user", attachments: list[Any] | None = None) -> dict[str, Any]:
    return {"role": role, "content": content, "attachments": attachments or []}


BOB_MESSAGES = [msg("How do I pick a lock?"), msg("I can't help.", "assistant")]


def feedback_expected() -> dict[str, Any]:
    """Bob's report, as its snapshot was taken on day 6 (record_id is checked separately)."""
    return {
        "kind": "feedback",
        "basis": "feedback",
        "date": "2024-01-05",
        "messages": BOB_MESSAGES,
        "custom_style": None,
        "preferences": None,
        "rating": "up",
        "comment": "good refusal, mail me at [email]",
        "categories": ["safety"],
        "rated_message_index": 1,
    }


def build(tg: Traingate, out: Path, purpose: str, as_of: str = AS_OF, **kw: Any) -> Any:
    return tg.datasets.build(purpose=purpose, out=out, as_of=parse_instant(as_of), **kw)


def without_id(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "record_id"}


@pytest.mark.store
@pytest.mark.parametrize("record_format", ["parquet", "jsonl"])
def test_model_training(tg: Traingate, ev: Events, tmp_path: Path, record_format: str) -> None:
    ingest(tg, scenario(ev))
    result = build(tg, tmp_path / "mt", "model_training", format=record_format)
    records = read_dataset(tmp_path / "mt")
    assert records[:2] == [
        # alice's first two messages were covered by a consent she revoked; the new grant
        # covers m-a3 only. Settings as of as-of: the day-13 update changed the language.
        conversation_record(
            tg, "conv-alice-1", "opt_in", "2024-01-13", [msg("A new question")],
            custom_style='{"signature": "[email]", "tone": "formal"}',
            preferences='{"language": "fr"}',
        ),
        conversation_record(
            tg, "conv-carol", "organization_opt_in", "2024-01-04",
            [msg("Quarterly numbers?"), msg("Here.", "assistant")],
        ),
    ]  # fmt: skip
    assert [without_id(r) for r in records[2:]] == [feedback_expected()]
    assert len({r["record_id"] for r in records}) == 3
    manifest = result.manifest
    assert manifest["counts"] == {
        "records": 3,
        "messages": 5,
        "by_basis": {
            "feedback": {"records": 1, "messages": 2},
            "opt_in": {"records": 1, "messages": 1},
            "organization_opt_in": {"records": 1, "messages": 2},
        },
        "by_kind": {
            "conversation": {"records": 2, "messages": 3},
            "feedback": {"records": 1, "messages": 2},
        },
    }
    assert manifest["exclusions"]["messages"] == {
        "considered": 10,
        "included": 3,
        "excluded": 7,
        "by_reason": {
            "consent_revoked": 2,  # m-a1, m-a2
            "conversation_deleted": 1,  # m-a4
            "no_consent": 3,  # bob's two (no consent), dave's (no organization consent)
            "unknown_account": 1,  # m-e1
        },
    }
    assert manifest["exclusions"]["reports"] == {
        "considered": 1, "included": 1, "excluded": 0, "by_reason": {}
    }  # fmt: skip
    assert manifest["purpose"] == "model_training"
    assert manifest["as_of"] == "2024-01-21T12:00:00Z"
    assert manifest["policy"]["id"] == "consumer-2024"
    assert manifest["policy"]["sha256"] == tg.policy.sha256
    assert manifest["engine"] == "duckdb"
    suffix = "parquet" if record_format == "parquet" else "jsonl"
    assert [f["path"] for f in manifest["files"]] == [f"data/part-00000.{suffix}"]
    assert manifest["files"][0]["rows"] == 3


@pytest.mark.store
@pytest.mark.parametrize("purpose", ["safety_review", "safety_model_training"])
def test_safety_purposes(tg: Traingate, ev: Events, tmp_path: Path, purpose: str) -> None:
    ingest(tg, scenario(ev))
    result = build(tg, tmp_path / purpose, purpose)
    records = read_dataset(tmp_path / purpose)
    flagged = conversation_record(tg, "conv-bob", "usage_policy_flag", "2024-01-05", BOB_MESSAGES)
    if purpose == "safety_review":  # the feedback basis does not grant safety review
        assert records == [flagged]
    else:
        assert records[0] == flagged
        assert [without_id(r) for r in records[1:]] == [feedback_expected()]
    assert result.manifest["exclusions"]["messages"]["by_reason"] == {
        "conversation_deleted": 1,
        "no_active_flag": 6,
        "unknown_account": 1,
    }


@pytest.mark.store
@pytest.mark.parametrize("purpose", ["service_analytics", "research", "behavior_research"])
def test_feedback_only_purposes(tg: Traingate, ev: Events, tmp_path: Path, purpose: str) -> None:
    ingest(tg, scenario(ev))
    result = build(tg, tmp_path / purpose, purpose)
    assert [without_id(r) for r in read_dataset(tmp_path / purpose)] == [feedback_expected()]
    assert result.manifest["exclusions"]["messages"]["by_reason"] == {
        "conversation_deleted": 1,
        "default_deny": 8,
        "unknown_account": 1,
    }


@pytest.mark.store
def test_feedback_expires_after_ten_years(tg: Traingate, ev: Events, tmp_path: Path) -> None:
    ingest(tg, scenario(ev))
    last_day = "2034-01-07T11:59:59.999999Z"  # the report was submitted 2024-01-07T12:00:00Z
    assert len(read_dataset(build(tg, tmp_path / "a", "research", last_day).path)) == 1
    assert read_dataset(build(tg, tmp_path / "b", "research", "2034-01-07T12:00:00Z").path) == []


@pytest.mark.store
def test_revocation_deletion_and_flag_clearing_between_builds(
    tg: Traingate, ev: Events, tmp_path: Path
) -> None:
    ingest(tg, scenario(ev))
    first = {p: build(tg, tmp_path / f"1-{p}", p) for p in ("model_training", "safety_review")}
    ingest(
        tg,
        [
            ev.consent("alice", T(21), False),  # revokes: m-a3 leaves every later build
            ev.conversation_deleted("conv-carol", "carol", T(21)),
            ev.clear("flag-1", T(21)),
            ev.account_deleted("bob", T(21)),  # his report stays: it is de-linked
        ],
    )
    # Builds as of the first build's time are unchanged: a build is a function of as-of.
    again = build(tg, tmp_path / "again", "model_training")
    assert read_dataset(again.path) == read_dataset(first["model_training"].path)

    second = build(tg, tmp_path / "2-mt", "model_training", T(22))
    records = read_dataset(second.path)
    assert [without_id(r) for r in records] == [feedback_expected()]
    reasons = second.manifest["exclusions"]["messages"]["by_reason"]
    assert reasons == {
        "account_deleted": 2,
        "consent_revoked": 3,
        "conversation_deleted": 3,
        "no_consent": 1,
        "unknown_account": 1,
    }
    assert read_dataset(build(tg, tmp_path / "2-sr", "safety_review", T(22)).path) == []

    # A new grant covers new messages only.
    ingest(
        tg,
        [
            ev.consent("alice", T(23), True),
            ev.message("m-a5", "conv-alice-1", "alice", T(24), content="after the new grant"),
        ],
    )
    third = read_dataset(build(tg, tmp_path / "3-mt", "model_training", T(25)).path)
    alice = [r for r in third if r["kind"] == "conversation"]
    assert [m["content"] for r in alice for m in r["messages"]] == ["after the new grant"]
    # The same item keeps its record id across builds.
    assert alice[0]["record_id"] == read_dataset(first["model_training"].path)[0]["record_id"]


@pytest.mark.store
def test_existing_directory_is_refused(tg: Traingate, ev: Events, tmp_path: Path) -> None:
    ingest(tg, scenario(ev))
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BuildError, match="already exists"):
        build(tg, out, "model_training")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(BuildError, match=r"cannot create the directory of .*keep\.txt/new"):
        build(tg, out / "keep.txt" / "new", "model_training")  # a file in the way
    assert _leftovers(tmp_path) == []
    assert tg.store.db.execute("SELECT COUNT(*) FROM builds")[0][0] == 0


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.mark.store
def test_interrupted_build_leaves_nothing(
    tg: Traingate, ev: Events, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(tg, scenario(ev))
    parent = tmp_path / "out"
    parent.mkdir()

    def boom(self: object, batch: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(builder_module.PartWriter, "write", boom)
    with pytest.raises(KeyboardInterrupt):
        build(tg, parent / "ds", "model_training")
    assert list(parent.iterdir()) == []
    assert tg.store.db.execute("SELECT COUNT(*) FROM builds")[0][0] == 0
    assert tg.store.db.execute("SELECT COUNT(*) FROM build_items")[0][0] == 0


@pytest.mark.store
def test_failure_at_commit_takes_the_directory_back(
    tg: Traingate, ev: Events, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(tg, scenario(ev))
    parent = tmp_path / "out"
    parent.mkdir()
    real = builder_module.fsync_path

    def fail_after_rename(path: Path) -> None:
        if path == parent:  # the fsync of the parent, right after the rename
            assert (parent / "ds").is_dir()
            raise OSError("disk gone")
        real(path)

    monkeypatch.setattr(builder_module, "fsync_path", fail_after_rename)
    # The command line's error: a BuildError naming the dataset and the cause (not a traceback).
    with pytest.raises(BuildError, match="disk gone"):
        build(tg, parent / "ds", "model_training")
    assert list(parent.iterdir()) == []
    assert tg.store.db.execute("SELECT COUNT(*) FROM builds")[0][0] == 0


@pytest.mark.store
def test_same_inputs_same_bytes(tg: Traingate, ev: Events, tmp_path: Path) -> None:
    ingest(tg, scenario(ev))
    for record_format in ("parquet", "jsonl"):
        a = build(tg, tmp_path / f"a-{record_format}", "model_training", format=record_format)
        b = build(tg, tmp_path / f"b-{record_format}", "model_training", format=record_format)
        assert a.build_id != b.build_id
        for name in ["manifest.json", *(f["path"] for f in a.manifest["files"])]:
            assert (a.path / name).read_bytes() == (b.path / name).read_bytes(), name


@pytest.mark.store
def test_engines_agree_on_the_scenario(tg: Traingate, ev: Events, tmp_path: Path) -> None:
    ingest(tg, scenario(ev))
    for purpose in tg.policy.purposes:
        bulk = build(tg, tmp_path / f"d-{purpose}", purpose, engine="duckdb")
        scalar = build(tg, tmp_path / f"s-{purpose}", purpose, engine="scalar")
        assert read_dataset(bulk.path) == read_dataset(scalar.path)
        assert {**bulk.manifest, "engine": "-", "signature": "-"} == {
            **scalar.manifest, "engine": "-", "signature": "-"
        }  # fmt: skip


@pytest.mark.store
def test_empty_store_writes_an_empty_part(tg: Traingate, tmp_path: Path) -> None:
    result = build(tg, tmp_path / "empty", "model_training")
    assert result.manifest["files"][0]["rows"] == 0
    assert read_dataset(result.path) == []
    assert tg.datasets.verify(path=result.path).ok


def test_unknown_purpose_engine_and_format(tg: Traingate, tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="unknown purpose"):
        build(tg, tmp_path / "x", "marketing")
    with pytest.raises(BuildError, match="unknown engine"):
        build(tg, tmp_path / "y", "research", engine="hadoop")
    with pytest.raises(BuildError, match="unknown format"):
        build(tg, tmp_path / "z", "research", format="csv")
    assert not any(tmp_path.glob("[xyz]")) and not _leftovers(tmp_path)


def test_manifest_file_is_json_with_a_signature(tg: Traingate, tmp_path: Path) -> None:
    result = build(tg, tmp_path / "m", "research")
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest == result.manifest
    assert manifest["signature"]["algorithm"] == "HMAC-SHA256"
    assert len(manifest["signature"]["value"]) == 64
