"""Random event histories for the property tests (Hypothesis strategies), shared by
test_build_property.py (the bulk engine equals the scalar one), test_build_incremental.py
(incremental builds are full builds) and test_privacy_property.py (the privacy answer is what a
build holds).

``histories`` draws the steps of a history (plan changes, consent granted, revoked and granted
again at tied instants, messages, settings, flags and clears, feedback, deletions) among
``ACCOUNTS``, ``ORGS`` and ``CONVERSATIONS`` (owned as ``OWNERS`` says); ``history`` turns the
steps into events (some refused by ingest, as in life); ``as_ofs`` draws an as-of around them,
``instants`` an instant, ``ops`` a step. ``VERSIONS``: consumer-2024, then consumer-2025 from
day 5 of the histories.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.factories import Events
from traingate._core.policy import default_policy
from traingate._core.timeutil import add_calendar_years, parse_instant

POLICY = default_policy()
# consumer-2025 in force from day 5 of the histories (2024-01-06T12:00:00Z).
VERSIONS = f"consumer-2024,consumer-2025@{Events.t(5)}"
ACCOUNTS = ("a1", "a2", "a3")
ORGS = ("o1", "o2")
OWNERS = {"c1": "a1", "c2": "a1", "c3": "a2", "c4": "a3"}
CONVERSATIONS = tuple(OWNERS)

# Few distinct instants, so that ties (same instant, different arrival) are common.
instants = st.tuples(st.integers(0, 10), st.sampled_from([0, 0, 0, 1, 3600]))
fragments = st.sampled_from(
    ["hi", " ", "bob@example.com", "a@b.cc@d.ee", "x.y@z", "@", ".", "é@x.io", "q@w.e.rt",
     "A_b%c+d-e@f-g.h.IJ", "mail:me@host.org.", "\n", "ünï"]
)  # fmt: skip
texts = st.one_of(
    st.lists(fragments, max_size=5).map("".join),
    st.text(alphabet="ab.@-_%+ Zé1", max_size=16),
)
json_values = st.one_of(texts, st.integers(-5, 5), st.booleans(), st.lists(texts, max_size=2))
objects = st.dictionaries(texts, json_values, max_size=2)
attachments = st.lists(
    st.fixed_dictionaries(
        {
            "source": st.sampled_from(["upload", "gdrive", "mcp:a@b.com", "github"]),
            "name": st.none() | texts,
            "content": st.none() | texts,
        }
    ),
    max_size=2,
)

account_op = st.tuples(
    st.just("account"),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(list(POLICY.plans)),
    st.sampled_from(ORGS),
    instants,
)
consent_op = st.tuples(
    st.just("consent"),
    st.sampled_from(["account", "organization"]),
    st.integers(0, 2),
    st.booleans(),
    instants,
)
message_op = st.tuples(
    st.just("message"),
    st.sampled_from(CONVERSATIONS),
    texts,
    st.one_of(st.just([]), attachments),
    st.sampled_from(["user", "assistant"]),
    instants,
)
revoke_op = st.tuples(
    st.just("consent"),
    st.sampled_from(["account", "organization"]),
    st.integers(0, 2),
    st.just(False),
    instants.map(lambda i: (i[0] // 2 + 4, i[1])),
)
flag_op = st.tuples(st.just("flag"), st.sampled_from(CONVERSATIONS), instants)
settings_op = st.tuples(
    st.just("settings"),
    st.sampled_from(CONVERSATIONS),
    st.fixed_dictionaries(
        {},
        optional={
            "custom_style": st.none() | objects,
            "preferences": st.none() | objects,
            "title": texts,
        },
    ),
    instants,
)
# Two changes of one account's plan, or of one subject's consent, at the same instant.
tie_op = st.one_of(
    st.tuples(account_op, account_op).map(
        lambda t: ("tie", t[0], ("account", t[0][1], t[1][2], t[1][3], t[0][4]))
    ),
    st.tuples(consent_op, st.booleans()).map(lambda t: ("tie", t[0], (*t[0][:3], t[1], t[0][4]))),
)
ops = st.one_of(
    tie_op,
    account_op, consent_op, consent_op, message_op, message_op, message_op, flag_op, flag_op,
    settings_op,
    st.tuples(st.just("feedback"), st.sampled_from(CONVERSATIONS), st.integers(0, 5),
              st.sampled_from(["up", "down"]), st.none() | texts, st.lists(texts, max_size=2),
              instants),
    st.tuples(st.just("clear"), st.integers(0, 3), instants),
    st.tuples(st.just("delete_conversation"), st.sampled_from(CONVERSATIONS), instants),
    st.tuples(st.just("delete_account"), st.sampled_from(ACCOUNTS), instants),
)  # fmt: skip


def _t(instant: tuple[int, int]) -> str:
    return Events.t(instant[0], instant[1])


def history(steps: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Events from generated steps; some are refused by ingest, as in life."""
    e = Events()
    events: list[dict[str, Any]] = []
    messages: dict[str, list[tuple[str, tuple[int, int]]]] = {c: [] for c in CONVERSATIONS}
    flags: list[str] = []
    flat = [part for step in steps for part in (step[1:] if step[0] == "tie" else (step,))]
    for step in flat:
        kind = step[0]
        if kind == "account":
            _, account, plan, org, at = step
            commercial = POLICY.plan_class(plan) == "commercial"
            events.append(e.account(account, _t(at), plan, org if commercial else None))
        elif kind == "consent":
            _, scope, index, granted, at = step
            subject = ACCOUNTS[index] if scope == "account" else ORGS[index % len(ORGS)]
            events.append(e.consent(subject, _t(at), granted, scope=scope))
        elif kind == "settings":
            _, conv, fields, at = step
            events.append(e.conversation(conv, OWNERS[conv], _t(at), **fields))
        elif kind == "message":
            _, conv, content, files, role, at = step
            mid = f"m{len(events)}"
            messages[conv].append((mid, at))
            events.append(
                e.message(
                    mid, conv, OWNERS[conv], _t(at), role=role, content=content,
                    attachments=[{"attachment_id": f"x{i}", **f} for i, f in enumerate(files)],
                )
            )  # fmt: skip
        elif kind == "feedback":
            _, conv, index, rating, comment, categories, at = step
            if not messages[conv]:
                continue
            mid, message_at = messages[conv][index % len(messages[conv])]
            events.append(
                e.feedback(
                    f"f{len(events)}", OWNERS[conv], conv, mid, _t(max(at, message_at)),
                    rating=rating, comment=comment, categories=categories,
                )
            )  # fmt: skip
        elif kind == "flag":
            _, conv, at = step
            flags.append(f"fl{len(events)}")
            events.append(e.flag(flags[-1], conv, _t(at)))
        elif kind == "clear":
            _, index, at = step
            if flags:
                events.append(e.clear(flags[index % len(flags)], _t(at)))
        elif kind == "delete_conversation":
            _, conv, at = step
            events.append(e.conversation_deleted(conv, OWNERS[conv], _t(at)))
        elif kind == "delete_account":
            _, account, at = step
            events.append(e.account_deleted(account, _t(at)))
    return events


