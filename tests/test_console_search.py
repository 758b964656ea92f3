"""The console's conversation search (issue 17, point 6) on both backends: an id prefix or an
account, ids taken literally (no LIKE wildcards), sorted, limited."""

from __future__ import annotations

import json

import pytest

from tests.factories import Events
from traingate._facade import Traingate

T = Events.t


@pytest.mark.store
def test_find_conversations_by_id_prefix_or_account(tg: Traingate) -> None:
    e = Events()
    events = [
        e.account("a", T(0)),
        e.account("b", T(0)),
        e.conversation("c-100", "a", T(1)),
        e.conversation("c-101", "a", T(1)),
        e.conversation("c_2%", "b", T(1)),
        e.conversation("a", "b", T(1)),
    ]
    assert tg.events.ingest([json.dumps(x) for x in events]).rejected == 0

    def ids(text: str, limit: int = 50) -> list[str]:
        return [c["conversation_id"] for c in tg.privacy.find_conversations(text, limit=limit)]

    assert ids("c-10") == ["c-100", "c-101"]
    assert ids(" c-101 ") == ["c-101"]
    assert ids("a") == ["a", "c-100", "c-101"]  # the id "a", and account a's conversations
    assert ids("b") == ["a", "c_2%"]
    assert ids("c_") == ["c_2%"]  # "_" and "%" are characters, not wildcards
    assert ids("c%") == []
    assert ids("c", limit=2) == ["c-100", "c-101"]
    assert ids("") == ids("   ") == []
    assert tg.privacy.find_conversations("c_2%")[0] == {
        "conversation_id": "c_2%",
        "account_id": "b",
        "mode": "standard",
    }
