"""The privacy answer over HTTP: the consent state (in force or not, since when, from which
source), and ``GET /v1/accounts/{id}/privacy`` giving exactly what ``account_privacy`` gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import Events
from traingate._core.facts import ConsentChange
from traingate._core.timeutil import parse_instant
from traingate._facade import Traingate
from traingate._privacy import account_privacy, consent_state
from traingate._settings import Settings

T = Events.t


def _ledger(*changes: tuple[int, bool, str]) -> tuple[ConsentChange, ...]:
    return tuple(
        ConsentChange(at=at, seq=seq, granted=granted, source=source)
        for seq, (at, granted, source) in enumerate(changes)
    )


def _state(ledger: tuple[ConsentChange, ...], as_of: int) -> tuple[bool, int | None, str | None]:
    state = consent_state(scope="account", subject="a", ledger=ledger, as_of=as_of)
    return state.granted, state.since, state.source


def test_no_event_means_not_granted_since_ever() -> None:
    assert _state((), 10) == (False, None, None)


def test_a_grant_counts_from_the_first_grant_after_the_last_denial() -> None:
    ledger = _ledger((1, True, "tester"), (3, True, "privacy_settings"), (5, False, "ps"))
    assert _state(ledger, 2) == (True, 1, "tester")
    assert _state(ledger, 4) == (True, 1, "tester")  # a repeated grant does not restart it
    assert _state(ledger, 5) == (False, 5, "ps")
    regranted = (*ledger, ConsentChange(at=7, seq=9, granted=True, source="again"))
    assert _state(regranted, 8) == (True, 7, "again")  # new messages only
    assert _state(regranted, 0) == (False, None, None)


def test_a_denial_counts_from_the_first_denial_after_consent_was_in_force() -> None:
    ledger = _ledger((1, False, "x"), (2, True, "y"), (4, False, "z"), (6, False, "w"))
    assert _state(ledger, 1) == (False, 1, "x")
    assert _state(ledger, 9) == (False, 4, "z")


def test_no_event_means_the_default() -> None:
    state = consent_state(scope="account", subject="a", ledger=(), as_of=10, default=True)
    assert (state.granted, state.since, state.explicit) == (True, None, False)
    revoked = _ledger((1, False, "ps"))
    state = consent_state(scope="account", subject="a", ledger=revoked, as_of=10, default=True)
    assert (state.granted, state.since) == (False, 1)


def test_a_denial_at_the_same_instant_as_a_grant_wins() -> None:
    ledger = _ledger((2, True, "y"), (2, False, "z"))
    assert _state(ledger, 3) == (False, 2, "z")
    later = (*ledger, ConsentChange(at=3, seq=5, granted=True, source="later"))
    assert _state(later, 3) == (True, 3, "later")


# -- the route gives the one answer (both backends) ----------------------------------------------


@pytest.mark.store
def test_the_route_gives_the_answer_of_account_privacy(settings: Settings, tmp_path: Path) -> None:
    from tests.api_support import running_api
    from tests.support import moved_between_plans

    ev = Events()
    with running_api(settings, tmp_path / "datasets") as api:
        api.ingest(moved_between_plans(ev))
        as_of = T(200)
        body = api.client.get(
            "/v1/accounts/a1/privacy",
            params={"as_of": as_of},
            headers=api.as_role("privacy_officer"),
        ).json()
        own = api.client.get(
            "/v1/accounts/a1/privacy", params={"as_of": as_of}, headers=api.as_user("a1")
        ).json()
        unknown = api.client.get(
            "/v1/accounts/nobody/privacy", headers=api.as_role("privacy_officer")
        )
        outside = api.client.get(
            "/v1/accounts/a1/privacy",
            params={"as_of": "9000-01-01T00:00:00Z"},
            headers=api.as_role("privacy_officer"),
        )
    with Traingate.open(settings) as tg:
        expected = account_privacy(
            store=tg.store,
            policy=tg.policies,
            keys=tg.keys,
            account_id="a1",
            as_of=parse_instant(as_of),
        ).to_dict()
    assert body == own == expected
    assert body["purposes"]["model_training"] == {
        "used": True,
        "bases": ["organization_opt_in"],
        "conversations": ["c1", "c2"],
    }
    assert unknown.status_code == 404
    assert outside.status_code == 422 and "9000-01-01" in outside.text
