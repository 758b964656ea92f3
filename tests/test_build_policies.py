"""The bulk evaluator derives from the decision plan of every policy: for random histories, each
shipped policy (and a test policy of the mechanisms no shipped one combines), policy sets in
force over time, and random as-of times around every retention boundary, the DuckDB engine
decides every message exactly as the scalar evaluator (basis, or first reason, and the policy
that decided), makes the same records, and every feedback report is decided as
``decide_report`` decides it from the conversation's mode and the report's comment.

Histories move accounts between consumer and commercial plans and organizations, grant and
deny consent per scope and setting (ties at one instant included), raise and clear flags,
open conversations in every mode, delete conversations and accounts, and give feedback with
and without a comment. SQLite only, few examples per policy: ``test_build_property`` carries
the long run of the first policy on both backends.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.budgets import budget
from tests.factories import Events, jsonl
from tests.stores import Stores
from tests.support import run_engine
from traingate._core.policy import MODES, PolicySet, decide_report, load_policy_set, policy_at
from traingate._core.policy.compile import _deadline
from traingate._core.timeutil import MAX_INSTANT, Duration, parse_instant
from traingate._datasets.engines.base import Tally
from traingate._datasets.engines.duckdb import DuckDBEngine
from traingate._datasets.engines.scalar import ScalarEngine
from traingate._facade import Traingate
from traingate._settings import Settings

MECHANISMS = Path(__file__).parent / "policies" / "mechanisms.toml"
DAY5 = Events.t(5)
SPECS = {
    "consumer-2024": "consumer-2024",
    "consumer-2025": "consumer-2025",
    "chatgpt-2025": "chatgpt-2025",
    "lechat-2025": "lechat-2025",
    "consumer-2024+2025": f"consumer-2024,consumer-2025@{DAY5}",
    "chatgpt+lechat": f"chatgpt-2025@2024-01-01T00:00:00Z,lechat-2025@{DAY5}",
    "mechanisms": f"consumer-2025@2024-01-01T00:00:00Z,{MECHANISMS}@{DAY5}",
}
ACCOUNTS = ("a1", "a2", "a3")
ORGS = ("o1", "o2")
OWNERS = {"c1": "a1", "c2": "a1", "c3": "a2", "c4": "a3"}
CONVERSATIONS = tuple(OWNERS)
KEEPS = ("P1D", "P2D", "P20D", "P30D", "P1M", "P1Y", "P2Y", "P5Y", "P10Y")

# Few distinct instants, so that ties (same instant, different arrival) are common.
instants = st.tuples(st.integers(0, 12), st.sampled_from([0, 0, 1, 3600]))
comments = st.sampled_from([None, "", "  ", "ok", "write to a@b.cc"])


def _t(instant: tuple[int, int]) -> str:
    return Events.t(instant[0], instant[1])


def ops(policies: PolicySet) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """Steps of a history under ``policies`` (their plans and settings)."""
    plans = sorted(policies.plans)
    setting = st.sampled_from(sorted(policies.settings))
    account = st.tuples(
        st.just("account"), st.sampled_from(ACCOUNTS), st.sampled_from(plans),
        st.sampled_from(ORGS), instants,
    )  # fmt: skip
    consent = st.tuples(
        st.just("consent"), st.sampled_from(["account", "organization"]), st.integers(0, 2),
        setting, st.booleans(), instants,
    )  # fmt: skip
    message = st.tuples(st.just("message"), st.sampled_from(CONVERSATIONS), instants)
    opening = st.tuples(
        st.just("open"), st.sampled_from(CONVERSATIONS), st.sampled_from(MODES), instants
    )
    tie = st.tuples(consent, st.booleans()).map(lambda t: ("tie", t[0], (*t[0][:4], t[1], t[0][5])))
    step = st.one_of(
        account, consent, tie, message, message, message,
        st.tuples(st.just("flag"), st.sampled_from(CONVERSATIONS), instants),
        st.tuples(st.just("clear"), st.integers(0, 3), instants),
        st.tuples(st.just("feedback"), st.sampled_from(CONVERSATIONS), st.integers(0, 5),
                  comments, instants),
        st.tuples(st.just("delete_conversation"), st.sampled_from(CONVERSATIONS), instants),
        st.tuples(st.just("delete_account"), st.sampled_from(ACCOUNTS), instants),
    )  # fmt: skip
    early = st.tuples(st.integers(0, 1), st.sampled_from([0, 1]))
    mostly = st.sampled_from([True, True, True, False])
    prologue = st.tuples(
        *(
            st.tuples(st.just("account"), st.just(a), st.sampled_from(plans),
                      st.sampled_from(ORGS), early)
            for a in ACCOUNTS
        ),
        *(
            st.tuples(st.just("consent"), st.just(scope), st.just(index), setting, mostly, early)
            for scope, index in (("account", 0), ("account", 1), ("account", 2),
                                 ("organization", 0), ("organization", 1))
        ),
    ).map(list)  # fmt: skip
    later = st.tuples(st.integers(4, 10), st.sampled_from([0, 1]))
    revoke = st.tuples(
        st.just("consent"), st.sampled_from(["account", "organization"]), st.integers(0, 2),
        setting, st.just(False), later,
    )  # fmt: skip
    feedback = st.tuples(
        st.just("feedback"), st.sampled_from(CONVERSATIONS), st.integers(0, 5), comments, later
    )
    flag = st.tuples(st.just("flag"), st.sampled_from(CONVERSATIONS), instants)
    return st.tuples(
        prologue,
        st.lists(opening, max_size=4),
        st.lists(message, min_size=2, max_size=8),
        st.lists(st.one_of(flag, revoke, feedback, tie), max_size=5),
        st.lists(step, max_size=18),
    ).map(lambda parts: [s for part in parts for s in part])


def history(policies: PolicySet, steps: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Events from generated steps; some are refused by ingest, as in life."""
    e = Events()
    events: list[dict[str, Any]] = []
    messages: dict[str, list[tuple[str, tuple[int, int]]]] = {c: [] for c in CONVERSATIONS}
    flags: list[str] = []
    flat = [part for s in steps for part in (s[1:] if s[0] == "tie" else (s,))]
    for n, s in enumerate(flat):
        kind = s[0]
        if kind == "account":
            _, account, plan, org, at = s
            commercial = policies.plans[plan] == "commercial"
            events.append(e.account(account, _t(at), plan, org if commercial else None))
        elif kind == "consent":
            _, scope, index, setting, granted, at = s
            subject = ACCOUNTS[index] if scope == "account" else ORGS[index % len(ORGS)]
            events.append(e.consent(subject, _t(at), granted, scope=scope, setting=setting))
        elif kind == "open":
            _, conv, mode, at = s
            events.append(e.conversation(conv, OWNERS[conv], _t(at), mode=mode))
        elif kind == "message":
            _, conv, at = s
            messages[conv].append((f"m{n}", at))
            events.append(e.message(f"m{n}", conv, OWNERS[conv], _t(at), content=f"text {n}"))
        elif kind == "feedback":
            _, conv, index, comment, at = s
            if messages[conv]:
                mid, message_at = messages[conv][index % len(messages[conv])]
                events.append(
                    e.feedback(f"f{n}", OWNERS[conv], conv, mid, _t(max(at, message_at)),
                               comment=comment)
                )  # fmt: skip
        elif kind == "flag":
            _, conv, at = s
            flags.append(f"fl{n}")
            events.append(e.flag(flags[-1], conv, _t(at)))
        elif kind == "clear":
            _, index, at = s
            if flags:
                events.append(e.clear(flags[index % len(flags)], _t(at)))
        elif kind == "delete_conversation":
            _, conv, at = s
            events.append(e.conversation_deleted(conv, OWNERS[conv], _t(at)))
        elif kind == "delete_account":
            _, account, at = s
            events.append(e.account_deleted(account, _t(at)))
    return events


