"""Policy versions: consumer-2024, then consumer-2025 from a configured date (SWITCH).

Decision tables across the effective date on SQLite and PostgreSQL: messages just before, at
and after the switch, in a plain and an incognito conversation (``explain``, both engines);
reports submitted before and after it (P10Y against P5Y; incognito); the manifest's policies;
the default (consumer-2024 alone) unchanged. The policy set and the setting's syntax as units.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.factories import Events, jsonl, switched_ranges
from tests.test_build_helpers import run_engine
from traingate.app import Traingate
from traingate.errors import PolicyError
from traingate.policy import (
    PolicySet,
    bundled_policy,
    decide_report,
    default_policy,
    load_policy_set,
    parse_policy_spec,
)
from traingate.settings import Settings
from traingate.timeutil import parse_instant

SWITCH = "2026-01-01T00:00:00Z"
VERSIONS = f"consumer-2024,consumer-2025@{SWITCH}"
BEFORE = "2025-12-31T23:59:59.999999Z"
AFTER = "2026-01-01T00:00:00.000001Z"
AS_OF = "2026-06-01T00:00:00Z"
P = parse_instant


# -- the policies and the setting -----------------------------------------------------------


def test_consumer_2025_is_consumer_2024_but_for_retention_and_incognito() -> None:
    old, new = default_policy(), bundled_policy("consumer-2025")
    assert new.feedback_basis is not None and new.feedback_basis.retention == "P5Y"
    assert [(e.id, e.kind, e.applies_to) for e in new.exclusions] == [
        ("incognito", "incognito", ("message", "feedback_report"))
    ]
    assert new.rule_text("incognito")[1].startswith("The conversation was marked incognito")
    same = {"plans", "purposes", "rules"}
    assert {k: getattr(new, k) for k in same} == {k: getattr(old, k) for k in same}
    strip = {"retention"}
    assert [b.model_dump(exclude=strip) for b in new.bases] == [
        b.model_dump(exclude=strip) for b in old.bases
    ]
    assert old.exclusions == () and old.excluded_by(item="message", incognito=True) == ()


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
    assert policies.ranges() == switched_ranges(SWITCH)


def test_the_default_is_consumer_2024_alone() -> None:
    for spec in (None, "", "consumer-2024"):
        policies = load_policy_set(spec)
        assert [p.id for p in policies.policies] == ["consumer-2024"]
        assert policies.policies[0] == default_policy()
    assert Settings.resolve(environ={}).policy is None
    assert Settings.resolve(environ={"TRAINGATE_POLICY": VERSIONS}).policy == VERSIONS


def test_policy_files_and_their_dates(tmp_path: Path) -> None:
    data = (Path(__file__).parent.parent / "src/traingate/policy/consumer-2025.toml").read_bytes()
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
        ("no-such-policy", "neither a bundled policy .consumer-2024, consumer-2025. nor an"),
        ("consumer-2025@yesterday", "an effective date follows @ as an RFC 3339 instant"),
        ("consumer-2024,consumer-2025@2024-01-01T00:00:00Z", "must be given in increasing"),
        ("consumer-2024,consumer-2024@2026-01-01T00:00:00Z", "same policy id and version"),
    ],
)
def test_a_malformed_setting_is_refused_with_its_reason(spec: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policy_set(spec)


def test_a_set_must_agree_on_plans() -> None:
    other = default_policy().model_copy(
        update={"id": "other", "plans": {"free": "consumer"}, "effective_from": SWITCH}
    )
    with pytest.raises(PolicyError, match="other plans"):
        PolicySet.of([default_policy(), other])


def test_reports_under_the_policy_of_their_submission() -> None:
    policies = load_policy_set(VERSIONS)
    cases = [
        # submitted, incognito, as-of, expected basis or reason, deciding policy
        (BEFORE, False, "2035-12-31T23:59:59.999998Z", "feedback", "consumer-2024"),
        (BEFORE, False, "2035-12-31T23:59:59.999999Z", "feedback_expired", "consumer-2024"),
        (SWITCH, False, "2030-12-31T23:59:59.999999Z", "feedback", "consumer-2025"),
        (SWITCH, False, "2031-01-01T00:00:00Z", "feedback_expired", "consumer-2025"),
        (BEFORE, True, AS_OF, "feedback", "consumer-2024"),
        (SWITCH, True, AS_OF, "incognito", "consumer-2025"),
    ]
    for submitted, incognito, as_of, expected, policy_id in cases:
        decision = decide_report(
            policy=policies,
            submitted_at=P(submitted),
            purpose="model_training",
            as_of=P(as_of),
            incognito=incognito,
        )
        assert (decision.basis or decision.primary_reason) == expected, (submitted, as_of)
        assert decision.policy_id == policy_id


# -- decision tables through the store ------------------------------------------------------


def history(e: Events) -> list[dict[str, Any]]:
    """Account ``a`` (free, opted in); ``c`` plain and ``i`` incognito, each with a message
    just before, at and just after the switch; both flagged; reports on each side of it."""
    events = [
        e.account("a", "2025-06-01T00:00:00Z"),
        e.consent("a", "2025-06-01T00:00:00Z", True),
        e.conversation("c", "a", "2025-06-02T00:00:00Z"),
        e.conversation("i", "a", "2025-06-02T00:00:00Z", incognito=True),
    ]
    for conversation in ("c", "i"):
        for name, at in (("before", BEFORE), ("at", SWITCH), ("after", AFTER)):
            events.append(e.message(f"{conversation}-{name}", conversation, "a", at))
        events.append(e.flag(f"flag-{conversation}", conversation, "2026-02-01T00:00:00Z"))
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
        summary = app.ingest(jsonl(history(Events())))
        assert summary.rejected == 0, summary.errors
        yield app, summary


def _explained(tg: Traingate, conversation: str, purpose: str) -> list[tuple[str, str, str]]:
    result = tg.explain(conversation_id=conversation, purpose=purpose, as_of=P(AS_OF)).to_dict()
    return [
        (m["message_id"], m["basis"] or m["reasons"][0], m["policy"]["id"])
        for m in result["messages"]
    ]


MESSAGE_TABLE = {
    ("c", "model_training"): [
        ("c-before", "opt_in", "consumer-2024"),
        ("c-at", "opt_in", "consumer-2025"),
        ("c-after", "opt_in", "consumer-2025"),
    ],
    ("i", "model_training"): [
        ("i-before", "opt_in", "consumer-2024"),
        ("i-at", "incognito", "consumer-2025"),
        ("i-after", "incognito", "consumer-2025"),
    ],
    ("i", "safety_review"): [
        ("i-before", "usage_policy_flag", "consumer-2024"),
        ("i-at", "incognito", "consumer-2025"),
        ("i-after", "incognito", "consumer-2025"),
    ],
    ("c", "research"): [
        ("c-before", "default_deny", "consumer-2024"),
        ("c-at", "default_deny", "consumer-2025"),
        ("c-after", "default_deny", "consumer-2025"),
    ],
}


@pytest.mark.store
@pytest.mark.parametrize(("conversation", "purpose"), sorted(MESSAGE_TABLE))
def test_messages_across_the_effective_date(
    versioned: Any, conversation: str, purpose: str
) -> None:
    tg, _ = versioned
    assert _explained(tg, conversation, purpose) == MESSAGE_TABLE[(conversation, purpose)]
    index = {"consumer-2024": 0, "consumer-2025": 1}
    expected = sorted(
        (m, None if basis in ("incognito", "default_deny") else basis, index[p])
        for m, basis, p in MESSAGE_TABLE[(conversation, purpose)]
    )
    ids = {m.seq: m.message_id for m in tg.store.conversation_facts(conversation).messages}
    for engine in ("duckdb", "scalar"):
        built = run_engine(tg, purpose=purpose, as_of=P(AS_OF), engine=engine)
        decided = sorted(
            (ids[seq], basis, policy)
            for cid, seq, basis, _, policy in built.decisions
            if cid == conversation
        )
        assert decided == expected, engine


@pytest.mark.store
def test_explain_keeps_its_keys_and_names_the_policy(versioned: Any) -> None:
    tg, _ = versioned
    result = tg.explain(conversation_id="i", purpose="model_training", as_of=P(AS_OF)).to_dict()
    assert list(result) == ["conversation_id", "purpose", "as_of", "policy", "messages"]
    assert result["policy"] == {"id": "consumer-2025", "sha256": tg.policies.policies[1].sha256}
    first, second = result["messages"][:2]
    assert list(first) == [
        "message_id", "role", "at", "eligible", "basis", "reasons", "rules", "policy"
    ]  # fmt: skip
    assert first["policy"] == tg.policies.policies[0].identity()
    assert second["rules"] == [
        {
            "id": "incognito",
            "rule": "consumer-2025/1",
            "text": bundled_policy("consumer-2025").rule_text("incognito")[1],
        }
    ]


@pytest.mark.store
def test_reports_keep_the_retention_of_their_submission(versioned: Any) -> None:
    tg, summary = versioned
    receipts = {event_id: receipt for _, event_id, receipt in summary.receipts}
    expiries = sorted(tg.report_info(r).expires_at for r in receipts.values())
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
        comments, excluded = tallies.pop()
        return {"included": len(comments), **dict(excluded)} | {c: 1 for c in comments}

    # Before the P5Y expiry: every report but the incognito one submitted after the switch.
    assert reports(AS_OF) == {
        "included": 3, "incognito": 1, "r-c-after": 1, "r-c-before": 1, "r-i-before": 1,
    }  # fmt: skip
    # Between P5Y and P10Y: only the reports submitted before the switch are left.
    assert reports("2031-06-01T00:00:00Z") == {"included": 2, "r-c-before": 1, "r-i-before": 1}
    snapshots = [tg.feedback_show(r)[1] for r in receipts.values()]
    assert sorted((s.comment, s.incognito) for s in snapshots) == [
        ("r-c-after", False), ("r-c-before", False), ("r-i-after", True), ("r-i-before", True),
    ]  # fmt: skip


@pytest.mark.store
def test_the_manifest_lists_every_policy_that_decided(versioned: Any, tmp_path: Path) -> None:
    tg, _ = versioned
    first, second = tg.policies.ranges()
    built = tg.build_dataset(purpose="model_training", out=tmp_path / "ds", as_of=P(AS_OF))
    manifest = built.manifest
    assert manifest["policy"] == {
        "id": "consumer-2025", "version": 1, "sha256": second["sha256"],
    }  # fmt: skip
    assert manifest["policies"] == [
        {**first, "messages": 2, "reports": 2},
        {**second, "messages": 4, "reports": 2},
    ]
    assert manifest["exclusions"]["messages"]["by_reason"] == {"incognito": 2}
    assert manifest["exclusions"]["reports"]["by_reason"] == {"incognito": 1}
    assert tg.verify_dataset(path=tmp_path / "ds").ok
    # Before the switch only consumer-2024 decided anything.
    early = tg.build_dataset(
        purpose="model_training", out=tmp_path / "early", as_of=P("2025-12-31T23:59:59.999999Z")
    )
    assert early.manifest["policy"]["id"] == "consumer-2024"
    assert early.manifest["policies"] == [{**first, "messages": 2, "reports": 2}]


@pytest.mark.store
def test_the_default_decides_incognito_as_before(tg: Traingate, tmp_path: Path) -> None:
    """Without a setting, consumer-2024 alone decides: incognito changes nothing (SPEC)."""
    summary = tg.ingest(jsonl(history(Events())))
    assert summary.rejected == 0
    assert [p.id for p in tg.policies.policies] == ["consumer-2024"]
    assert _explained(tg, "i", "model_training") == [
        ("i-before", "opt_in", "consumer-2024"),
        ("i-at", "opt_in", "consumer-2024"),
        ("i-after", "opt_in", "consumer-2024"),
    ]
    built = tg.build_dataset(purpose="model_training", out=tmp_path / "ds", as_of=P(AS_OF))
    assert built.manifest["policies"] == [{**tg.policies.ranges()[0], "messages": 6, "reports": 4}]
    assert built.manifest["exclusions"]["messages"]["by_reason"] == {}
    assert json.loads((tmp_path / "ds" / "manifest.json").read_text()) == built.manifest


def test_the_console_shows_the_policies_in_force(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from traingate.api import create_app

    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'db.sqlite'}", key_file=tmp_path / "k.json", policy=VERSIONS
    )
    with Traingate.open(settings) as tg:
        token = tg.create_token(role="analyst").token
    app = create_app(settings=settings, datasets_dir=tmp_path / "datasets")
    with TestClient(app) as client:
        assert client.post("/admin/login", data={"token": token, "next": "/admin"}).is_success
        old = client.get("/admin/policy", params={"policy_id": "consumer-2024"}).text
        new = client.get("/admin/policy", params={"policy_id": "consumer-2025"}).text
    assert "Policies in force" in old and 'href="/admin/policy?policy_id=consumer-2025"' in old
    assert "Exclusions" not in old
    assert "Exclusions" in new and "<span>incognito</span>" in new
    assert 'href="/admin/policy?policy_id=consumer-2024"' in new
