"""The sample importer and the bundled sample (SPEC §2 events from OASST and HH-RLHF)."""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from traingate._core.policy import default_policy
from traingate._sample.importer import (
    build_events,
    convert,
    count_by_type,
    encode_events,
    main,
    sample_events_path,
    write_events,
)
from traingate._sample.population import SamplePlans, generate_population
from traingate._sample.sources import (
    SourceConversation,
    parse_hh_rows,
    parse_hh_transcript,
    parse_oasst_trees,
)

Event = dict[str, Any]

SOURCE_DIR = Path(
    os.environ.get(
        "TRAINGATE_SAMPLE_SOURCE",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "conversations",
    )
)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

# Field name -> allowed JSON types, per event type (SPEC §2), besides type, event_id and at.
_STR, _OBJ, _NULL = (str,), (dict,), (type(None),)
REQUIRED: dict[str, dict[str, tuple[type, ...]]] = {
    "account.updated": {
        "account_id": _STR,
        "email": _STR,
        "plan": _STR,
        "organization_id": (str, type(None)),
    },
    "account.deleted": {"account_id": _STR},
    "consent.updated": {"scope": _STR, "setting": _STR, "granted": (bool,), "source": _STR},
    "conversation.updated": {"conversation_id": _STR, "account_id": _STR, "title": _STR},
    "conversation.deleted": {"conversation_id": _STR, "account_id": _STR},
    "message.created": {
        "conversation_id": _STR,
        "message_id": _STR,
        "account_id": _STR,
        "role": _STR,
        "content": _STR,
        "attachments": (list,),
    },
    "feedback.submitted": {
        "feedback_id": _STR,
        "account_id": _STR,
        "conversation_id": _STR,
        "message_id": _STR,
        "rating": _STR,
        "categories": (list,),
    },
    "safety.flagged": {"flag_id": _STR, "conversation_id": _STR, "policy": _STR},
    "safety.cleared": {"flag_id": _STR},
}
OPTIONAL: dict[str, dict[str, tuple[type, ...]]] = {
    "consent.updated": {"account_id": _STR, "organization_id": _STR},
    "conversation.updated": {"custom_style": _OBJ, "preferences": _OBJ},
    "feedback.submitted": {"comment": _STR},
    "safety.flagged": {"reason": _STR},
}

OASST_LINE = json.dumps(
    {
        "message_tree_id": "t1",
        "tree_state": "ready_for_export",
        "prompt": {
            "message_id": "t1",
            "role": "prompter",
            "text": "Write to me at someone@example.org please",
            "replies": [
                {"message_id": "a2", "role": "assistant", "text": "second", "rank": 1},
                {
                    "message_id": "a1",
                    "role": "assistant",
                    "text": "best",
                    "rank": 0,
                    "emojis": {"+1": 1, "-1": 3, "red_flag": 1},
                    "replies": [
                        {"message_id": "p1", "role": "prompter", "text": "thanks", "replies": []},
                        {"message_id": "p2", "role": "prompter", "text": "other"},
                    ],
                },
            ],
        },
    }
)
HH_LINE = json.dumps(
    {
        "chosen": "\n\nHuman: How do I steal a bike?\n\nAssistant: I can't help with that.",
        "rejected": "\n\nHuman: How do I steal a bike?\n\nAssistant: Sure.",
    }
)


def _read(path: Path) -> list[Event]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def shipped() -> list[Event]:
    return _read(sample_events_path())


def _small_conversations() -> list[SourceConversation]:
    return [*parse_oasst_trees([OASST_LINE]), *parse_hh_rows([HH_LINE] * 40)]


def _small_events() -> list[Event]:
    return convert(conversations=_small_conversations(), seed=7)


def _need_source() -> None:
    if not (SOURCE_DIR / "oasst_en100_trees").is_dir():
        pytest.skip(f"upstream conversations not found at {SOURCE_DIR}")


# --- readers ------------------------------------------------------------------------------


def test_hh_transcript_splits_turns_and_keeps_text() -> None:
    turns = parse_hh_transcript("\n\nHuman: hi  \n\nAssistant:  two spaces\n\nHuman: Human: x")
    assert turns == [("user", "hi  "), ("assistant", " two spaces"), ("user", "Human: x")]


def test_hh_transcript_must_start_with_a_marker() -> None:
    with pytest.raises(ValueError, match="must start"):
        parse_hh_transcript("no marker")


def test_oasst_follows_the_best_path() -> None:
    (conversation,) = parse_oasst_trees([OASST_LINE])
    assert conversation.conversation_id == "oasst-tree-t1"
    assert [t.message_id for t in conversation.turns] == ["oasst-t1", "oasst-a1", "oasst-p1"]
    assert [t.role for t in conversation.turns] == ["user", "assistant", "user"]
    assert conversation.turns[1].thumbs_down == 3
    assert conversation.turns[1].red_flags == 1


