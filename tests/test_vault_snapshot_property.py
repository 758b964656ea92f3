"""Property: for random conversations, the decrypted snapshot is exactly what SPEC §3 says.

The expected snapshot is computed from the events alone (``_expected`` in tests/snapshots.py),
independently of ``traingate._core.report`` and ``traingate._core.deid``: messages with ``at`` <=
the report's time in time order (ties in file order), integrations stripped, uploads kept, every
e-mail replaced everywhere, style and preferences as of the report's time, and the rated
message's index.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.budgets import budget
from tests.factories import jsonl
from tests.snapshots import EMAIL, _at, _events, _expected, conversations
from traingate._core.report import Snapshot
from traingate._core.timeutil import parse_instant
from traingate._facade import Traingate


@pytest.mark.store
@settings(
    max_examples=budget(quick=50, thorough=150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=conversations())
def test_decrypted_snapshot_is_exactly_spec_section_3(tg: Traingate, case: dict[str, Any]) -> None:
    tag = secrets.token_hex(6)  # every example gets its own ids in the shared database
    summary = tg.events.ingest(jsonl(_events(case, tag)))
    assert summary.rejected == 0, summary.errors
    ((_, _, receipt),) = summary.receipts
    info, snapshot = tg.vault.show(receipt)
    assert json.loads(snapshot.to_json()) == _expected(case)
    # the exact instant is kept (as-of filtering, expiry), outside the snapshot
    assert info.submitted_at == parse_instant(_at(case["report"], case["report_micros"]))
    text = snapshot.to_json().decode()
    assert tag not in text  # no account, conversation, message or feedback id
    assert EMAIL.search(text) is None


@pytest.mark.parametrize(
    ("stored", "mode"),
    [({}, "standard"), ({"incognito": True}, "incognito"), ({"mode": "temporary"}, "temporary")],
)
def test_stored_snapshots_read_their_mode(stored: dict[str, Any], mode: str) -> None:
    """Snapshots stored before modes said ``"incognito": true``; a standard snapshot's bytes
    have no mode at all, as before."""
    base = {
        "date": "2024-03-01",
        "messages": [{"role": "user", "content": "hi", "attachments": []}],
        "custom_style": None,
        "preferences": None,
        "rating": "up",
        "comment": None,
        "categories": [],
        "rated_message_index": 0,
    }
    snapshot = Snapshot.from_json(json.dumps(base | stored).encode())
    assert snapshot.mode == mode
    written = json.loads(snapshot.to_json())
    assert written == base | ({} if mode == "standard" else {"mode": mode})
