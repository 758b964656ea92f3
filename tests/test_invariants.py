"""Hypothesis invariants of the pure core: time, consent as-of, event parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from traingate._core.events import parse_event, parse_line
from traingate._core.facts import ConsentChange, consent_at, consent_granted, first_denial_after
from traingate._core.policy import default_policy
from traingate._core.timeutil import (
    add_calendar_years,
    format_instant,
    from_micros,
    parse_instant,
    to_micros,
)
from traingate._errors import EventError

PLANS = default_policy().plans
instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2400, 1, 1), timezones=st.just(UTC)
)


@given(instants)
def test_format_parse_round_trip(moment: datetime) -> None:
    micros = to_micros(moment)
    assert parse_instant(format_instant(micros)) == micros
    assert from_micros(micros) == moment


@given(instants, st.integers(-14 * 60, 14 * 60))
def test_offsets_denote_the_same_instant(moment: datetime, offset_minutes: int) -> None:
    local = moment + timedelta(minutes=offset_minutes)
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + f".{local.microsecond:06d}"
    assert parse_instant(f"{text}{sign}{hours:02d}:{minutes:02d}") == to_micros(moment)


@given(instants, st.integers(1, 30))
def test_calendar_years_keep_time_of_day(moment: datetime, years: int) -> None:
    shifted = from_micros(add_calendar_years(to_micros(moment), years))
    assert shifted.year == moment.year + years
    assert shifted.time() == moment.time()
    assert shifted.month == moment.month
    if (moment.month, moment.day) == (2, 29):
        assert shifted.day in (28, 29)
    else:
        assert shifted.day == moment.day


changes = st.lists(
    st.builds(
        ConsentChange,
        at=st.integers(0, 20),
        seq=st.integers(0, 1000),
        granted=st.booleans(),
        source=st.just("privacy_settings"),
    ),
    max_size=8,
)


@given(changes, st.integers(0, 25))
def test_consent_at_ignores_arrival_order_and_denial_wins(
    ledger: list[ConsentChange], t: int
) -> None:
    current = consent_at(ledger, t)
    backwards = consent_at(list(reversed(ledger)), t)
    assert (current is None) == (backwards is None)
    assert current is None or backwards is None or current.granted == backwards.granted
    past = [c for c in ledger if c.at <= t]
    if not past:
        assert current is None
        return
    latest = max(c.at for c in past)
    at_latest = [c for c in past if c.at == latest]
    assert current is not None
    assert current.granted == all(c.granted for c in at_latest)


@given(changes, st.integers(0, 25), st.integers(0, 25))
def test_consent_held_means_no_denial_until_as_of(
    ledger: list[ConsentChange], since: int, extra: int
) -> None:
    """What retroactive coverage reads (policy.coverage): granted at ``since`` and no denial
    until ``until`` means granted at every instant between."""
    until = since + extra
    granted = consent_granted(ledger, since, default=False)
    denial = first_denial_after(ledger, since)
    held = denial is None or denial > until
    for t in range(since, until + 1):
        state = consent_at(ledger, t)
        if granted and held:
            assert state is not None and state.granted


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


@given(
    st.dictionaries(
        st.sampled_from(
            ["type", "event_id", "at", "account_id", "plan", "email", "role", "content"]
        ),
        json_values,
    )
)
def test_any_json_object_is_parsed_or_rejected_with_an_event_error(raw: dict[str, object]) -> None:
    try:
        parse_event(raw, plans=PLANS, line=3)
    except EventError as exc:
        assert exc.line == 3
        assert str(exc).startswith("line 3")


@given(st.text(max_size=200))
def test_any_text_line_is_parsed_or_rejected(text: str) -> None:
    try:
        parse_line(text, plans=PLANS, line=1)
    except EventError as exc:
        assert exc.line == 1


@given(st.integers(1, 3))
def test_canonical_duplicate_detection_is_order_free(indent: int) -> None:
    event = {
        "type": "account.deleted",
        "event_id": "x",
        "at": "2024-01-01T00:00:00Z",
        "account_id": "a",
    }
    first = parse_line(json.dumps(event), plans=PLANS, line=1)
    second = parse_line(
        json.dumps(dict(reversed(event.items())), indent=indent).replace("\n", ""),
        plans=PLANS,
        line=2,
    )
    assert first.body == second.body