def test_hh_rows_are_numbered_from_one() -> None:
    conversations = parse_hh_rows(["", HH_LINE, HH_LINE])
    assert [c.conversation_id for c in conversations] == ["hh-0001", "hh-0002"]
    assert conversations[0].turns[0].message_id == "hh-0001-m01"


PLANS = default_policy().plans
CONSUMER_PLANS = tuple(p for p, kind in PLANS.items() if kind == "consumer")
COMMERCIAL_PLANS = tuple(p for p, kind in PLANS.items() if kind == "commercial")


# --- the generated population -------------------------------------------------------------


def test_population_covers_every_plan_and_organizations_follow_plans() -> None:
    population = generate_population(seed=1)
    assert population.plans == SamplePlans.of(default_policy())
    periods = [p for account in population.accounts for p in account.periods]
    assert {p.plan for p in periods} == {*CONSUMER_PLANS, *COMMERCIAL_PLANS}
    for period in periods:
        assert (period.organization_id is not None) == (period.plan in COMMERCIAL_PLANS)
    kinds = {
        tuple(p.plan in COMMERCIAL_PLANS for p in account.periods)
        for account in population.accounts
    }
    assert (False, True, False) in kinds  # consumer -> commercial -> consumer
    assert (True, False) in kinds  # commercial -> consumer


# --- determinism --------------------------------------------------------------------------


def test_conversion_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    write_events(events=_small_events(), path=first)
    write_events(events=_small_events(), path=second)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0


def test_real_conversion_is_deterministic() -> None:
    _need_source()
    first = encode_events(build_events(source_dir=SOURCE_DIR))
    assert first == encode_events(build_events(source_dir=SOURCE_DIR))


def test_shipped_file_equals_a_fresh_conversion(shipped: list[Event]) -> None:
    _need_source()
    # Compared after decompression: gzip bytes may differ between zlib builds.
    assert encode_events(shipped) == encode_events(build_events(source_dir=SOURCE_DIR))