mostly_true = st.sampled_from([True, True, True, False])
early = st.tuples(st.integers(0, 2), st.sampled_from([0, 1]))
prologue = st.tuples(
    *(
        st.tuples(st.just("account"), st.just(account), st.sampled_from(list(POLICY.plans)),
                  st.sampled_from(ORGS), early)
        for account in ACCOUNTS
    ),
    *(
        st.tuples(st.just("consent"), st.just(scope), st.just(index), mostly_true, early)
        for scope, index in (("account", 0), ("account", 1), ("account", 2),
                             ("organization", 0), ("organization", 1))
    ),
)  # fmt: skip
messages_first = st.lists(st.one_of(message_op, message_op, settings_op), min_size=1, max_size=10)
# Some conversations start with a conversation.updated that marks them incognito (or not).
openings = st.lists(
    st.tuples(
        st.just("settings"),
        st.sampled_from(CONVERSATIONS),
        st.fixed_dictionaries({"incognito": mostly_true}),
        early,
    ),
    max_size=4,
)
histories = st.tuples(
    prologue.map(list),
    openings,
    messages_first,
    st.lists(st.one_of(flag_op, revoke_op, revoke_op, tie_op), max_size=4),
    st.lists(ops, max_size=24),
).map(lambda parts: [step for part in parts for step in part])
as_ofs = st.one_of(
    instants.map(lambda i: parse_instant(_t((i[0] + 3, i[1])))),
    # Around the P5Y expiry of reports submitted after the switch (P10Y before it).
    instants.map(lambda i: add_calendar_years(parse_instant(_t((i[0] + 3, i[1]))), 5)),
)
