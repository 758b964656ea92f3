"""The two evaluators of one policy are equal: for random event histories, every purpose and a
random as-of, the bulk engine (DuckDB SQL compiled from the policy) produces exactly the records
derived from the scalar evaluator (``decide_message`` via ``explain_conversation``), message for
message: the same decision (basis, or first reason, and the policy that decided) for every
message, the same records, ids and bytes of content, in the same order.

Each runs under the default policy and under two policy versions (consumer-2024, then
consumer-2025 from day 5 of the histories): conversations may be marked incognito (the
``"incognito": true`` form of the mode), and as-of times reach past the P5Y retention of
reports and content after the switch, so mode exclusions, coverage by conversation and
content expiry are exercised on both sides of the effective date. ``test_build_policies``
holds every shipped policy to the same equality.

SQLite carries the many examples; PostgreSQL runs a few, so both exports are held to it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.budgets import budget
from tests.factories import jsonl
from tests.histories import POLICY, VERSIONS, as_ofs, histories, history
from tests.stores import Stores
from tests.support import pg_schema, run_engine
from traingate._datasets.engines.duckdb import DuckDBEngine
from traingate._datasets.engines.scalar import ScalarEngine
from traingate._facade import Traingate
from traingate._settings import Settings

SPECS = pytest.mark.parametrize("spec", [None, VERSIONS], ids=["consumer-2024", "versions"])
PURPOSES = tuple(POLICY.purposes)


def check_equal(tg: Traingate, *, as_of: int, batch_messages: int) -> None:
    for purpose in PURPOSES:
        bulk = run_engine(
            tg, purpose=purpose, as_of=as_of, engine=DuckDBEngine(batch_messages=batch_messages)
        )
        scalar = run_engine(tg, purpose=purpose, as_of=as_of, engine=ScalarEngine())
        assert bulk.decisions == scalar.decisions, purpose
        assert bulk.records == scalar.records, purpose
        assert bulk.messages == scalar.messages, purpose
        assert bulk.reports == scalar.reports, purpose
        kinds = sorted({r["basis"] for r in bulk.records})
        event(f"{purpose}: records under {kinds or 'no basis'}")
        for reason in bulk.messages.excluded_by_reason():
            event(f"excluded: {reason}")
        for reason in bulk.reports.excluded_by_reason():
            event(f"report excluded: {reason}")
        event(f"messages decided by policies {sorted({d[4] for d in bulk.decisions})}")


@SPECS
@settings(
    max_examples=budget(quick=12, thorough=40),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=histories, as_of=as_ofs, batch_messages=st.integers(1, 8))
def test_bulk_equals_scalar_on_sqlite(
    stores: Stores, spec: str | None, steps: list[tuple[Any, ...]], as_of: int, batch_messages: int
) -> None:
    tg = stores.empty(spec)
    tg.events.ingest(jsonl(history(steps)))
    check_equal(tg, as_of=as_of, batch_messages=batch_messages)


@pytest.mark.store
@SPECS
@settings(
    max_examples=budget(quick=3, thorough=6), deadline=None, suppress_health_check=list(HealthCheck)
)
@given(steps=histories, as_of=as_ofs, batch_messages=st.integers(1, 8))
def test_bulk_equals_scalar_on_postgresql(
    pg_server: str, spec: str | None, steps: list[tuple[Any, ...]], as_of: int, batch_messages: int
) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        pg_schema(pg_server) as url,
        Traingate.open(Settings(db_url=url, key_file=Path(tmp) / "k.json", policy=spec)) as tg,
    ):
        tg.events.ingest(jsonl(history(steps)))
        check_equal(tg, as_of=as_of, batch_messages=batch_messages)