# As-of times near the history, and at (or a second around) each retention boundary of a
# history instant: keeps of the policies and of the test policy.
as_ofs = st.one_of(
    instants.map(lambda i: parse_instant(_t((i[0] + 2, i[1])))),
    st.tuples(instants, st.sampled_from(KEEPS), st.sampled_from([-1_000_000, 0, 0, 0])).map(
        lambda t: Duration.parse(t[1]).add_to(parse_instant(_t(t[0]))) + t[2]
    ),
)
OTHER_PURPOSES = ("safety_review", "safety_model_training", "research", "behavior_research")


def _reports(tg: Traingate, events: list[dict[str, Any]], errors: set[str], *, purpose: str,
             as_of: int) -> Tally:  # fmt: skip
    """Every accepted report existing and not expired at as-of, decided by the scalar
    evaluator from its conversation's mode (as stored) and its comment as sent; none when no
    policy in force has a feedback basis granting the purpose (builds then consider no
    report)."""
    tally: Counter[tuple[str | None, str | None]] = Counter()
    if not any(
        (basis := p.feedback_basis) is not None and purpose in basis.purposes
        for p in tg.policies.policies
    ):
        return Tally()
    for ev in events:
        if ev["type"] != "feedback.submitted" or ev["event_id"] in errors:
            continue
        at = parse_instant(ev["at"])
        expiry = policy_at(tg.policies, at).feedback_expiry(at)
        if at > as_of or (expiry is not None and expiry <= as_of):
            continue  # the vault holds it for no build as of then
        ((mode,),) = tg.store.db.execute(
            "SELECT mode FROM conversations WHERE conversation_id = ?", (ev["conversation_id"],)
        )
        decision = decide_report(
            policy=tg.policies, submitted_at=at, purpose=purpose, as_of=as_of, mode=mode,
            comment=ev["comment"],
        )  # fmt: skip
        tally[(decision.basis, None if decision.eligible else decision.primary_reason)] += 1
    return Tally(counts=dict(tally))