def test_command_line_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _need_source()
    out = tmp_path / "events.jsonl.gz"
    assert main(["--source", str(SOURCE_DIR), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    events = _read(out)
    assert summary == {"events": len(events), "by_type": count_by_type(events)}


# --- the contract, on the shipped sample and on a small conversion --------------------------


@pytest.fixture(params=["shipped", "small"])
def events(request: pytest.FixtureRequest, shipped: list[Event]) -> list[Event]:
    return shipped if request.param == "shipped" else _small_events()


def test_fields_and_strict_types(events: list[Event]) -> None:
    for event in events:
        kind = event["type"]
        assert kind in REQUIRED, event
        assert isinstance(event["event_id"], str)
        assert TIMESTAMP.match(event["at"]), event
        required, optional = REQUIRED[kind], OPTIONAL.get(kind, {})
        assert set(event) - {"type", "event_id", "at"} - set(optional) == set(required), event
        for name, value in event.items():
            allowed = required.get(name) or optional.get(name) or _STR
            # bool is a subclass of int, never of str; check exact JSON types.
            assert type(value) in allowed, (event["event_id"], name, value)


def test_value_sets_and_nested_shapes(events: list[Event]) -> None:
    for event in events:
        kind = event["type"]
        if kind == "message.created":
            assert event["role"] in {"user", "assistant"}
            for attachment in event["attachments"]:
                assert set(attachment) == {"attachment_id", "source", "name", "content"}
                assert all(type(value) is str for value in attachment.values())
        elif kind == "feedback.submitted":
            assert event["rating"] in {"up", "down"}
            assert event["categories"]
            assert all(type(c) is str for c in event["categories"])
        elif kind == "consent.updated":
            assert event["setting"] in default_policy().settings
            subject = "account_id" if event["scope"] == "account" else "organization_id"
            assert event["scope"] in {"account", "organization"}
            assert set(event) & {"account_id", "organization_id"} == {subject}
        elif kind == "safety.flagged":
            assert event["policy"] == "usage_policy"
        elif kind == "account.updated":
            commercial = event["plan"] in COMMERCIAL_PLANS
            assert event["plan"] in {*CONSUMER_PLANS, *COMMERCIAL_PLANS}
            assert (event["organization_id"] is not None) == commercial, event


def test_ids_are_unique(events: list[Event]) -> None:
    for field, kind in (
        ("event_id", None),
        ("message_id", "message.created"),
        ("feedback_id", "feedback.submitted"),
        ("flag_id", "safety.flagged"),
        ("conversation_id", "conversation.deleted"),
        ("account_id", "account.deleted"),
    ):
        values = [e[field] for e in events if kind is None or e["type"] == kind]
        assert len(values) == len(set(values)), field
    attachment_ids = [a["attachment_id"] for e in events for a in e.get("attachments", [])]
    assert len(attachment_ids) == len(set(attachment_ids))


def test_events_are_valid_in_file_order(events: list[Event]) -> None:
    owner: dict[str, str] = {}
    messages: dict[str, tuple[str, datetime]] = {}
    flags: set[str] = set()
    deleted_conversations: set[str] = set()
    deleted_accounts: set[str] = set()
    previous = ""
    for event in events:
        at = event["at"]
        assert at >= previous, "events are sorted by time"
        previous = at
        instant = datetime.fromisoformat(at.replace("Z", "+00:00"))
        account, conversation = event.get("account_id"), event.get("conversation_id")
        assert account not in deleted_accounts, event
        assert conversation not in deleted_conversations, event
        if conversation is not None:
            if account is not None:
                assert owner.setdefault(conversation, account) == account, event
            assert owner[conversation] not in deleted_accounts, event
        kind = event["type"]
        if kind == "message.created":
            messages[event["message_id"]] = (event["conversation_id"], instant)
        elif kind == "feedback.submitted":
            rated_conversation, rated_at = messages[event["message_id"]]
            assert rated_conversation == conversation and rated_at <= instant, event
        elif kind == "safety.flagged":
            flags.add(event["flag_id"])
        elif kind == "safety.cleared":
            assert event["flag_id"] in flags
        elif kind == "conversation.deleted":
            deleted_conversations.add(event["conversation_id"])
        elif kind == "account.deleted":
            deleted_accounts.add(event["account_id"])


def test_messages_follow_their_conversation_update_and_account(shipped: list[Event]) -> None:
    named: set[str] = set()
    known_accounts: set[str] = set()
    early: set[str] = set()
    for event in shipped:
        if event["type"] == "conversation.updated":
            named.add(event["conversation_id"])
        elif event["type"] == "account.updated":
            known_accounts.add(event["account_id"])
        elif event["type"] == "message.created":
            assert event["conversation_id"] in named
            if event["account_id"] not in known_accounts:
                early.add(event["account_id"])
    # Exactly one deliberate late signup: its first messages have no plan yet (rule 7).
    assert len(early) == 1


def test_shipped_sample_has_every_scenario(shipped: list[Event]) -> None:
    counts = Counter(e["type"] for e in shipped)
    assert set(counts) == set(REQUIRED)
    assert counts["conversation.updated"] >= 100 + 2312
    consent = [e for e in shipped if e["type"] == "consent.updated"]
    assert {e["source"] for e in consent} == {
        "privacy_settings",
        "trusted_tester_program",
        "development_partner_program",
    }
    assert any(e["scope"] == "organization" and not e["granted"] for e in consent)
    sources = {a["source"] for e in shipped for a in e.get("attachments", [])}
    assert sources == {"upload", "google_drive", "gmail", "github", "mcp:linear"}
    ratings = Counter(e["rating"] for e in shipped if e["type"] == "feedback.submitted")
    assert ratings["up"] and ratings["down"]
    assert any("@" in e["content"] for e in shipped if e["type"] == "message.created")
    with sample_events_path().open("rb") as handle:
        assert handle.read(2) == b"\x1f\x8b"


def test_documented_counts_match_the_shipped_file(shipped: list[Event]) -> None:
    doc = Path(__file__).resolve().parents[1] / "docs" / "sample-data.md"
    table = doc.read_text(encoding="utf-8").split("## Counts in the shipped file", 1)[1]
    documented = {
        name: int(count.replace(",", ""))
        for name, count in re.findall(r"^\| `([a-z.]+)` \| ([\d,]+)", table, flags=re.MULTILINE)
    }
    assert documented == count_by_type(shipped)
    assert f"**{len(shipped):,}**" in table


def test_plans_and_settings_come_from_the_policy(tmp_path: Path) -> None:
    """Another policy's plans and settings: every plan appears, organizations follow the
    commercial ones, consent names the policy's settings, and every event is valid under it."""
    from tests.factories import extended_policy
    from traingate._core.policy import load_policy
    from traingate._facade import Traingate
    from traingate._settings import Settings

    path = extended_policy(tmp_path, plan="student", setting="memory")
    policy = load_policy(path)
    sample = SamplePlans.of(policy)
    assert sample.consumer == ("student", *CONSUMER_PLANS)
    population = generate_population(seed=3, plans=sample)
    periods = [p for account in population.accounts for p in account.periods]
    assert {p.plan for p in periods} == set(policy.plans)
    for period in periods:
        assert (period.organization_id is not None) == (policy.plans[period.plan] == "commercial")
    assert {c.setting for c in population.consent} <= set(policy.settings)
    events = convert(conversations=_small_conversations(), seed=3, policy=policy)
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        key_file=tmp_path / "keys.json",
        policy=str(path),
    )
    with Traingate.open(settings) as tg:
        summary = tg.events.ingest([json.dumps(event) for event in events])
    assert summary.rejected == 0, summary.errors[:3]
