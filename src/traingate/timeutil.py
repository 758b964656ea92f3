"""Instants as integer microseconds since the Unix epoch (UTC), and their RFC 3339 text.

Every time inside traingate is an ``int`` of microseconds: exact, orderable, cheap to store in
SQLite, PostgreSQL, DuckDB and Arrow alike. Text is accepted only in the strict form of SPEC §2.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from traingate.errors import TimestampError

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = 1_000_000
_ONE_US = timedelta(microseconds=1)
DAY = 86_400 * _US  # one day, in microseconds


def day_of(micros: int) -> int:
    """Midnight UTC of the day of an instant (what the vault's columns keep of a time)."""
    return micros - micros % DAY


def parse_instant(text: str) -> int:
    """Parse ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`` into UTC microseconds.

    Digits past the sixth of a fraction are dropped. Raises TimestampError naming the problem.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise TimestampError(
            f"{text!r} is not an RFC 3339 date-time YYYY-MM-DDTHH:MM:SS[.fraction] "
            "followed by Z or +HH:MM/-HH:MM"
        )
    fraction, offset = match.group(7), match.group(8)
    if offset[1:3] > "23" or offset[4:6] > "59":
        raise TimestampError(f"{text!r} has an impossible UTC offset {offset}")
    # The strict regex has checked the form; the C parser checks the calendar, on at most
    # six fraction digits (more are dropped).
    if fraction is not None and len(fraction) > 6:
        text = text[: match.start(7) + 6] + text[match.end(7) :]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise TimestampError(f"{text!r} is not a real date-time: {exc}") from None
    return (moment - _EPOCH) // _ONE_US


def to_micros(moment: datetime) -> int:
    """An aware datetime as UTC microseconds since the epoch."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds


def from_micros(micros: int) -> datetime:
    """UTC microseconds as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=micros)


def format_instant(micros: int) -> str:
    """UTC microseconds as RFC 3339 text, ``Z`` suffix, fraction only when non-zero."""
    moment = from_micros(micros)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def utc_date(micros: int) -> str:
    """The UTC calendar date (``YYYY-MM-DD``) of an instant: the coarsest time that may leave."""
    return from_micros(micros).date().isoformat()


def add_calendar_years(micros: int, years: int) -> int:
    """Add calendar years keeping the time of day; 29 February becomes 28 February."""
    moment = from_micros(micros)
    target_year = moment.year + years
    try:
        shifted = moment.replace(year=target_year)
    except ValueError:  # 29 February into a common year
        shifted = moment.replace(year=target_year, day=28)
    return to_micros(shifted)


def now_micros() -> int:
    """The wall clock, for the few places allowed to read it (purge, audit, receipts)."""
    return to_micros(datetime.now(UTC))


def date_to_micros(day: date) -> int:
    """Midnight UTC at the start of ``day``."""
    return to_micros(datetime(day.year, day.month, day.day, tzinfo=UTC))