def _check(tg: Traingate, events: list[dict[str, Any]], errors: set[str], *, purpose: str,
           as_of: int, batch_messages: int) -> None:  # fmt: skip
    bulk = run_engine(
        tg, purpose=purpose, as_of=as_of, engine=DuckDBEngine(batch_messages=batch_messages)
    )
    scalar = run_engine(tg, purpose=purpose, as_of=as_of, engine=ScalarEngine())
    assert bulk.decisions == scalar.decisions, purpose
    assert bulk.records == scalar.records, purpose
    assert bulk.messages == scalar.messages, purpose
    assert bulk.reports == scalar.reports, purpose
    assert bulk.reports == _reports(tg, events, errors, purpose=purpose, as_of=as_of), purpose
    for reason in bulk.messages.excluded_by_reason():
        event(f"{purpose} excluded: {reason}")
    for basis in bulk.messages.included_by_basis():
        event(f"{purpose} included: {basis}")
    for reason in bulk.reports.excluded_by_reason():
        event(f"report excluded: {reason}")


@pytest.mark.parametrize("name", list(SPECS))
@settings(
    max_examples=budget(quick=8, thorough=25),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    data=st.data(),
    as_of=as_ofs,
    other=st.sampled_from(OTHER_PURPOSES),
    batch_messages=st.integers(1, 8),
)
def test_bulk_equals_scalar_for_every_policy(
    stores: Stores, name: str, data: st.DataObject, as_of: int, other: str, batch_messages: int
) -> None:
    spec = SPECS[name]
    policies = _policies(spec)
    events = history(policies, data.draw(ops(policies), label="steps"))
    tg = stores.empty(spec)
    summary = tg.events.ingest(jsonl(events))
    errors = {str(error.event_id) for error in summary.errors}
    for purpose in ("model_training", other):
        _check(tg, events, errors, purpose=purpose, as_of=as_of, batch_messages=batch_messages)


