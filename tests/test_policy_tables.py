"""Decision tables of the four shipped policies, written from their published text.

Each case is one conversation ``c`` of account ``a`` built in memory (``ConversationFacts``, no
database) and judged by the scalar evaluator: the expected decision of each message in time
order (a basis id when eligible, else the first reason for denial), or of one feedback report.
Every case is listed by name in the policy's docs page (``docs/policies/<id>.md``), beside the
published sentence it checks; ``test_every_case_is_on_its_docs_page`` keeps the two together.

Times are days after 2025-10-01T00:00:00Z (``at(2.5)`` is noon of 3 October) or exact instants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import decide_in_duckdb
from traingate._core.facts import (
    ConsentChange,
    ConversationFacts,
    FlagFact,
    MessageFact,
    PlanChange,
)
from traingate._core.policy import (
    bundled_policy,
    bundled_policy_ids,
    decide_report,
    explain_conversation,
)
from traingate._core.timeutil import DAY, parse_instant

DOCS = Path(__file__).resolve().parent.parent / "docs" / "policies"
BASE = parse_instant("2025-10-01T00:00:00Z")
SETTING = "model_training"  # the consent setting every shipped policy declares

Time = float | str


def at(moment: Time) -> int:
    """Days after BASE, or an RFC 3339 instant."""
    return parse_instant(moment) if isinstance(moment, str) else BASE + round(moment * DAY)


@dataclass(frozen=True)
class History:
    """A small history around conversation ``c`` of account ``a``."""

    messages: Sequence[Time]
    plans: Sequence[tuple[Time, str, str | None]] = ((0, "free", None),)
    account: Sequence[tuple[Time, bool]] = ()  # the account's consent changes
    org: Sequence[tuple[Time, bool]] = ()  # organization "org1"'s consent changes
    flags: Sequence[tuple[Time, Time | None]] = ()  # (raised, cleared or None)
    mode: str = "standard"
    conversation_deleted: Sequence[Time] = ()
    account_deleted: Sequence[Time] = ()

    def facts(self) -> ConversationFacts:
        def ledger(changes: Sequence[tuple[Time, bool]]) -> tuple[ConsentChange, ...]:
            return tuple(
                ConsentChange(at=at(t), seq=i, granted=g, source="privacy_settings")
                for i, (t, g) in enumerate(changes)
            )

        return ConversationFacts(
            conversation_id="c",
            account_id="a",
            messages=tuple(
                MessageFact(message_id=f"m{i}", at=at(t), seq=i, role="user")
                for i, t in enumerate(self.messages)
            ),
            plans=tuple(
                PlanChange(at=at(t), seq=i, plan=plan, organization_id=org)
                for i, (t, plan, org) in enumerate(self.plans)
            ),
            consents={
                ("account", "a", SETTING): ledger(self.account),
                ("organization", "org1", SETTING): ledger(self.org),
            },
            flags=tuple(
                FlagFact(
                    flag_id=f"f{i}",
                    at=at(raised),
                    policy="usage_policy",
                    cleared_at=() if cleared is None else (at(cleared),),
                )
                for i, (raised, cleared) in enumerate(self.flags)
            ),
            conversation_deleted=tuple(at(t) for t in self.conversation_deleted),
            account_deleted=tuple(at(t) for t in self.account_deleted),
            mode=self.mode,
        )


@dataclass(frozen=True)
class Case:
    """Messages of ``history`` judged for ``purpose`` as of ``as_of``: ``expected`` per message.
    ``reasons``, when given, is the whole reason list of the last message."""

    history: History
    purpose: str
    as_of: Time
    expected: tuple[str, ...]
    reasons: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Report:
    """A feedback report submitted at ``submitted`` judged for ``purpose`` as of ``as_of``."""

    submitted: Time
    purpose: str
    as_of: Time
    expected: str
    mode: str = "standard"
    comment: str | None = "a comment"


TEAM = ((0, "team", "org1"),)
BUSINESS = ((0, "business", "org1"),)

CASES: dict[str, dict[str, Case | Report]] = {
    # -- consumer-2024: SPEC §1, the help-center article this project started from ----------
    "consumer-2024": {
        "no opt-in: not used": Case(History([2]), "model_training", 10, ("no_consent",)),
        "opted in before the message": Case(
            History([2], account=[(1, True)]), "model_training", 10, ("opt_in",)
        ),
        "revocation removes what it covered": Case(
            History([2], account=[(1, True), (5, False)]),
            "model_training",
            10,
            ("consent_revoked",),
        ),
        "a new grant covers new messages only": Case(
            History([2, 7], account=[(1, True), (5, False), (6, True)]),
            "model_training",
            10,
            ("consent_revoked", "opt_in"),
        ),
        "a denial wins at one instant": Case(
            History([2], account=[(1, True), (1, False)]), "model_training", 10, ("no_consent",)
        ),
        "commercial: the organization's opt-in": Case(
            History([2], plans=TEAM, org=[(1, True)]),
            "model_training",
            10,
            ("organization_opt_in",),
        ),
        "commercial: the account's own opt-in has no effect": Case(
            History([2], plans=TEAM, account=[(1, True)]),
            "model_training",
            10,
            ("no_consent",),
            reasons=("no_consent", "account_scope_consent_ignored"),
        ),
        "flagged: safety review, every plan": Case(
            History([2, 3], plans=TEAM, flags=[(4, None)]),
            "safety_review",
            10,
            ("usage_policy_flag", "usage_policy_flag"),
        ),
        "flagged: nothing else": Case(
            History([2], flags=[(4, None)]), "service_analytics", 10, ("default_deny",)
        ),
        "flag cleared": Case(
            History([2], flags=[(4, 6)]), "safety_model_training", 10, ("no_active_flag",)
        ),
        "conversation deleted": Case(
            History([2], account=[(1, True)], conversation_deleted=[5]),
            "model_training",
            10,
            ("conversation_deleted",),
        ),
        "account deleted": Case(
            History([2], account=[(1, True)], account_deleted=[5]),
            "model_training",
            10,
            ("account_deleted",),
        ),
        "plan unknown at the message's time": Case(
            History([2], plans=((3, "free", None),), account=[(1, True)]),
            "model_training",
            10,
            ("unknown_account",),
        ),
        "incognito changes nothing": Case(
            History([2], account=[(1, True)], mode="incognito"), "model_training", 10, ("opt_in",)
        ),
        "no retention limit on content": Case(
            History([2], account=[(1, True)]), "model_training", "2045-01-01T00:00:00Z", ("opt_in",)
        ),
        "feedback usable for 10 years": Report(
            "2024-02-29T12:00:00Z", "research", "2034-02-28T11:59:59.999999Z", "feedback"
        ),
        "feedback expired after 10 years (29 February)": Report(
            "2024-02-29T12:00:00Z", "research", "2034-02-28T12:00:00Z", "feedback_expired"
        ),
        "feedback: not for safety review": Report(2, "safety_review", 10, "default_deny"),
    },
    # -- consumer-2025: the consumer terms from 2025-09-28 -----------------------------------
    "consumer-2025": {
        "users choose: no choice, not used": Case(
            History([2]), "model_training", 10, ("no_consent",)
        ),
        "opted in: the chat is used": Case(
            History([2, 3], account=[(1, True)]), "model_training", 10, ("opt_in", "opt_in")
        ),
        "resumed chat after a new grant is covered whole": Case(
            History([2, 6], account=[(5, True)]), "model_training", 10, ("opt_in", "opt_in")
        ),
        "not resumed: older messages stay out": Case(
            History([2], account=[(5, True)]), "model_training", 10, ("no_consent",)
        ),
        "turning it off stops the use of stored chats": Case(
            History([2, 3], account=[(1, True), (5, False)]),
            "model_training",
            10,
            ("consent_revoked", "consent_revoked"),
        ),
        "turned off after as-of: still used": Case(
            History([2], account=[(1, True), (5, False)]), "model_training", 4, ("opt_in",)
        ),
        "off, on again, chat resumed: covered whole": Case(
            History([2, 7], account=[(1, True), (5, False), (6, True)]),
            "model_training",
            10,
            ("opt_in", "opt_in"),
        ),
        "incognito: never used for training": Case(
            History([2], account=[(1, True)], mode="incognito"),
            "model_training",
            10,
            ("mode_excluded",),
        ),
        "incognito: never used, even flagged": Case(
            History([2], mode="incognito", flags=[(3, None)]),
            "safety_review",
            10,
            ("mode_excluded",),
        ),
        "not covered: kept 30 days": Case(
            History([2], flags=[(40, None)]), "safety_review", 31.99, ("no_active_flag",)
        ),
        "not covered: expired after 30 days": Case(
            History([2]), "model_training", 32, ("content_expired",)
        ),
        "a flag after the 30 days revives nothing": Case(
            History([2], flags=[(40, None)]), "safety_review", 41, ("content_expired",)
        ),
        "covered by training: kept 5 years": Case(
            History([2], account=[(1, True)]),
            "model_training",
            "2030-10-02T23:59:59Z",
            ("opt_in",),
        ),
        "covered by training: expired after 5 years": Case(
            History([2], account=[(1, True)]),
            "model_training",
            "2030-10-03T00:00:00Z",
            ("content_expired",),
        ),
        "turned off: 30 days from the message, not from the revocation": Case(
            History([2], account=[(1, True), (100, False)]),
            "model_training",
            100,
            ("content_expired",),
        ),
        "flagged: kept 2 years": Case(
            History([2], flags=[(3, None)]),
            "safety_model_training",
            "2027-10-02T23:59:59Z",
            ("usage_policy_flag",),
        ),
        "flagged: expired after 2 years": Case(
            History([2], flags=[(3, None)]),
            "safety_model_training",
            "2027-10-03T00:00:00Z",
            ("content_expired",),
        ),
        "commercial: only the organization's consent": Case(
            History([2], plans=TEAM, account=[(1, True)], org=[(1, True)]),
            "model_training",
            10,
            ("organization_opt_in",),
        ),
        "commercial: the account's own consent has no effect": Case(
            History([2], plans=TEAM, account=[(1, True)]),
            "model_training",
            10,
            ("no_consent",),
            reasons=("no_consent", "account_scope_consent_ignored"),
        ),
        "commercial: incognito excluded": Case(
            History([2], plans=TEAM, org=[(1, True)], mode="incognito"),
            "model_training",
            10,
            ("mode_excluded",),
        ),
        "commercial: content kept 30 days too": Case(
            History([2], plans=TEAM, org=[(1, True)]), "model_training", 32, ("content_expired",)
        ),
        "feedback usable for 5 years": Report(
            "2025-10-03T00:00:00Z", "model_training", "2030-10-02T23:59:59Z", "feedback"
        ),
        "feedback expired after 5 years": Report(
            "2025-10-03T00:00:00Z", "model_training", "2030-10-03T00:00:00Z", "feedback_expired"
        ),
        "feedback on an incognito chat: never used": Report(
            2, "model_training", 10, "mode_excluded", mode="incognito"
        ),
    },
    # -- chatgpt-2025: OpenAI's published data controls ---------------------------------------
    "chatgpt-2025": {
        "on unless turned off": Case(
            History([2, 3]), "model_training", 10, ("improve_model_setting",) * 2
        ),
        "every consumer plan": Case(
            History([2, 3, 4], plans=((0, "go", None), (2.5, "plus", None), (3.5, "pro", None))),
            "model_training",
            10,
            ("improve_model_setting",) * 3,
        ),
        "turned off: new conversations only": Case(
            History([2, 6], account=[(5, False)]),
            "model_training",
            10,
            ("improve_model_setting", "no_consent"),
        ),
        "turned on again: new content used": Case(
            History([2, 6], account=[(1, False), (5, True)]),
            "model_training",
            10,
            ("no_consent", "improve_model_setting"),
        ),
        "temporary chats: never used for training": Case(
            History([2], mode="temporary"), "model_training", 10, ("mode_excluded",)
        ),
        "temporary chats: flagged, safety review within 30 days": Case(
            History([2], mode="temporary", flags=[(3, None)]),
            "safety_review",
            31.99,
            ("usage_policy_flag",),
        ),
        "temporary chats: expired after 30 days": Case(
            History([2], mode="temporary", flags=[(3, None)]),
            "safety_review",
            32,
            ("content_expired",),
        ),
        "other content: no retention limit": Case(
            History([2]), "model_training", "2045-01-01T00:00:00Z", ("improve_model_setting",)
        ),
        "business: not used by default": Case(
            History([2], plans=BUSINESS), "model_training", 10, ("no_consent",)
        ),
        "business: the account's own setting has no effect": Case(
            History([2], plans=BUSINESS, account=[(1, True)]),
            "model_training",
            10,
            ("no_consent",),
            reasons=("no_consent", "account_scope_consent_ignored"),
        ),
        "business: the organization shares its data": Case(
            History([2], plans=((0, "enterprise", "org1"),), org=[(1, True)]),
            "model_training",
            10,
            ("organization_opt_in",),
        ),
        "business: the organization stops sharing": Case(
            History([2], plans=((0, "api", "org1"),), org=[(1, True), (5, False)]),
            "model_training",
            10,
            ("consent_revoked",),
        ),
        "business: temporary chats under the organization's consent, 30 days": Case(
            History([2, 3], plans=((0, "edu", "org1"),), org=[(1, True)], mode="temporary"),
            "model_training",
            32,
            ("content_expired", "organization_opt_in"),
        ),
        "feedback: no expiry": Report(2, "model_training", "2075-01-01T00:00:00Z", "feedback"),
        "feedback on a temporary chat": Report(
            2, "behavior_research", 10, "feedback", mode="temporary"
        ),
        "feedback without a comment": Report(2, "research", 10, "feedback", comment=None),
        "feedback: not for safety review": Report(2, "safety_review", 10, "default_deny"),
    },
    # -- lechat-2025: Mistral's published help-center answers ---------------------------------
    "lechat-2025": {
        "used by default": Case(History([2]), "model_training", 10, ("training_setting",)),
        "every consumer plan": Case(
            History([2, 3], plans=((0, "student", None), (2.5, "pro", None))),
            "model_training",
            10,
            ("training_setting", "training_setting"),
        ),
        "opt-out: no input or output used any more": Case(
            History([2, 3], account=[(5, False)]),
            "model_training",
            10,
            ("consent_revoked", "consent_revoked"),
        ),
        "opt-out after as-of: still used": Case(
            History([2], account=[(5, False)]), "model_training", 4, ("training_setting",)
        ),
        "opted out, then on again: new messages only": Case(
            History([2, 7], account=[(5, False), (6, True)]),
            "model_training",
            10,
            ("consent_revoked", "training_setting"),
        ),
        "opted out at the message's time": Case(
            History([2], account=[(1, False)]), "model_training", 10, ("no_consent",)
        ),
        "business plans: never": Case(
            History([2], plans=TEAM, org=[(1, True)]), "model_training", 10, ("default_deny",)
        ),
        "business plans: cannot opt in": Case(
            History([2], plans=((0, "enterprise", "org1"),), account=[(1, True)]),
            "model_training",
            10,
            ("account_scope_consent_ignored",),
        ),
        "modes change nothing": Case(
            History([2], mode="temporary"), "model_training", 10, ("training_setting",)
        ),
        "flagged: safety review": Case(
            History([2], plans=TEAM, flags=[(3, None)]), "safety_review", 10, ("usage_policy_flag",)
        ),
        "no retention limit on content": Case(
            History([2]), "model_training", "2045-01-01T00:00:00Z", ("training_setting",)
        ),
        "feedback with a comment": Report(2, "model_training", 10, "feedback"),
        "feedback with a comment: no expiry": Report(
            2, "service_analytics", "2075-01-01T00:00:00Z", "feedback"
        ),
        "feedback without comment: refused": Report(
            2, "model_training", 10, "feedback_without_comment", comment=None
        ),
        "feedback with an empty comment: refused": Report(
            2, "model_training", 10, "feedback_without_comment", comment=""
        ),
        "feedback with a whitespace comment: refused": Report(
            2, "research", 10, "feedback_without_comment", comment=" \n\t "
        ),
        "feedback: not for safety review": Report(2, "safety_review", 10, "default_deny"),
    },
}

PARAMS = [
    pytest.param(policy_id, case, id=f"{policy_id}: {name}")
    for policy_id, cases in CASES.items()
    for name, case in cases.items()
]


@pytest.mark.parametrize(("policy_id", "case"), PARAMS)
def test_decision_table(policy_id: str, case: Case | Report) -> None:
    policy = bundled_policy(policy_id)
    if isinstance(case, Report):
        decision = decide_report(
            policy=policy,
            submitted_at=at(case.submitted),
            purpose=case.purpose,
            as_of=at(case.as_of),
            mode=case.mode,
            comment=case.comment,
        )
        assert (decision.basis or decision.primary_reason) == case.expected
        assert decision.policy_id == policy_id
        return
    explained = explain_conversation(
        policy=policy, facts=case.history.facts(), purpose=case.purpose, as_of=at(case.as_of)
    )
    got = tuple(d.basis if d.eligible else d.primary_reason for _, d in explained)
    assert got == case.expected
    for _, decision in explained:
        assert (decision.basis is not None) == decision.eligible
        for rule_id in decision.rule_ids:
            assert policy.rule_text(rule_id)[1], "every decision names rules with a text"
    if case.reasons:
        assert explained[-1][1].reasons == case.reasons


@pytest.mark.parametrize(
    ("policy_id", "case"), [p for p in PARAMS if isinstance(p.values[1], Case)]
)
def test_decision_table_in_compiled_sql(policy_id: str, case: Case) -> None:
    """The same table through the bulk evaluator: the policy compiled to SQL, run on an
    in-memory DuckDB over the case's facts as Arrow ledgers (no store, no ingest), decides each
    message as the table says, and as the scalar evaluator does."""
    policy = bundled_policy(policy_id)
    facts = case.history.facts()
    as_of = at(case.as_of)
    decided = decide_in_duckdb(policy=policy, facts=facts, purpose=case.purpose, as_of=as_of)
    explained = explain_conversation(policy=policy, facts=facts, purpose=case.purpose, as_of=as_of)
    got = tuple(basis or reason for basis, reason in decided.values())
    assert got == case.expected
    for message, decision in explained:
        basis, reason = decided[message.message_id]
        expected = (decision.basis, None if decision.eligible else decision.primary_reason)
        assert (basis, None if basis else reason) == expected, message.message_id


def test_every_shipped_policy_has_a_table() -> None:
    assert sorted(CASES) == sorted(bundled_policy_ids())


@pytest.mark.parametrize("policy_id", sorted(CASES))
def test_every_case_is_on_its_docs_page(policy_id: str) -> None:
    page = (DOCS / f"{policy_id}.md").read_text()
    missing = [name for name in CASES[policy_id] if f"| {name} |" not in page]
    assert not missing, f"docs/policies/{policy_id}.md does not list {missing}"
    policy = bundled_policy(policy_id)
    stale = [
        r
        for r, text in policy.rules.items()
        if f"| `{r}` | reason | {text.rule} | {text.text} |" not in page
    ]
    assert not stale, f"docs/policies/{policy_id}.md does not give the file's text of {stale}"
