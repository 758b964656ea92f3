"""Policy versions: consumer-2024, then consumer-2025 from a configured date (SWITCH).

Decision tables across the effective date on SQLite and PostgreSQL: messages just before, at
and after the switch, in a standard and an incognito conversation (``explain``, both engines),
within and after consumer-2025's 30 days of content retention; reports submitted before and
after it (P10Y against P5Y; a mode excluded); the manifest's policies; the default
(consumer-2024 alone) unchanged. The policy set and the setting's syntax as units.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.factories import Events, jsonl
from tests.support import run_engine
from traingate._core.policy import (
    ConsentBasis,
    PolicySet,
    bundled_policy,
    decide_report,
    default_policy,
    load_policy_set,
    parse_policy_spec,
)
from traingate._core.timeutil import parse_instant
from traingate._errors import PolicyError
from traingate._facade import Traingate
from traingate._settings import Settings

SWITCH = "2026-01-01T00:00:00Z"
VERSIONS = f"consumer-2024,consumer-2025@{SWITCH}"
BEFORE = "2025-12-31T23:59:59.999999Z"
AFTER = "2026-01-01T00:00:00.000001Z"
AS_OF = "2026-01-20T00:00:00Z"  # within consumer-2025's 30 days of the messages after SWITCH
LATE = "2026-06-01T00:00:00Z"  # after them
FLAGGED = "2026-01-10T00:00:00Z"
P = parse_instant


# -- the policies and the setting -----------------------------------------------------------


def test_consumer_2025_differs_from_consumer_2024_as_spec_says() -> None:
    """SPEC §5: consumer-2025 is consumer-2024 with coverage by conversation, incognito excluded
    by every basis, feedback for P5Y and retention rules; everything else is the same."""
    old, new = default_policy(), bundled_policy("consumer-2025")
    assert (old.id, old.version, new.version) == ("consumer-2024", 2, 2)
    assert new.effective_from == "2025-09-28T00:00:00Z"
    same = {"plans", "purposes", "settings", "deleted_after"}
    assert {k: getattr(new, k) for k in same} == {k: getattr(old, k) for k in same}
    assert [b.id for b in new.bases] == [b.id for b in old.bases]
    changed = {"exclude_modes", "coverage", "retention", "text"}
    assert [b.model_dump(exclude=changed) for b in new.bases] == [
        b.model_dump(exclude=changed) for b in old.bases
    ]
    assert all(b.exclude_modes == ("incognito",) for b in new.bases)
    assert all(b.exclude_modes == () for b in old.bases)
    opt_in, old_opt_in = new.basis("opt_in"), old.basis("opt_in")
    assert isinstance(opt_in, ConsentBasis) and isinstance(old_opt_in, ConsentBasis)
    assert (opt_in.coverage, old_opt_in.coverage) == ("conversation", "message")
    assert (opt_in.default, opt_in.revocation) == ("denied", "retroactive")
    assert new.feedback_basis is not None and new.feedback_basis.retention == "P5Y"
    assert old.feedback_basis is not None and old.feedback_basis.retention == "P10Y"
    assert [(r.when, r.keep) for r in new.retention] == [
        ("always", "P30D"),
        ("basis:opt_in", "P5Y"),
        ("basis:usage_policy_flag", "P2Y"),
    ]
    assert old.retention == ()
    assert set(new.rules) - set(old.rules) == {"mode_excluded", "content_expired"}
    assert set(old.rules) <= set(new.rules)


def _ranges(switch: str) -> list[dict[str, Any]]:
    """``PolicySet.ranges()`` of consumer-2024 followed by consumer-2025 from ``switch``."""
    old, new = default_policy(), bundled_policy("consumer-2025")
    return [
        {**old.identity(), "effective_from": old.effective_from, "from": None, "until": switch},
        {**new.identity(), "effective_from": switch, "from": switch, "until": None},
    ]


def test_the_policy_in_force_at_a_time() -> None:
    policies = load_policy_set(VERSIONS)
    assert [p.id for p in policies.policies] == ["consumer-2024", "consumer-2025"]
    assert policies.policies[1].effective_from == SWITCH
    assert policies.in_force(P(BEFORE)).id == "consumer-2024"
    assert policies.in_force(P(SWITCH)).id == "consumer-2025"
    assert policies.in_force(P(AFTER)).id == "consumer-2025"
    # Before the earliest effective date: the earliest policy.
    assert policies.in_force(P("2020-01-01T00:00:00Z")).id == "consumer-2024"
    alone = load_policy_set(f"consumer-2025@{SWITCH}")
    assert alone.in_force(P("2020-01-01T00:00:00Z")).id == "consumer-2025"
    # Entries may come in any order; the override does not change the file's hash.
    swapped = load_policy_set(f"consumer-2025@{SWITCH},consumer-2024")
    assert [p.id for p in swapped.policies] == ["consumer-2024", "consumer-2025"]
    assert swapped.policies[1].sha256 == bundled_policy("consumer-2025").sha256
    assert policies.ranges() == _ranges(SWITCH)
    # Without an override, consumer-2025 is in force from its file's date.
    dated = load_policy_set("consumer-2024,consumer-2025")
    assert dated.in_force(P("2025-09-27T23:59:59.999999Z")).id == "consumer-2024"
    assert dated.in_force(P("2025-09-28T00:00:00Z")).id == "consumer-2025"


def test_the_default_is_consumer_2024_alone() -> None:
    for spec in (None, "", "consumer-2024"):
        policies = load_policy_set(spec)
        assert [p.id for p in policies.policies] == ["consumer-2024"]
        assert policies.policies[0] == default_policy()
    assert Settings.resolve(environ={}).policy is None
    assert Settings.resolve(environ={"TRAINGATE_POLICY": VERSIONS}).policy == VERSIONS


def test_policy_files_and_their_dates(tmp_path: Path) -> None:
    data = (
        Path(__file__).parent.parent / "src/traingate/_core/policy/consumer-2025.toml"
    ).read_bytes()
    (tmp_path / "mine@v2.toml").write_bytes(data.replace(b'"consumer-2025"', b'"mine"'))
    policies = load_policy_set(f"consumer-2024, {tmp_path / 'mine@v2.toml'}@2027-03-01T00:00:00Z")
    assert [p.id for p in policies.policies] == ["consumer-2024", "mine"]
    assert policies.policies[1].effective_from == "2027-03-01T00:00:00Z"
    refs = parse_policy_spec(f"{tmp_path / 'mine@v2.toml'}")
    assert refs[0].name.endswith("mine@v2.toml") and refs[0].effective is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("consumer-2024,", "an entry is empty"),
        ("consumer-2025@2026-01-01", "effective date"),
        ("consumer-2025@2026-13-01T00:00:00Z", "effective date"),
        ("@2026-01-01T00:00:00Z", "names no policy"),
        (
            "no-such-policy",
            r"neither a bundled policy \(chatgpt-2025, consumer-2024, consumer-2025, lechat-2025\)",
        ),
        ("consumer-2025@yesterday", "an effective date follows @ as an RFC 3339 instant"),
        ("consumer-2024,consumer-2025@2024-01-01T00:00:00Z", "must be given in increasing"),
        ("consumer-2024,consumer-2024@2026-01-01T00:00:00Z", "same policy id and version"),
    ],
)
def test_a_malformed_setting_is_refused_with_its_reason(spec: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policy_set(spec)


def test_a_set_must_agree_on_the_class_of_a_plan() -> None:
    other = default_policy().model_copy(
        update={"id": "other", "plans": {"free": "commercial"}, "effective_from": SWITCH}
    )
    with pytest.raises(PolicyError, match=r"disagree on plan 'free' \(commercial and consumer\)"):
        PolicySet.of([default_policy(), other])


def test_a_set_may_differ_in_plans_and_settings() -> None:
    """Plans that differ between policies (SPEC §5): events may name any of them."""
    policies = load_policy_set(
        "consumer-2024,chatgpt-2025@2026-01-01T00:00:00Z,lechat-2025@2027-01-01T00:00:00Z"
    )
    assert set(policies.plans) == {
        *default_policy().plans,
        *bundled_policy("chatgpt-2025").plans,
        *bundled_policy("lechat-2025").plans,
    }
    assert policies.plans["student"] == "consumer" and policies.plans["business"] == "commercial"
    assert policies.settings == ("model_training",)
    assert [p.id for p in policies.policies] == ["consumer-2024", "chatgpt-2025", "lechat-2025"]


def test_reports_under_the_policy_of_their_submission() -> None:
    policies = load_policy_set(VERSIONS)
    cases = [
        # submitted, mode, as-of, expected basis or reason, deciding policy
        (BEFORE, "standard", "2035-12-31T23:59:59.999998Z", "feedback", "consumer-2024"),
        (BEFORE, "standard", "2035-12-31T23:59:59.999999Z", "feedback_expired", "consumer-2024"),
        (SWITCH, "standard", "2030-12-31T23:59:59.999999Z", "feedback", "consumer-2025"),
        (SWITCH, "standard", "2031-01-01T00:00:00Z", "feedback_expired", "consumer-2025"),
        (BEFORE, "incognito", AS_OF, "feedback", "consumer-2024"),
        (SWITCH, "incognito", AS_OF, "mode_excluded", "consumer-2025"),
        (SWITCH, "temporary", AS_OF, "feedback", "consumer-2025"),
    ]
    for submitted, mode, as_of, expected, policy_id in cases:
        decision = decide_report(
            policy=policies,
            submitted_at=P(submitted),
            purpose="model_training",
            as_of=P(as_of),
            mode=mode,
        )
        assert (decision.basis or decision.primary_reason) == expected, (submitted, as_of)
        assert decision.policy_id == policy_id


# -- decision tables through the store ------------------------------------------------------


def history(e: Events) -> list[dict[str, Any]]:
    """Account ``a`` (free, opted in); ``c`` standard and ``i`` incognito, each with a message
    just before, at and just after the switch; both flagged; reports on each side of it."""
    events = [
        e.account("a", "2025-06-01T00:00:00Z"),
        e.consent("a", "2025-06-01T00:00:00Z", True),
        e.conversation("c", "a", "2025-06-02T00:00:00Z"),
        e.conversation("i", "a", "2025-06-02T00:00:00Z", mode="incognito"),
    ]
    for conversation in ("c", "i"):
        for name, at in (("before", BEFORE), ("at", SWITCH), ("after", AFTER)):
            events.append(e.message(f"{conversation}-{name}", conversation, "a", at))
        events.append(e.flag(f"flag-{conversation}", conversation, FLAGGED))
    events += [
        e.feedback("r-c-before", "a", "c", "c-before", BEFORE, comment="r-c-before"),
        e.feedback("r-c-after", "a", "c", "c-at", SWITCH, comment="r-c-after"),
        e.feedback("r-i-before", "a", "i", "i-before", BEFORE, comment="r-i-before"),
        e.feedback("r-i-after", "a", "i", "i-after", AFTER, comment="r-i-after"),
    ]
    return events


@pytest.fixture
def versioned(db_url: str, tmp_path: Path) -> Any:
    settings = Settings(db_url=db_url, key_file=tmp_path / "keys.json", policy=VERSIONS)
    with Traingate.open(settings) as app:
        summary = app.events.ingest(jsonl(history(Events())))
        assert summary.rejected == 0, summary.errors
        yield app, summary


def _explained(
    tg: Traingate, conversation: str, purpose: str, as_of: str = AS_OF
) -> list[tuple[str, str, str]]:
    result = tg.privacy.explain(
        conversation_id=conversation, purpose=purpose, as_of=P(as_of)
    ).to_dict()
    return [
        (m["message_id"], m["basis"] or m["reasons"][0], m["policy"]["id"])
        for m in result["messages"]
    ]


MESSAGE_TABLE = {
    (AS_OF, "c", "model_training"): [
        ("c-before", "opt_in", "consumer-2024"),
        ("c-at", "opt_in", "consumer-2025"),
        ("c-after", "opt_in", "consumer-2025"),
    ],
    (AS_OF, "i", "model_training"): [
        ("i-before", "opt_in", "consumer-2024"),
        ("i-at", "mode_excluded", "consumer-2025"),
        ("i-after", "mode_excluded", "consumer-2025"),
    ],
    (AS_OF, "i", "safety_review"): [
        ("i-before", "usage_policy_flag", "consumer-2024"),
        ("i-at", "mode_excluded", "consumer-2025"),
        ("i-after", "mode_excluded", "consumer-2025"),
    ],
    (AS_OF, "c", "research"): [
        ("c-before", "default_deny", "consumer-2024"),
        ("c-at", "default_deny", "consumer-2025"),
        ("c-after", "default_deny", "consumer-2025"),
    ],
    # Each message keeps the retention of the policy of its time: consumer-2024 keeps content
    # without limit; under consumer-2025 an opted-in message is kept 5 years, an incognito one
    # (no basis covers it) 30 days.
    (LATE, "c", "model_training"): [
        ("c-before", "opt_in", "consumer-2024"),
        ("c-at", "opt_in", "consumer-2025"),
        ("c-after", "opt_in", "consumer-2025"),
    ],
    (LATE, "i", "safety_model_training"): [
        ("i-before", "usage_policy_flag", "consumer-2024"),
        ("i-at", "content_expired", "consumer-2025"),
        ("i-after", "content_expired", "consumer-2025"),
    ],
}
DENIALS = ("mode_excluded", "default_deny", "content_expired")


@pytest.mark.store
@pytest.mark.parametrize(("as_of", "conversation", "purpose"), list(MESSAGE_TABLE))
def test_messages_across_the_effective_date(
    versioned: Any, as_of: str, conversation: str, purpose: str
) -> None:
    tg, _ = versioned
    table = MESSAGE_TABLE[(as_of, conversation, purpose)]
    assert _explained(tg, conversation, purpose, as_of) == table
    index = {"consumer-2024": 0, "consumer-2025": 1}
    expected = sorted((m, None if basis in DENIALS else basis, index[p]) for m, basis, p in table)
    ids = {m.seq: m.message_id for m in tg.store.conversation_facts(conversation).messages}
    for engine in ("duckdb", "scalar"):
        built = run_engine(tg, purpose=purpose, as_of=P(as_of), engine=engine)
        decided = sorted(
            (ids[seq], basis, policy)
            for cid, seq, basis, _, policy in built.decisions
            if cid == conversation
        )
        assert decided == expected, engine


@pytest.mark.store
def test_explain_keeps_its_keys_and_names_the_policy(versioned: Any) -> None:
    tg, _ = versioned
    result = tg.privacy.explain(
        conversation_id="i", purpose="model_training", as_of=P(AS_OF)
    ).to_dict()
    assert list(result) == ["conversation_id", "purpose", "as_of", "policy", "messages"]
    assert result["policy"] == {"id": "consumer-2025", "sha256": tg.policies.policies[1].sha256}
    first, second = result["messages"][:2]
    assert list(first) == [
        "message_id", "role", "at", "eligible", "basis", "reasons", "rules", "policy"
    ]  # fmt: skip
    assert first["policy"] == tg.policies.policies[0].identity()
    rule, text = bundled_policy("consumer-2025").rule_text("mode_excluded")
    assert second["rules"] == [{"id": "mode_excluded", "rule": rule, "text": text}]


@pytest.mark.store
def test_reports_keep_the_retention_of_their_submission(versioned: Any) -> None:
    tg, summary = versioned
    receipts = {event_id: receipt for _, event_id, receipt in summary.receipts}
    expiries = sorted(tg.feedback.info(r).expires_at for r in receipts.values())
    assert expiries == [
        P("2031-01-01T00:00:00Z"),  # r-c-after
        P("2031-01-01T00:00:00.000001Z"),  # r-i-after
        P("2035-12-31T23:59:59.999999Z"),  # r-c-before
        P("2035-12-31T23:59:59.999999Z"),  # r-i-before
    ]

    def reports(as_of: str) -> dict[str, int]:
        tallies = set()
        for engine in ("duckdb", "scalar"):
            built = run_engine(tg, purpose="model_training", as_of=P(as_of), engine=engine)
            comments = sorted(r["comment"] for r in built.records if r["kind"] == "feedback")
            tallies.add(
                (tuple(comments), tuple(sorted(built.reports.excluded_by_reason().items())))
            )
        assert len(tallies) == 1
        included, excluded = tallies.pop()
        return {"included": len(included), **dict(excluded)} | {c: 1 for c in included}

    # Before the P5Y expiry: every report but the incognito one submitted after the switch.
    assert reports(AS_OF) == {
        "included": 3, "mode_excluded": 1, "r-c-after": 1, "r-c-before": 1, "r-i-before": 1,
    }  # fmt: skip
    # Between P5Y and P10Y: only the reports submitted before the switch are left.
    assert reports("2031-06-01T00:00:00Z") == {"included": 2, "r-c-before": 1, "r-i-before": 1}
    snapshots = [tg.feedback.show(r)[1] for r in receipts.values()]
    assert sorted((s.comment, s.mode) for s in snapshots) == [
        ("r-c-after", "standard"), ("r-c-before", "standard"),
        ("r-i-after", "incognito"), ("r-i-before", "incognito"),
    ]  # fmt: skip


@pytest.mark.store
def test_the_manifest_lists_every_policy_that_decided(versioned: Any, tmp_path: Path) -> None:
    tg, _ = versioned
    first, second = tg.policies.ranges()
    built = tg.datasets.build(purpose="model_training", out=tmp_path / "ds", as_of=P(AS_OF))
    manifest = built.manifest
    assert manifest["policy"] == {
        "id": "consumer-2025", "version": 2, "sha256": second["sha256"],
    }  # fmt: skip
    assert manifest["policies"] == [
        {**first, "messages": 2, "reports": 2},
        {**second, "messages": 4, "reports": 2},
    ]
    assert manifest["exclusions"]["messages"]["by_reason"] == {"mode_excluded": 2}
    assert manifest["exclusions"]["reports"]["by_reason"] == {"mode_excluded": 1}
    assert tg.datasets.verify(path=tmp_path / "ds").ok
    # Before the switch only consumer-2024 decided anything.
    early = tg.datasets.build(
        purpose="model_training", out=tmp_path / "early", as_of=P("2025-12-31T23:59:59.999999Z")
    )
    assert early.manifest["policy"]["id"] == "consumer-2024"
    assert early.manifest["policies"] == [{**first, "messages": 2, "reports": 2}]


@pytest.mark.store
def test_the_default_decides_incognito_as_before(tg: Traingate, tmp_path: Path) -> None:
    """Without a setting, consumer-2024 alone decides: a mode changes nothing, and content
    never expires (SPEC §1, §5)."""
    summary = tg.events.ingest(jsonl(history(Events())))
    assert summary.rejected == 0
    assert [p.id for p in tg.policies.policies] == ["consumer-2024"]
    assert _explained(tg, "i", "model_training") == [
        ("i-before", "opt_in", "consumer-2024"),
        ("i-at", "opt_in", "consumer-2024"),
        ("i-after", "opt_in", "consumer-2024"),
    ]
    assert _explained(tg, "i", "model_training", LATE) == _explained(tg, "i", "model_training")
    built = tg.datasets.build(purpose="model_training", out=tmp_path / "ds", as_of=P(AS_OF))
    assert built.manifest["policies"] == [{**tg.policies.ranges()[0], "messages": 6, "reports": 4}]
    assert built.manifest["exclusions"]["messages"]["by_reason"] == {}
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text()) == built.manifest


def test_the_console_shows_the_policies_in_force(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from traingate._server import create_app

    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'db.sqlite'}", key_file=tmp_path / "k.json", policy=VERSIONS
    )
    with Traingate.open(settings) as tg:
        token = tg.access.create_token(role="analyst").token
    app = create_app(settings=settings, datasets_dir=tmp_path / "datasets")
    with TestClient(app) as client:
        assert client.post("/admin/login", data={"token": token, "next": "/admin"}).is_success
        old = client.get("/admin/policy", params={"policy_id": "consumer-2024"}).text
        new = client.get("/admin/policy", params={"policy_id": "consumer-2025"}).text
    assert "Policies in force" in old and 'href="/admin/policy?policy_id=consumer-2025"' in old
    assert 'href="/admin/policy?policy_id=consumer-2024"' in new

    def article(page: str, policy_id: str) -> str:
        return page.split(f'id="policy-{policy_id}"', 1)[1].split("</article>", 1)[0]

    # The chosen policy first, then the other one in force.
    assert old.index('id="policy-consumer-2024"') < old.index('id="policy-consumer-2025"')
    assert new.index('id="policy-consumer-2025"') < new.index('id="policy-consumer-2024"')
    for page in (old, new):
        first, second = article(page, "consumer-2024"), article(page, "consumer-2025")
        assert "incognito" not in first and "retention_training" not in first
        assert "incognito" in second and "conversation" in second
        for rule in bundled_policy("consumer-2025").retention:
            assert rule.id in second