@functools.cache
def _policies(spec: str) -> PolicySet:
    return load_policy_set(spec)


@settings(max_examples=300, deadline=None)
@given(
    at=st.integers(0, MAX_INSTANT - 1),
    keep=st.tuples(st.integers(0, 30), st.integers(0, 40), st.integers(0, 400)).filter(any),
)
def test_deadline_in_sql_is_duration_add_to(at: int, keep: tuple[int, int, int]) -> None:
    """``time + keep`` in DuckDB's interval arithmetic is ``Duration.add_to`` (months first,
    the day clamped to the month's last, then days): 29 February + 1 year = 28 February."""
    duration = Duration(years=keep[0], months=keep[1], days=keep[2])
    sql = _deadline(duration, str(at))
    ((got,),) = duckdb.sql(f"SELECT {sql}").fetchall()
    assert got == duration.add_to(at)


@pytest.mark.parametrize(
    ("at", "keep", "expected"),
    [
        ("2024-02-29T10:00:00Z", "P1Y", "2025-02-28T10:00:00Z"),
        ("2024-01-31T10:00:00Z", "P1M", "2024-02-29T10:00:00Z"),
        ("2023-01-31T10:00:00Z", "P1M", "2023-02-28T10:00:00Z"),
        ("2023-01-30T10:00:00Z", "P1M1D", "2023-03-01T10:00:00Z"),
        ("2024-12-31T23:59:59.5Z", "P30D", "2025-01-30T23:59:59.5Z"),
    ],
)
def test_deadline_examples(at: str, keep: str, expected: str) -> None:
    sql = _deadline(Duration.parse(keep), str(parse_instant(at)))
    ((got,),) = duckdb.sql(f"SELECT {sql}").fetchall()
    assert got == parse_instant(expected) == Duration.parse(keep).add_to(parse_instant(at))


def test_manifest_counts_the_new_reasons(tmp_path: Path) -> None:
    """A build's manifest counts ``content_expired`` and ``mode_excluded`` messages and
    ``mode_excluded`` and ``feedback_without_comment`` reports like any other reason: an
    incognito chat of consumer-2025 is covered by no basis and kept 30 days; a report without a
    comment serves no purpose under lechat-2025 (in force from day 30)."""
    e = Events()
    events = [
        e.account("a", Events.t(0)),
        e.consent("a", Events.t(0), True),
        e.conversation("c", "a", Events.t(1)),
        e.conversation("old", "a", Events.t(1), mode="incognito"),
        e.conversation("new", "a", Events.t(25), mode="incognito"),
        e.message("c1", "c", "a", Events.t(1)),
        e.message("old1", "old", "a", Events.t(1)),
        e.message("new1", "new", "a", Events.t(25)),
        e.feedback("f-new", "a", "new", "new1", Events.t(26), comment="fine"),
        e.message("c2", "c", "a", Events.t(31)),
        e.feedback("f-blank", "a", "c", "c2", Events.t(32), comment="  "),
        e.feedback("f-said", "a", "c", "c2", Events.t(33), comment="said"),
    ]
    spec = f"consumer-2025@2024-01-01T00:00:00Z,lechat-2025@{Events.t(30)}"
    config = Settings(
        db_url=f"sqlite:///{tmp_path / 'db.sqlite'}", key_file=tmp_path / "k.json", policy=spec
    )
    with Traingate.open(config) as tg:
        assert tg.events.ingest(jsonl(events)).rejected == 0
        result = tg.datasets.build(
            purpose="model_training", out=tmp_path / "out", as_of=parse_instant(Events.t(40))
        )
    exclusions = result.manifest["exclusions"]
    assert exclusions["messages"]["by_reason"] == {"content_expired": 1, "mode_excluded": 1}
    assert exclusions["messages"]["included"] == 2  # c1 under opt_in, c2 under training_setting
    assert exclusions["reports"]["by_reason"] == {
        "feedback_without_comment": 1,
        "mode_excluded": 1,
    }
    assert exclusions["reports"]["included"] == 1
