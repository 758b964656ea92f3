"""The privacy answer (SPEC §4), on both backends: every purpose's ``{used, bases,
conversations}`` from the scalar evaluator, for histories where a past plan, an organization's
consent, a mode, a flag or an expiry decides; the headline and reasons of the privacy center
derived from it; and ``conversations`` equal to the conversations a DuckDB build of that
purpose as of the same instant holds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import Event, Events
from tests.support import NOT_USED, PURPOSES, moved_between_plans
from traingate._core.timeutil import parse_instant
from traingate._facade import Traingate
from traingate._privacy import PrivacyReport, account_privacy
from traingate._settings import Settings
from traingate._web.answer import answer_for

pytestmark = pytest.mark.store

T = Events.t
Opener = Callable[[str | None], Traingate]


@pytest.fixture
def open_tg(db_url: str, tmp_path: Path) -> Iterator[Opener]:
    """Open Traingate on the test's store with a --policy value (None: the default)."""
    opened: list[Traingate] = []

    def opener(policy: str | None) -> Traingate:
        settings = Settings(db_url=db_url, key_file=tmp_path / "keys" / "keys.json", policy=policy)
        tg = Traingate.open(settings)
        opened.append(tg)
        return tg

    yield opener
    for tg in opened:
        tg.close()


def ingest(tg: Traingate, events: list[Event]) -> None:
    summary = tg.events.ingest([json.dumps(e) for e in events])
    assert summary.rejected == 0, summary.errors


def report(tg: Traingate, account_id: str, as_of: str) -> PrivacyReport:
    return account_privacy(
        store=tg.store,
        policy=tg.policies,
        keys=tg.keys,
        account_id=account_id,
        as_of=parse_instant(as_of),
    )


def purposes(tg: Traingate, account_id: str, as_of: str) -> dict[str, Any]:
    answer: dict[str, Any] = report(tg, account_id, as_of).to_dict()["purposes"]
    return answer


# -- what is used ------------------------------------------------------------------------------


def test_a_past_plan_with_its_organizations_consent_is_part_of_the_answer(
    open_tg: Opener, ev: Events
) -> None:
    tg = open_tg(None)
    ingest(tg, moved_between_plans(ev))
    answer = purposes(tg, "a1", T(200))
    assert set(answer) == set(PURPOSES)
    assert answer["model_training"] == {
        "used": True,
        "bases": ["organization_opt_in"],
        "conversations": ["c1", "c2"],
    }
    assert all(answer[p] == NOT_USED for p in PURPOSES if p != "model_training")
    full = report(tg, "a1", T(200)).to_dict()
    assert (full["known"], full["plan"], full["plan_class"]) == (True, "free", "consumer")
    assert [p["plan"] for p in full["plan_history"]] == ["team", "free"]
    assert full["policies"] == [tg.policies.policies[0].identity()]
    assert full["consent"]["granted"] is False  # the account's own setting: never set
    c1 = next(c for c in full["conversations"] if c["conversation_id"] == "c1")
    assert c1["purposes"]["model_training"]["eligible_messages"] == 2
    assert c1["purposes"]["model_training"]["plans"] == [
        {"plan": "team", "organization_id": "org-1"}
    ]
    # before the messages: nothing; the organization revokes: retroactive, nothing
    assert purposes(tg, "a1", T(1))["model_training"] == NOT_USED
    ingest(tg, [ev.consent("org-1", T(150), granted=False, scope="organization")])
    assert purposes(tg, "a1", T(200))["model_training"] == NOT_USED
    assert purposes(tg, "a1", T(149))["model_training"]["conversations"] == ["c1", "c2"]


