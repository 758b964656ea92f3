"""The privacy answer is what the builds hold: for random event histories (those of
tests/test_build_property.py), every shipped policy (and consumer-2024 then consumer-2025) and a
random as-of, each account's ``purposes[P].conversations`` are exactly the conversations it first
named that have a message the bulk engine (DuckDB SQL compiled from the policy) decides eligible
for P as of then, and ``bases`` exactly the bases of those messages."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.budgets import budget
from tests.factories import jsonl
from tests.histories import ACCOUNTS, CONVERSATIONS, VERSIONS, as_ofs, histories, history
from tests.stores import Stores
from tests.support import run_engine
from traingate._datasets.engines.duckdb import DuckDBEngine
from traingate._facade import Traingate
from traingate._privacy import account_privacy

SPECS = pytest.mark.parametrize(
    "spec",
    [None, VERSIONS, "consumer-2025", "chatgpt-2025", "lechat-2025"],
    ids=["consumer-2024", "versions", "consumer-2025", "chatgpt-2025", "lechat-2025"],
)


def check_answer(tg: Traingate, *, as_of: int, batch_messages: int) -> None:
    owners = tg.store.conversation_owners(CONVERSATIONS)
    answers = {
        account: account_privacy(
            store=tg.store, policy=tg.policies, keys=tg.keys, account_id=account, as_of=as_of
        )
        for account in ACCOUNTS
    }
    for purpose in tg.policies.purposes:
        built = run_engine(
            tg, purpose=purpose, as_of=as_of, engine=DuckDBEngine(batch_messages=batch_messages)
        )
        held: dict[str, tuple[set[str], set[str]]] = {a: (set(), set()) for a in ACCOUNTS}
        for conversation_id, _seq, basis, _reason, _policy in built.decisions:
            if basis is not None:
                conversations, bases = held[owners[conversation_id]]
                conversations.add(conversation_id)
                bases.add(basis)
        for account, answer in answers.items():
            got = answer.purposes[purpose]
            conversations, bases = held[account]
            assert got.conversations == tuple(sorted(conversations)), (purpose, account)
            assert got.bases == tuple(sorted(bases)), (purpose, account)
            assert got.used == bool(conversations)
            if got.used:
                event(f"{purpose}: used under {list(got.bases)}")


@SPECS
@settings(
    max_examples=budget(quick=3, thorough=8),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=histories, as_of=as_ofs, batch_messages=st.integers(1, 8))
def test_the_answer_is_what_a_build_holds(
    stores: Stores, spec: str | None, steps: list[tuple[Any, ...]], as_of: int, batch_messages: int
) -> None:
    tg = stores.empty(spec)
    tg.events.ingest(jsonl(history(steps)))
    check_answer(tg, as_of=as_of, batch_messages=batch_messages)
