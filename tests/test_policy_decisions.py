"""SPEC §1 as decision tables: events in, decisions out, in memory and in compiled SQL.

Each case is a small history around one conversation ``c`` of account ``a`` (days of 2024 via
``Events.t``) and the expected decision of each message: a basis id when eligible, else the
first reason for denial. ``CASES`` run under the default policy (consumer-2024, SPEC §1);
``POLICY_CASES`` run the other shipped policies (modes from events, consent defaults, plans only
they declare), beside their in-memory tables in ``tests/test_policy_tables.py``.

A case's events become facts the product's way, never by rules written again here: they are
ingested into a SQLite store of the case's own, which gives the conversation's facts
(``Store.conversation_facts``, what ``tg.privacy.explain`` reads). Those facts are decided by
the scalar evaluator (``explain_conversation``, what explain runs) and by the policy compiled to
SQL on an in-memory DuckDB (``decide_in_duckdb``, the bulk evaluator). A handful of cases, one
per policy and the arrival-order ones, go the whole way on each store backend (SQLite and
PostgreSQL): ingest, then ``tg.privacy.explain``, the facts equal to SQLite's.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.factories import Events, jsonl
from tests.support import decide_in_duckdb
from traingate._core.facts import ConversationFacts
from traingate._core.policy import Policy, bundled_policy, default_policy, explain_conversation
from traingate._core.timeutil import parse_instant
from traingate._facade import Traingate
from traingate._settings import Settings

T = Events.t
E = Events


@dataclass(frozen=True)
class Case:
    history: Callable[[Events], list[dict[str, object]]]
    purpose: str
    as_of: str
    expected: tuple[str, ...]  # per message in time order: basis id, or first denial reason


def consumer(e: Events, plan: str = "free") -> list[dict[str, object]]:
    return [e.account("a", T(0), plan), e.conversation("c", "a", T(1))]


def msgs(e: Events, *days: int) -> list[dict[str, object]]:
    return [e.message(f"m{d}", "c", "a", T(d), content=f"day {d}") for d in days]


CASES: dict[str, Case] = {
    # Rule 1: nothing without a basis.
    "default deny, no consent": Case(
        lambda e: [*consumer(e), *msgs(e, 5)], "model_training", T(100), ("no_consent",)
    ),
    "default deny for purposes no message basis grants": Case(
        lambda e: [*consumer(e), e.consent("a", T(1), True), *msgs(e, 5)],
        "service_analytics",
        T(100),
        ("default_deny",),
    ),
    # Rule 2: opt-in, held without interruption up to as-of.
    "granted before the message, held": Case(
        lambda e: [*consumer(e), e.consent("a", T(2), True), *msgs(e, 5)],
        "model_training",
        T(100),
        ("opt_in",),
    ),
    "granted at the message's instant": Case(
        lambda e: [*consumer(e), e.consent("a", T(5), True), *msgs(e, 5)],
        "model_training",
        T(100),
        ("opt_in",),
    ),
    "granted only after the message": Case(
        lambda e: [*consumer(e), *msgs(e, 5), e.consent("a", T(6), True)],
        "model_training",
        T(100),
        ("no_consent",),
    ),
    "revoked before as-of removes covered messages": Case(
        lambda e: [
            *consumer(e),
            e.consent("a", T(2), True),
            *msgs(e, 5),
            e.consent("a", T(10), False),
        ],
        "model_training",
        T(100),
        ("consent_revoked",),
    ),
    "revoked after as-of does not exist yet": Case(
        lambda e: [
            *consumer(e),
            e.consent("a", T(2), True),
            *msgs(e, 5),
            e.consent("a", T(10), False),
        ],
        "model_training",
        T(9),
        ("opt_in",),
    ),
    "revoked exactly at as-of counts": Case(
        lambda e: [
            *consumer(e),
            e.consent("a", T(2), True),
            *msgs(e, 5),
            e.consent("a", T(10), False),
        ],
        "model_training",
        T(10),
        ("consent_revoked",),
    ),
    "re-granted covers new messages only": Case(
        lambda e: [
            *consumer(e),
            e.consent("a", T(2), True),
            *msgs(e, 5),
            e.consent("a", T(10), False),
            e.consent("a", T(20), True),
            *msgs(e, 30),
        ],
        "model_training",
        T(100),
        ("consent_revoked", "opt_in"),
    ),
    "message during the revoked gap": Case(
        lambda e: [
            *consumer(e),
            e.consent("a", T(2), True),
            e.consent("a", T(10), False),
            *msgs(e, 15),
            e.consent("a", T(20), True),
        ],
        "model_training",
        T(100),
        ("no_consent",),
    ),
    # Rule 8: at one instant a denial wins.
    "grant and denial at the same instant": Case(
        lambda e: [
            *consumer(e),
            e.consent("a", T(2), True),
            e.consent("a", T(2), False),
            *msgs(e, 5),
        ],
        "model_training",
        T(100),
        ("no_consent",),
    ),
    "denial at the same instant as a later-arriving grant": Case(
        lambda e: [
            *consumer(e),
            e.consent("a", T(2), False),
            e.consent("a", T(2), True),
            *msgs(e, 5),
        ],
        "model_training",
        T(100),
        ("no_consent",),
    ),
    # Rule 3: commercial plans need their organization's consent.
    "commercial with organization consent": Case(
        lambda e: [
            e.account("a", T(0), "team", "org1"),
            e.conversation("c", "a", T(1)),
            e.consent("org1", T(2), True, scope="organization"),
            *msgs(e, 5),
        ],
        "model_training",
        T(100),
        ("organization_opt_in",),
    ),
    "commercial: account consent has no effect": Case(
        lambda e: [
            e.account("a", T(0), "enterprise", "org1"),
            e.conversation("c", "a", T(1)),
            e.consent("a", T(2), True),
            *msgs(e, 5),
        ],
        "model_training",
        T(100),
        ("no_consent",),
    ),
    "consumer: organization consent has no effect": Case(
        lambda e: [*consumer(e), e.consent("org1", T(2), True, scope="organization"), *msgs(e, 5)],
        "model_training",
        T(100),
        ("no_consent",),
    ),
    "commercial: organization revoked later": Case(
        lambda e: [
            e.account("a", T(0), "api", "org1"),
            e.conversation("c", "a", T(1)),
            e.consent("org1", T(2), True, scope="organization"),
            *msgs(e, 5),
            e.consent("org1", T(9), False, scope="organization"),
        ],
        "model_training",
        T(100),
        ("consent_revoked",),
    ),
    "plan change consumer to commercial between messages": Case(
        lambda e: [
            *consumer(e),
            e.consent("a", T(2), True),
            *msgs(e, 5),
            e.account("a", T(10), "team", "org1"),
            *msgs(e, 15),
        ],
        "model_training",
        T(100),
        ("opt_in", "no_consent"),
    ),
    "plan change commercial to consumer between messages": Case(
        lambda e: [
            e.account("a", T(0), "team", "org1"),
            e.conversation("c", "a", T(1)),
            e.consent("org1", T(2), True, scope="organization"),
            *msgs(e, 5),
            e.account("a", T(10), "pro"),
            *msgs(e, 15),
        ],
        "model_training",
        T(100),
        ("organization_opt_in", "no_consent"),
    ),
    "organization as of the message's time": Case(
        lambda e: [
            e.account("a", T(0), "team", "org1"),
            e.conversation("c", "a", T(1)),
            e.consent("org2", T(2), True, scope="organization"),
            *msgs(e, 5),
            e.account("a", T(10), "team", "org2"),
            *msgs(e, 15),
        ],
        "model_training",
        T(100),
        ("no_consent", "organization_opt_in"),
    ),
    # Rule 4: usage-policy flags.
    "flag grants safety purposes for every plan": Case(
        lambda e: [
            e.account("a", T(0), "enterprise", "org1"),
            e.conversation("c", "a", T(1)),
            *msgs(e, 5, 6),
            e.flag("f1", "c", T(7)),
        ],
        "safety_review",
        T(100),
        ("usage_policy_flag", "usage_policy_flag"),
    ),
    "flag grants safety model training": Case(
        lambda e: [*consumer(e), *msgs(e, 5), e.flag("f1", "c", T(7))],
        "safety_model_training",
        T(100),
        ("usage_policy_flag",),
    ),
    "flag grants nothing else": Case(
        lambda e: [*consumer(e), *msgs(e, 5), e.flag("f1", "c", T(7))],
        "model_training",
        T(100),
        ("no_consent",),
    ),
    "flag raised after as-of": Case(
        lambda e: [*consumer(e), *msgs(e, 5), e.flag("f1", "c", T(50))],
        "safety_review",
        T(40),
        ("no_active_flag",),
    ),
    "flag raised then cleared": Case(
        lambda e: [*consumer(e), *msgs(e, 5), e.flag("f1", "c", T(7)), e.clear("f1", T(9))],
        "safety_review",
        T(100),
        ("no_active_flag",),
    ),
    "flag cleared after as-of still active": Case(
        lambda e: [*consumer(e), *msgs(e, 5), e.flag("f1", "c", T(7)), e.clear("f1", T(9))],
        "safety_review",
        T(8),
        ("usage_policy_flag",),
    ),
    "one of two flags cleared": Case(
        lambda e: [
            *consumer(e),
            *msgs(e, 5),
            e.flag("f1", "c", T(7)),
            e.flag("f2", "c", T(8)),
            e.clear("f1", T(9)),
        ],
        "safety_model_training",
        T(100),
        ("usage_policy_flag",),
    ),
    # Rule 6: deletions.
    "conversation deleted": Case(
        lambda e: [
            *consumer(e),
            e.consent("a", T(2), True),
            *msgs(e, 5),
            e.flag("f1", "c", T(6)),
            e.conversation_deleted("c", "a", T(10)),
        ],
        "model_training",
        T(100),
        ("conversation_deleted",),
    ),
    "conversation deleted: flag basis gone too": Case(
        lambda e: [
            *consumer(e),
            *msgs(e, 5),
            e.flag("f1", "c", T(6)),
            e.conversation_deleted("c", "a", T(10)),
        ],
        "safety_review",
        T(100),
        ("conversation_deleted",),
    ),
    "conversation deleted after as-of": Case(
        lambda e: [
            *consumer(e),
            e.consent("a", T(2), True),
            *msgs(e, 5),
            e.conversation_deleted("c", "a", T(10)),
        ],
        "model_training",
        T(9),
        ("opt_in",),
    ),
    "account deleted": Case(
        lambda e: [
            *consumer(e),
            e.consent("a", T(2), True),
            *msgs(e, 5),
            e.account_deleted("a", T(10)),
        ],
        "model_training",
        T(100),
        ("account_deleted",),
    ),
    # Rule 7: unknown account, and time.
    "unknown account": Case(
        lambda e: [e.conversation("c", "a", T(1)), e.consent("a", T(2), True), *msgs(e, 5)],
        "model_training",
        T(100),
        ("unknown_account",),
    ),
    "account known only after the message": Case(
        lambda e: [
            e.conversation("c", "a", T(1)),
            e.consent("a", T(2), True),
            *msgs(e, 5),
            e.account("a", T(6)),
        ],
        "model_training",
        T(100),
        ("unknown_account",),
    ),
    "unknown account: no flag basis either": Case(
        lambda e: [e.conversation("c", "a", T(1)), *msgs(e, 5), e.flag("f1", "c", T(6))],
        "safety_review",
        T(100),
        ("unknown_account",),
    ),
    "messages after as-of do not exist": Case(
        lambda e: [*consumer(e), e.consent("a", T(2), True), *msgs(e, 5, 50)],
        "model_training",
        T(40),
        ("opt_in",),
    ),
    # Decisions follow `at`, not arrival order.
    "events arriving out of order": Case(
        lambda e: [
            *msgs(e, 5),
            e.consent("a", T(10), False),
            e.consent("a", T(2), True),
            e.account("a", T(0)),
        ],
        "model_training",
        T(100),
        ("consent_revoked",),
    ),
    "out of order: account and grant arrive late": Case(
        lambda e: [*msgs(e, 5, 6), e.consent("a", T(2), True), e.account("a", T(0), "max")],
        "model_training",
        T(100),
        ("opt_in", "opt_in"),
    ),
}


def on(e: Events, plan: str, mode: str | None = None) -> list[dict[str, object]]:
    """Account ``a`` on ``plan`` (organization org1 for a commercial one) and conversation ``c``
    of ``mode``."""
    commercial = plan in ("team", "enterprise", "api", "business", "edu")
    fields = {} if mode is None else {"mode": mode}
    return [
        e.account("a", T(0), plan, "org1" if commercial else None),
        e.conversation("c", "a", T(1), **fields),
    ]


POLICY_CASES: dict[str, tuple[str, Case]] = {
    "consumer-2024: an incognito chat is decided as any other": (
        "consumer-2024",
        Case(
            lambda e: [
                e.account("a", T(0)),
                e.conversation("c", "a", T(1), incognito=True),
                e.consent("a", T(2), True),
                *msgs(e, 5),
            ],
            "model_training",
            T(100),
            ("opt_in",),
        ),
    ),
    "consumer-2025: a chat resumed after a grant is covered whole": (
        "consumer-2025",
        Case(
            lambda e: [*on(e, "max"), *msgs(e, 5), e.consent("a", T(10), True), *msgs(e, 15)],
            "model_training",
            T(20),
            ("opt_in", "opt_in"),
        ),
    ),
    "consumer-2025: incognito is never used": (
        "consumer-2025",
        Case(
            lambda e: [*on(e, "pro", "incognito"), e.consent("a", T(2), True), *msgs(e, 5)],
            "model_training",
            T(20),
            ("mode_excluded",),
        ),
    ),
    "consumer-2025: content not covered expires after 30 days": (
        "consumer-2025",
        Case(
            lambda e: [*on(e, "free"), *msgs(e, 5, 40)],
            "model_training",
            T(45),
            ("content_expired", "no_consent"),
        ),
    ),
    "chatgpt-2025: on unless turned off, forward only": (
        "chatgpt-2025",
        Case(
            lambda e: [*on(e, "plus"), *msgs(e, 5), e.consent("a", T(10), False), *msgs(e, 15)],
            "model_training",
            T(20),
            ("improve_model_setting", "no_consent"),
        ),
    ),
    "chatgpt-2025: temporary chats are never used, and expire": (
        "chatgpt-2025",
        Case(
            lambda e: [*on(e, "go", "temporary"), *msgs(e, 5, 40)],
            "model_training",
            T(45),
            ("content_expired", "mode_excluded"),
        ),
    ),
    "chatgpt-2025: business only by its organization": (
        "chatgpt-2025",
        Case(
            lambda e: [
                *on(e, "business"),
                *msgs(e, 5),
                e.consent("org1", T(10), True, scope="organization"),
                *msgs(e, 15),
            ],
            "model_training",
            T(20),
            ("no_consent", "organization_opt_in"),
        ),
    ),
    "lechat-2025: on by default, the opt-out is retroactive": (
        "lechat-2025",
        Case(
            lambda e: [*on(e, "student"), *msgs(e, 5), e.consent("a", T(10), False)],
            "model_training",
            T(20),
            ("consent_revoked",),
        ),
    ),
    "lechat-2025: business plans never": (
        "lechat-2025",
        Case(
            lambda e: [
                *on(e, "team"),
                e.consent("org1", T(2), True, scope="organization"),
                *msgs(e, 5),
            ],
            "model_training",
            T(20),
            ("default_deny",),
        ),
    ),
}


# Every case by name, with the policy it runs under (None: the default one).
TABLE: dict[str, tuple[str | None, Case]] = {
    **{name: (None, case) for name, case in CASES.items()},
    **POLICY_CASES,
}
assert len(TABLE) == len(CASES) + len(POLICY_CASES)

# The cases that go the whole way on each backend: one per shipped policy, and the times that
# arrive out of order or tie at one instant.
THROUGH_EACH_STORE = (
    "events arriving out of order",
    "denial at the same instant as a later-arriving grant",
    "consumer-2025: incognito is never used",
    "chatgpt-2025: business only by its organization",
    "lechat-2025: on by default, the opt-out is retroactive",
)


def _policy(name: str) -> Policy:
    policy_id, _ = TABLE[name]
    return default_policy() if policy_id is None else bundled_policy(policy_id)


def _ingest(tg: Traingate, case: Case) -> None:
    summary = tg.events.ingest(jsonl(case.history(Events())))
    assert summary.rejected == 0, summary.errors


@functools.cache
def facts(name: str) -> ConversationFacts:
    """Conversation ``c`` of case ``name`` as the store gives it: the case's events ingested
    into a SQLite store of its own (under the case's policy), then ``conversation_facts``.
    Once per case and process: the in-memory and the compiled-SQL tests share them."""
    policy_id, case = TABLE[name]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(
            db_url=f"sqlite:///{root / 'traingate.sqlite'}",
            key_file=root / "keys.json",
            policy=policy_id,
        )
        with Traingate.open(settings) as tg:
            _ingest(tg, case)
            return tg.store.conversation_facts("c")


def _in_memory(name: str) -> None:
    """The scalar evaluator over the case's facts decides as the table says, every decision
    naming its rules, each with a text, and a basis exactly when eligible."""
    _, case = TABLE[name]
    policy = _policy(name)
    explained = explain_conversation(
        policy=policy, facts=facts(name), purpose=case.purpose, as_of=parse_instant(case.as_of)
    )
    got = tuple(d.basis if d.eligible else d.reasons[0] for _, d in explained)
    assert got == case.expected
    for _, decision in explained:
        assert decision.rule_ids, "every decision names its rules"
        assert all(policy.rule_text(rule_id)[1] for rule_id in decision.rule_ids)
        assert (decision.basis is not None) == decision.eligible


@pytest.mark.parametrize("name", list(CASES))
def test_decision_table(name: str) -> None:
    _in_memory(name)


@pytest.mark.parametrize("name", list(POLICY_CASES))
def test_decision_table_under_each_shipped_policy(name: str) -> None:
    _in_memory(name)


@pytest.mark.parametrize("name", list(TABLE))
def test_decision_table_in_compiled_sql(name: str) -> None:
    """The same tables through the bulk evaluator: the policy compiled to SQL, run on an
    in-memory DuckDB over the case's facts as Arrow ledgers, decides each message as the table
    says, and as the scalar evaluator does."""
    _, case = TABLE[name]
    policy, as_of = _policy(name), parse_instant(case.as_of)
    decided = decide_in_duckdb(policy=policy, facts=facts(name), purpose=case.purpose, as_of=as_of)
    explained = explain_conversation(
        policy=policy, facts=facts(name), purpose=case.purpose, as_of=as_of
    )
    assert tuple(basis or reason for basis, reason in decided.values()) == case.expected
    for message, decision in explained:
        basis, reason = decided[message.message_id]
        expected = (decision.basis, None if decision.eligible else decision.reasons[0])
        assert (basis, None if basis else reason) == expected, message.message_id


@pytest.mark.parametrize("name", THROUGH_EACH_STORE)
def test_decision_table_through_each_store(db_url: str, tmp_path: Path, name: str) -> None:
    """Ingest into each backend, then ``tg.privacy.explain``: the decisions of the table, every
    message naming its rules with their texts, and the facts the tables above decide."""
    policy_id, case = TABLE[name]
    settings = Settings(db_url=db_url, key_file=tmp_path / "keys.json", policy=policy_id)
    with Traingate.open(settings) as tg:
        _ingest(tg, case)
        result = tg.privacy.explain(
            conversation_id="c", purpose=case.purpose, as_of=parse_instant(case.as_of)
        )
        assert tg.store.conversation_facts("c") == facts(name)
    got = tuple(
        m.decision.basis if m.decision.eligible else m.decision.reasons[0] for m in result.messages
    )
    assert got == case.expected
    for message in result.to_dict()["messages"]:
        assert message["rules"], "every decision names its rules"
        assert all(rule["text"] for rule in message["rules"])
        assert (message["basis"] is not None) == message["eligible"]