def test_the_privacy_center_says_yes_and_names_those_conversations(
    open_tg: Opener, ev: Events
) -> None:
    tg = open_tg(None)
    ingest(tg, moved_between_plans(ev))
    answer = answer_for(report(tg, "a1", T(200)))
    assert answer.tone == "yes"
    assert answer.headline.startswith("Yes. 2 of your conversations are used")
    assert "not" in answer.headline  # new messages are not: the setting is off
    assert answer.used == ("c1", "c2")
    texts = " ".join(r.text for r in answer.reasons)
    assert "(c1)" in texts and "(c2)" in texts and "organization org-1" in texts
    assert "(c3)" not in texts.split("not used")[0]
    ids = {r.id for r in answer.rules}
    assert {"organization_opt_in", "no_consent", "default_deny"} <= ids
    org_text = tg.policies.policies[0].rule_text("organization_opt_in")[1]
    assert org_text in {r.text for r in answer.rules}
    assert answer.toggle is not None and answer.toggle.on is False
    model_training = next(row for row in answer.purposes if row.purpose == "model_training")
    assert model_training.conversations == ("c1", "c2")


def test_several_policies_each_decide_their_own_messages(open_tg: Opener, ev: Events) -> None:
    tg = open_tg(f"consumer-2024,consumer-2025@{T(50)}")
    ingest(tg, moved_between_plans(ev))
    full = report(tg, "a1", T(200)).to_dict()
    assert full["purposes"]["model_training"]["conversations"] == ["c1", "c2"]
    assert [p["id"] for p in full["policies"]] == ["consumer-2024", "consumer-2025"]
    assert full["policy"]["id"] == "consumer-2025"
    c3 = next(c for c in full["conversations"] if c["conversation_id"] == "c3")
    assert c3["purposes"]["model_training"]["policies"] == [
        {"id": "consumer-2025", "version": tg.policies.policies[1].version}
    ]


def test_an_excluded_mode_is_never_used(open_tg: Opener, ev: Events) -> None:
    tg = open_tg("consumer-2025")
    t = ev.t
    ingest(
        tg,
        [
            ev.account("b", t(0)),
            ev.consent("b", t(1), granted=True),
            ev.conversation("cs", "b", t(2), title="Standard"),
            ev.message("s1", "cs", "b", t(2)),
            ev.conversation("ci", "b", t(2), title="Secret", mode="incognito"),
            ev.message("i1", "ci", "b", t(2)),
            ev.flag("fi", "ci", t(3)),
        ],
    )
    full = report(tg, "b", t(5)).to_dict()
    assert full["purposes"]["model_training"] == {
        "used": True,
        "bases": ["opt_in"],
        "conversations": ["cs"],
    }
    assert full["purposes"]["safety_review"] == NOT_USED  # the flag basis excludes it too
    ci = next(c for c in full["conversations"] if c["conversation_id"] == "ci")
    assert ci["mode"] == "incognito"
    assert "mode_excluded" in ci["purposes"]["model_training"]["reasons"]
    answer = answer_for(report(tg, "b", t(5)))
    assert answer.headline.startswith("Yes.") and answer.used == ("cs",)
    assert any("“Secret” is not used" in r.text for r in answer.reasons)
    assert "mode_excluded" in {r.id for r in answer.rules}


def test_a_flag_serves_the_safety_purposes_while_it_stands(open_tg: Opener, ev: Events) -> None:
    tg = open_tg(None)
    t = ev.t
    ingest(
        tg,
        [
            ev.account("f", t(0)),
            ev.conversation("cf", "f", t(1), title="Flagged"),
            ev.message("f1", "cf", "f", t(1)),
            ev.flag("fl", "cf", t(3)),
            ev.clear("fl", t(6)),
        ],
    )
    flagged = {"used": True, "bases": ["usage_policy_flag"], "conversations": ["cf"]}
    during = purposes(tg, "f", t(4))
    assert during["safety_review"] == flagged and during["safety_model_training"] == flagged
    assert during["model_training"] == NOT_USED
    assert all(v == NOT_USED for v in purposes(tg, "f", t(7)).values())
    answer = answer_for(report(tg, "f", t(4)))
    assert answer.headline.startswith("No.") and answer.used == ()
    assert "usage_policy_flag" in {r.id for r in answer.rules}


