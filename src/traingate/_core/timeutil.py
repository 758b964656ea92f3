"""Instants as integer microseconds since the Unix epoch (UTC), and their RFC 3339 text.

Every time inside traingate is an ``int`` of microseconds: exact, orderable, cheap to store in
SQLite, PostgreSQL, DuckDB and Arrow alike. Text is accepted only in the strict form of SPEC §2.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from traingate._errors import TimestampError

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = 1_000_000
_ONE_US = timedelta(microseconds=1)
DAY = 86_400 * _US  # one day, in microseconds
# SPEC §2: every instant, of an event or an as-of, falls in UTC within [MIN_INSTANT, MAX_INSTANT).
MIN_INSTANT = 0  # 1970-01-01T00:00:00Z
MAX_INSTANT = 221_845_392_000 * _US  # 9000-01-01T00:00:00Z
RANGE_TEXT = "[1970-01-01T00:00:00Z, 9000-01-01T00:00:00Z)"


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
    micros = (moment - _EPOCH) // _ONE_US
    if not MIN_INSTANT <= micros < MAX_INSTANT:
        raise TimestampError(f"{text!r} is outside the range of instants {RANGE_TEXT} (in UTC)")
    return micros


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
    text = f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def utc_date(micros: int) -> str:
    """The UTC calendar date (``YYYY-MM-DD``) of an instant: the coarsest time that may leave."""
    return from_micros(micros).date().isoformat()


_DURATION = re.compile(r"P(?:([1-9]\d{0,3})Y)?(?:([1-9]\d{0,4})M)?(?:([1-9]\d{0,5})D)?", re.ASCII)


@dataclass(frozen=True, slots=True)
class Duration:
    """An ISO 8601 duration of years, months and days (SPEC §5), e.g. ``P10Y``, ``P18M``,
    ``P1Y6M``, ``P30D``: each part a positive integer, at least one part."""

    years: int = 0
    months: int = 0
    days: int = 0

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Raises ValueError naming the form a duration takes."""
        match = _DURATION.fullmatch(text)
        if match is None or text == "P":
            raise ValueError(
                f"{text!r} is not a duration: write P, then years Y, months M and/or days D, "
                "each a positive integer, in that order (P10Y, P18M, P30D, P1Y6M)"
            )
        years, months, days = (int(part) if part else 0 for part in match.groups())
        return cls(years=years, months=months, days=days)

    def __str__(self) -> str:
        parts = [(self.years, "Y"), (self.months, "M"), (self.days, "D")]
        return "P" + "".join(f"{n}{unit}" for n, unit in parts if n)

    def add_to(self, micros: int) -> int:
        """``micros`` + this duration: 12 x years + months first (a day the target month lacks
        becomes its last day: 29 February + 1 year = 28 February), then the days, keeping the
        time of day. Past the last representable instant, the result is clamped to
        ``FAR_FUTURE`` (it never comes)."""
        moment = from_micros(micros)
        total = moment.year * 12 + (moment.month - 1) + self.years * 12 + self.months
        year, month = divmod(total, 12)
        if year > 9999:
            return FAR_FUTURE
        day = min(moment.day, calendar.monthrange(year, month + 1)[1])
        shifted = moment.replace(year=year, month=month + 1, day=day)
        try:
            shifted += timedelta(days=self.days)
        except OverflowError:
            return FAR_FUTURE
        return to_micros(shifted)


FAR_FUTURE = (1 << 63) - 1  # "never": later than every instant SPEC §2 accepts


def add_calendar_years(micros: int, years: int) -> int:
    """Add calendar years keeping the time of day; 29 February becomes 28 February."""
    return Duration(years=years).add_to(micros)


def now_micros() -> int:
    """The wall clock, for the few places allowed to read it (purge, audit, receipts)."""
    return to_micros(datetime.now(UTC))
