"""The privacy answer's consent state: in force or not, since when, from which source."""

from __future__ import annotations

from traingate.facts import ConsentChange
from traingate.privacy import consent_state


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


def test_a_denial_at_the_same_instant_as_a_grant_wins() -> None:
    ledger = _ledger((2, True, "y"), (2, False, "z"))
    assert _state(ledger, 3) == (False, 2, "z")
    later = (*ledger, ConsentChange(at=3, seq=5, granted=True, source="later"))
    assert _state(later, 3) == (True, 3, "later")