def test_content_expired_under_consumer_2025_serves_nothing(open_tg: Opener, ev: Events) -> None:
    tg = open_tg("consumer-2025")
    t = ev.t
    ingest(
        tg,
        [
            ev.account("x", t(0)),
            ev.conversation("cx", "x", t(0), title="Kept two years"),
            ev.message("x1", "cx", "x", t(0)),
            ev.flag("fx", "cx", t(1)),
        ],
    )
    # flagged: kept P2Y (2024-01-01T12:00Z + 2 years = day 731), no purge needed
    assert purposes(tg, "x", t(730))["safety_review"]["conversations"] == ["cx"]
    assert purposes(tg, "x", t(731))["safety_review"] == NOT_USED
    cx = report(tg, "x", t(732)).to_dict()["conversations"][0]
    assert cx["purposes"]["safety_review"]["reasons"] == ["content_expired"]
    assert cx["purposes"]["safety_review"]["expired_under"] == ["retention_flagged"]
    answer = answer_for(report(tg, "x", t(732)))
    assert {"content_expired", "retention_flagged"} <= {r.id for r in answer.rules}


def test_an_unknown_account_is_answered_not_raised(open_tg: Opener, ev: Events) -> None:
    tg = open_tg(None)
    ingest(tg, moved_between_plans(ev))
    full = report(tg, "nobody", T(200)).to_dict()
    assert full["known"] is False and full["plan"] is None
    assert full["purposes"] == {p: NOT_USED for p in PURPOSES}
    assert full["conversations"] == [] and full["builds"] == {}
    assert answer_for(report(tg, "nobody", T(200))).headline.startswith("No.")


# -- the answer is what the builds hold ----------------------------------------------------------


def _records(path: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for part in sorted((path / "data").glob("part-*.jsonl")):
        for line in part.read_text("utf-8").splitlines():
            record = json.loads(line)
            out[record["record_id"]] = record
    return out


def mixed_history(ev: Events) -> list[Event]:
    """Every kind of decision for two accounts: a past plan and organization consent, a mode,
    a flag, a revocation, a deletion, feedback."""
    t = ev.t
    return [
        *moved_between_plans(ev),
        ev.flag("f3", "c3", t(102)),
        ev.account("b", t(0)),
        ev.consent("b", t(1), granted=True),
        ev.conversation("b1", "b", t(2), title="Kept"),
        ev.message("bm1", "b1", "b", t(2)),
        ev.message("bm2", "b1", "b", t(60), role="assistant"),
        ev.conversation("b2", "b", t(3), mode="incognito"),
        ev.message("bm3", "b2", "b", t(3)),
        ev.conversation("b3", "b", t(4), title="Deleted"),
        ev.message("bm4", "b3", "b", t(4)),
        ev.conversation_deleted("b3", "b", t(5)),
        ev.feedback("fb", "b", "b1", "bm1", t(6), comment="nice"),
        ev.consent("b", t(70), granted=False),
        ev.consent("b", t(80), granted=True),
        ev.message("bm5", "b1", "b", t(90)),  # resumes b1 after a new grant
    ]


@pytest.mark.parametrize(
    "policy", [None, f"consumer-2024,consumer-2025@{T(50)}"], ids=["2024", "2024-then-2025"]
)
def test_conversations_are_exactly_those_a_duckdb_build_holds(
    open_tg: Opener, ev: Events, tmp_path: Path, policy: str | None
) -> None:
    tg = open_tg(policy)
    ingest(tg, mixed_history(ev))
    as_of = T(120)
    for purpose in PURPOSES:
        out = tmp_path / f"build-{purpose}"
        build = tg.datasets.build(
            purpose=purpose, out=out, as_of=parse_instant(as_of), format="jsonl"
        )
        records = _records(out)
        for account in ("a1", "b"):
            answer = report(tg, account, as_of)
            for conversation in answer.conversations:
                cid = conversation.conversation_id
                held = [
                    entry
                    for entry in tg.datasets.lineage(conversation_id=cid).builds
                    if entry.build.build_id == build.build_id
                ]
                use = conversation.uses[purpose]
                assert (cid in answer.purposes[purpose].conversations) == bool(held), (
                    purpose,
                    cid,
                )
                if held:
                    [entry] = held
                    assert entry.messages == use.eligible, (purpose, cid)
                    bases = {records[r]["basis"] for r in entry.record_ids}
                    assert bases == set(use.bases), (purpose, cid)
                    assert build.build_id in conversation.builds[purpose]
