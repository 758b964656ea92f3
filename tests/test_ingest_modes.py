"""SPEC §2/§5 at ingest, on SQLite and PostgreSQL: conversation modes (set by the first accepted
event naming the conversation, in file order, across batches and files), consent settings
declared by the policies in force (kept per scope, subject and setting), the facts the
evaluators read, and the mode carried by feedback snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.factories import Events, extended_policy, jsonl
from traingate._core.policy import PolicySet, default_policy, load_policy
from traingate._facade import Traingate
from traingate._ingest import ingest_lines
from traingate._settings import Settings

T = Events.t


@pytest.fixture
def extended(db_url: str, tmp_path: Path) -> Traingate:
    settings = Settings(
        db_url=db_url,
        key_file=tmp_path / "keys" / "keys.json",
        policy=str(extended_policy(tmp_path)),
    )
    return Traingate.open(settings)


# -- modes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 1000])
def test_the_first_event_sets_the_mode_across_batches_and_files(
    tg: Traingate, batch_size: int
) -> None:
    e = Events()
    first = tg.events.ingest(
        jsonl(
            [
                e.account("a", T(0)),
                e.conversation("inc", "a", T(1), incognito=True),
                e.conversation("tmp", "a", T(1), mode="temporary"),
                e.conversation("std", "a", T(1), mode="standard"),
                e.message("m1", "plain", "a", T(1)),
                e.flag("g1", "flagged", T(1)),
                e.conversation("none", "a", T(1), title="no mode"),
            ]
        ),
        batch_size=batch_size,
    )
    assert (first.accepted, first.rejected) == (7, 0), first.errors
    later = [
        e.conversation("inc", "a", T(2), mode="incognito"),  # the same mode: kept
        e.conversation("inc", "a", T(2), incognito=True),
        e.conversation("tmp", "a", T(2), title="none given"),
        e.conversation("std", "a", T(2), incognito=False),
        e.conversation("none", "a", T(2), mode="standard"),
        e.conversation("inc", "a", T(3), mode="standard"),  # rejected from here on
        e.conversation("tmp", "a", T(3), incognito=True),
        e.conversation("std", "a", T(3), mode="temporary"),
        e.conversation("plain", "a", T(3), mode="incognito"),
        e.conversation("flagged", "a", T(3), incognito=True),
        e.conversation("none", "a", T(3), mode="temporary"),
    ]
    second = tg.events.ingest(jsonl(later), batch_size=batch_size)
    assert (second.accepted, second.rejected) == (5, 6), second.errors
    assert [(err.line, err.event_id) for err in second.errors] == [
        (line, later[line - 1]["event_id"]) for line in range(6, 12)
    ]
    fields = [err.error.split("field ")[1].split(":")[0] for err in second.errors]
    assert fields == ["'mode'", "'incognito'", "'mode'", "'mode'", "'incognito'", "'mode'"]
    assert "is 'incognito'" in second.errors[0].error
    modes = {
        conv: tg.store.conversation_mode(conv) for conv in ("inc", "tmp", "std", "plain", "none")
    }
    assert modes == {
        "inc": "incognito",
        "tmp": "temporary",
        "std": "standard",
        "plain": "standard",
        "none": "standard",
    }
    assert tg.store.conversation_facts("tmp").mode == "temporary"
    # The flagged conversation has no owner yet; its first named-by event was the flag.
    third = tg.events.ingest(jsonl([e.message("m2", "flagged", "a", T(4))]))
    assert third.accepted == 1
    assert tg.store.conversation_mode("flagged") == "standard"


def test_a_rejected_first_event_sets_no_mode(tg: Traingate) -> None:
    e = Events()
    summary = tg.events.ingest(
        jsonl(
            [
                e.account("a", T(0)),
                e.account("b", T(0)),
                e.message("m1", "c", "b", T(1)),
                e.conversation("d", "a", T(1), mode="incognito", incognito=False),  # disagree
                e.conversation("d", "a", T(2), mode="temporary"),
                e.message("m2", "c", "a", T(2)),  # another account's conversation
            ]
        )
    )
    assert summary.rejected == 2
    assert tg.store.conversation_mode("d") == "temporary"


# -- consent settings -----------------------------------------------------------------------


def test_consent_is_kept_per_scope_subject_and_setting(extended: Traingate) -> None:
    e = Events()
    with extended as tg:
        summary = tg.events.ingest(
            jsonl(
                [
                    e.account("a", T(0), plan="student"),
                    e.message("m1", "c", "a", T(1)),
                    e.consent("a", T(1), True),
                    e.consent("a", T(2), False, setting="memory"),
                    e.consent("a", T(3), True, setting="nope"),
                    e.account("a", T(4), plan="team", organization_id="org1"),
                    e.account("a", T(5), plan="enterprise", organization_id="org2"),
                    e.consent("org1", T(4), True, scope="organization"),
                    e.consent("org2", T(5), True, scope="organization", setting="memory"),
                    e.consent("org3", T(5), True, scope="organization"),
                    e.consent("b", T(5), True),
                    e.flag("g1", "c", T(6)),
                    e.clear("g1", T(7)),
                    e.clear("g1", T(8)),
                ]
            )
        )
        assert summary.rejected == 1, summary.errors
        error = summary.errors[0]
        assert error.line == 5
        assert "field 'setting'" in error.error
        assert "'nope'" in error.error and "memory" in error.error
        store = tg.store
        [memory] = store.consent_ledger("account", "a", "memory")
        assert (memory.granted, memory.source) == (False, "privacy_settings")
        assert [c.granted for c in store.consent_ledger("account", "a", "model_training")] == [True]
        assert store.consent_ledger("organization", "a", "model_training") == ()
        facts = store.conversation_facts("c")
        assert sorted(facts.consents) == [
            ("account", "a", "memory"),
            ("account", "a", "model_training"),
            ("organization", "org1", "model_training"),
            ("organization", "org2", "memory"),
        ]
        assert facts.consent("organization", "org1", "model_training")[0].granted
        assert facts.consent("organization", "org3", "model_training") == ()
        assert facts.mode == "standard"
        [flag] = facts.flags
        assert (flag.flag_id, flag.policy, len(flag.cleared_at)) == ("g1", "usage_policy", 2)
        assert [p.plan for p in facts.plans] == ["student", "team", "enterprise"]


def test_settings_and_plans_are_those_of_every_policy_in_force(
    tg: Traingate, tmp_path: Path
) -> None:
    """A policy set accepts a plan or a setting any of its policies declares."""
    later = load_policy(
        extended_policy(
            tmp_path, plan="campus", setting="voice", effective_from="2030-01-01T00:00:00Z"
        )
    )
    policies = PolicySet.of([default_policy(), later])
    e = Events()
    lines = jsonl(
        [
            e.account("a", T(0), plan="campus"),
            e.consent("a", T(1), True, setting="voice"),
            e.consent("a", T(1), True, setting="cookies"),
            e.account("b", T(0), plan="gold"),
        ]
    )
    summary = ingest_lines(store=tg.store, sink=tg.vault, policy=policies, lines=lines)
    assert (summary.accepted, summary.rejected) == (2, 2)
    assert [(err.line, err.error.split("field ")[1][:9]) for err in summary.errors] == [
        (3, "'setting'"),
        (4, "'plan': u"),
    ]
    alone = ingest_lines(
        store=tg.store,
        sink=tg.vault,
        policy=default_policy(),
        lines=jsonl([e.consent("a", T(2), True, setting="voice")]),
    )
    assert alone.rejected == 1


# -- feedback snapshots ---------------------------------------------------------------------


def test_snapshots_carry_the_conversations_mode(tg: Traingate) -> None:
    e = Events()
    events = [e.account("a", T(0))]
    for conv, fields in (("s", {}), ("i", {"incognito": True}), ("t", {"mode": "temporary"})):
        events += [
            e.conversation(conv, "a", T(1), **fields),
            e.message(f"m-{conv}", conv, "a", T(2)),
            e.feedback(f"f-{conv}", "a", conv, f"m-{conv}", T(3), comment="ok"),
        ]
    summary = tg.events.ingest(jsonl(events))
    assert summary.rejected == 0, summary.errors
    modes = [tg.feedback.show(receipt)[1].mode for _, _, receipt in summary.receipts]
    assert modes == ["standard", "incognito", "temporary"]


# -- feedback under a basis with no retention ---------------------------------------------------


@pytest.mark.parametrize("policy", ["chatgpt-2025", "lechat-2025"])
def test_feedback_without_retention_is_kept_with_no_expiry(
    db_url: str, tmp_path: Path, policy: str
) -> None:
    """The feedback basis of these policies has no retention: ingest files the report, and
    the vault keeps it with no expiry; the snapshot carries the conversation's mode."""
    settings = Settings(db_url=db_url, key_file=tmp_path / "keys.json", policy=policy)
    e = Events()
    with Traingate.open(settings) as tg:
        plan = next(p for p, kind in tg.policy.plans.items() if kind == "consumer")
        summary = tg.events.ingest(
            jsonl(
                [
                    e.account("a", T(0), plan=plan),
                    e.conversation("c", "a", T(1), mode="temporary"),
                    e.message("m1", "c", "a", T(2)),
                    e.feedback("f1", "a", "c", "m1", T(3), comment="kept"),
                    e.feedback("f2", "a", "c", "m1", "9990-01-01T00:00:00Z", comment="late"),
                    e.message("m2", "c", "a", T(4)),
                ]
            )
        )
        assert (summary.accepted, summary.rejected) == (5, 1), summary.errors
        assert summary.errors[0].line == 5 and "field 'at'" in summary.errors[0].error
        [(_, _, receipt)] = summary.receipts
        info, snapshot = tg.feedback.show(receipt)
        assert info.expires_at is None
        assert (snapshot.mode, snapshot.comment) == ("temporary", "kept")


def test_conversation_facts_take_a_fixed_number_of_queries(
    tg: Traingate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many organizations, flags and clears: six queries."""
    e = Events()
    events = [e.account("a", T(0)), e.message("m0", "c", "a", T(0))]
    for n in range(1, 6):
        org = f"org{n}"
        events += [
            e.account("a", T(n), plan="team", organization_id=org),
            e.consent(org, T(n), True, scope="organization"),
            e.message(f"m{n}", "c", "a", T(n)),
            e.flag(f"g{n}", "c", T(n)),
            e.clear(f"g{n}", T(n + 1)),
        ]
    assert tg.events.ingest(jsonl(events)).rejected == 0
    db = tg.store.db
    calls: list[str] = []
    execute = db.execute

    def counted(sql: str, params: Sequence[Any] = ()) -> list[Any]:
        calls.append(sql)
        return execute(sql, params)

    monkeypatch.setattr(db, "execute", counted)
    facts = tg.store.conversation_facts("c")
    assert len(calls) <= 6, calls
    assert len(facts.flags) == 5 and all(len(f.cleared_at) == 1 for f in facts.flags)
    assert len([key for key in facts.consents if key[0] == "organization"]) == 5
