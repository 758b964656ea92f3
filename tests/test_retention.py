"""Retention: report expiry at the exact instant (29 February included), the 30-day hard delete
of deleted conversations and accounts, and purge idempotency, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import Events, all_text, jsonl
from traingate.app import Traingate
from traingate.policy import PolicySet, bundled_policy, default_policy
from traingate.retention import (
    HARD_DELETE_AFTER,
    PurgeCounts,
    expired_submissions,
    hard_delete_cutoff,
    hard_delete_due,
    purge,
    report_expired,
    report_expiry,
)
from traingate.settings import Settings
from traingate.store.db import sqlite_path_of
from traingate.timeutil import format_instant, parse_instant

DAY = 86_400 * 1_000_000
LEAP = "2024-02-29T13:45:07.654321Z"
LEAP_EXPIRY = "2034-02-28T13:45:07.654321Z"


# -- pure rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("submitted", "expiry"),
    [
        (LEAP, LEAP_EXPIRY),
        ("2024-03-01T00:00:00Z", "2034-03-01T00:00:00Z"),
        ("2023-12-31T23:59:59.999999Z", "2033-12-31T23:59:59.999999Z"),
        ("2028-02-29T00:00:00Z", "2038-02-28T00:00:00Z"),
        ("2030-02-28T08:00:00+05:00", "2040-02-28T03:00:00Z"),  # the UTC instant counts
    ],
)
def test_report_expiry_adds_ten_calendar_years(submitted: str, expiry: str) -> None:
    at = parse_instant(submitted)
    assert format_instant(report_expiry(default_policy(), at)) == expiry
    end = parse_instant(expiry)
    assert not report_expired(expires_at=end, as_of=end - 1)
    assert report_expired(expires_at=end, as_of=end)


def test_hard_delete_is_more_than_thirty_days() -> None:
    deleted = parse_instant("2024-05-01T10:00:00Z")
    assert HARD_DELETE_AFTER == 30 * DAY
    assert not hard_delete_due(deleted_at=deleted, as_of=deleted + 30 * DAY)
    assert hard_delete_due(deleted_at=deleted, as_of=deleted + 30 * DAY + 1)
    assert hard_delete_cutoff(deleted + 30 * DAY + 1) == deleted + 1


# Instants from 1990 to 2060, whole seconds or not; 29 February of the leap years is likely.
_INSTANTS = st.one_of(
    st.integers(min_value=parse_instant("1990-01-01T00:00:00Z"), max_value=2_840_000_000 * 10**6),
    st.sampled_from(["2024-02-28", "2024-02-29", "2024-03-01", "2028-02-29"]).flatmap(
        lambda day: st.integers(0, DAY - 1).map(lambda us: parse_instant(f"{day}T00:00:00Z") + us)
    ),
)


@settings(max_examples=400, deadline=None)
@given(
    switches=st.lists(_INSTANTS, min_size=0, max_size=3, unique=True),
    submitted=_INSTANTS,
    as_of=_INSTANTS,
)
def test_expired_submission_days_match_the_exact_expiry(
    switches: list[int], submitted: int, as_of: int
) -> None:
    """Policies of 10 and 5 years alternating at random dates: a report on a day of ``days``
    has expired; one that has expired is on a day of ``days`` or of ``check``."""
    policies = PolicySet.of(
        bundled_policy("consumer-2025" if n % 2 else "consumer-2024")
        .effective(at)
        .model_copy(update={"version": 100 + n})  # a set names each id and version once
        for n, at in enumerate([parse_instant("1980-01-01T00:00:00Z"), *sorted(switches)])
    )
    found = expired_submissions(policies, as_of)
    day = submitted - submitted % DAY
    in_days = any((first is None or first <= day) and day <= last for first, last in found.days)
    expired = report_expiry(policies, submitted) <= as_of
    if in_days:
        assert expired
    if expired:
        assert in_days or day in found.check
    assert len(found.check) <= 4 * len(policies.policies)


def test_purge_counts_to_dict() -> None:
    counts = PurgeCounts(
        as_of=0, expired_reports=1, conversations_purged=2, messages_purged=3, accounts_purged=4
    )
    assert counts.to_dict() == {
        "as_of": "1970-01-01T00:00:00Z",
        "expired_reports": 1,
        "conversations_purged": 2,
        "messages_purged": 3,
        "accounts_purged": 4,
    }


# -- purge on both stores ----------------------------------------------------------------------


def _purge(tg: Traingate, as_of: int) -> dict[str, Any]:
    counts = purge(db=tg.store.db, vault=tg.vault, as_of=as_of).to_dict()
    del counts["as_of"]
    return counts


ZERO = {"expired_reports": 0, "conversations_purged": 0, "messages_purged": 0, "accounts_purged": 0}


def test_purge_at_the_exact_expiry_instant_of_a_29_february_report(
    tg: Traingate, ev: Events
) -> None:
    events = [
        ev.account("u1", "2024-01-01T00:00:00Z"),
        ev.message("m1", "c1", "u1", "2024-02-29T13:00:00Z"),
        ev.feedback("f1", "u1", "c1", "m1", LEAP, rating="up"),
        ev.message("m2", "c1", "u1", "2024-03-01T09:00:00Z"),
        ev.feedback("f2", "u1", "c1", "m2", "2024-03-01T09:00:01Z"),
    ]
    summary = tg.ingest(jsonl(events))
    assert summary.rejected == 0, summary.errors
    leap_receipt = summary.receipts[0][2]
    expiry = parse_instant(LEAP_EXPIRY)
    info, _ = tg.vault.show(leap_receipt)
    assert info.expires_at == expiry

    # expired for every build from the expiry instant on, purged or not
    assert len(list(tg.vault.reports(as_of=expiry - 1))) == 2
    assert len(list(tg.vault.reports(as_of=expiry))) == 1

    assert _purge(tg, expiry - 1) == ZERO  # one microsecond before: still there
    assert tg.vault.show(leap_receipt)[1].rating == "up"
    assert _purge(tg, expiry) == {**ZERO, "expired_reports": 1}
    assert tg.vault.count() == 1
    with pytest.raises(Exception, match="no stored feedback report"):
        tg.vault.show(leap_receipt)
    assert _purge(tg, expiry) == ZERO  # idempotent
    assert _purge(tg, parse_instant("2034-03-01T09:00:01Z")) == {**ZERO, "expired_reports": 1}
    assert tg.vault.count() == 0


def test_purge_long_after_expiry_deletes_by_day_alone(tg: Traingate, ev: Events) -> None:
    events = [
        ev.message("m1", "c1", "u1", ev.t(1)),
        ev.feedback("f1", "u1", "c1", "m1", ev.t(1, 1)),
        ev.feedback("f2", "u1", "c1", "m1", ev.t(2)),
    ]
    assert tg.ingest(jsonl(events)).accepted == 3
    later = parse_instant("2034-01-02T12:00:01Z")  # the first report's exact expiry
    assert _purge(tg, later - 1) == ZERO
    assert _purge(tg, later) == {**ZERO, "expired_reports": 1}
    assert _purge(tg, parse_instant("2040-01-01T00:00:00Z")) == {**ZERO, "expired_reports": 1}
    assert tg.vault.count() == 0


def _deleted_world(ev: Events) -> list[dict[str, Any]]:
    """u1: c1 deleted on day 10, c2 kept. u2 (deleted on day 20): c3. u3: c4 kept."""
    style = {"voice": "pirate", "signature": "write to mallory@corp.example"}
    return [
        ev.account("u1", ev.t(0), email="u1@example.com"),
        ev.account("u2", ev.t(0), email="u2-secret@example.com"),
        ev.account("u3", ev.t(0)),
        ev.consent("u2", ev.t(0), True),
        ev.conversation("c1", "u1", ev.t(1), custom_style=style),
        ev.message("c1m1", "c1", "u1", ev.t(1, 1), content="c1 first words"),
        ev.message("c1m2", "c1", "u1", ev.t(1, 2), role="assistant", content="c1 reply"),
        ev.flag("fl1", "c1", ev.t(1, 3)),
        ev.clear("fl1", ev.t(1, 4)),
        ev.feedback("fb1", "u1", "c1", "c1m2", ev.t(1, 5), comment="kept after deletion"),
        ev.message("c2m1", "c2", "u1", ev.t(2), content="c2 words"),
        ev.conversation("c3", "u2", ev.t(3), preferences={"lang": "fr"}),
        ev.message("c3m1", "c3", "u2", ev.t(3, 1), content="u2 confidential words"),
        ev.message("c4m1", "c4", "u3", ev.t(4), content="c4 words"),
        ev.conversation_deleted("c1", "u1", ev.t(10)),
        ev.account_deleted("u2", ev.t(20)),
    ]


def _count(tg: Traingate, sql: str, *params: Any) -> int:
    return int(tg.store.db.execute(sql, params)[0][0])


def test_purge_hard_deletes_after_thirty_days_and_keeps_the_ledgers(
    tg: Traingate, ev: Events, settings: Settings
) -> None:
    events = _deleted_world(ev)
    summary = tg.ingest(jsonl(events))
    assert summary.rejected == 0, summary.errors
    c1_deleted, u2_deleted = parse_instant(ev.t(10)), parse_instant(ev.t(20))

    # exactly 30 days after: not yet "more than 30 days"
    assert _purge(tg, c1_deleted + 30 * DAY) == ZERO
    assert _count(tg, "SELECT COUNT(*) FROM messages") == 5

    after_c1 = _purge(tg, c1_deleted + 30 * DAY + 1)
    assert after_c1 == {**ZERO, "conversations_purged": 1, "messages_purged": 2}
    assert _count(tg, "SELECT COUNT(*) FROM messages WHERE conversation_id = 'c1'") == 0
    assert (
        _count(tg, "SELECT COUNT(*) FROM conversation_settings WHERE conversation_id = 'c1'") == 0
    )
    assert _count(tg, "SELECT COUNT(*) FROM flags WHERE conversation_id = 'c1'") == 0
    assert _count(tg, "SELECT COUNT(*) FROM flag_clears") == 0
    assert _count(tg, "SELECT COUNT(*) FROM messages") == 3
    assert _count(tg, "SELECT COUNT(*) FROM account_plans WHERE account_id = 'u1'") == 1

    after_u2 = _purge(tg, u2_deleted + 30 * DAY + 1)
    assert after_u2 == {
        **ZERO,
        "conversations_purged": 1,
        "messages_purged": 1,
        "accounts_purged": 1,
    }
    assert _count(tg, "SELECT COUNT(*) FROM messages WHERE account_id = 'u2'") == 0
    assert _count(tg, "SELECT COUNT(*) FROM account_plans WHERE account_id = 'u2'") == 0
    assert _count(tg, "SELECT COUNT(*) FROM consents WHERE subject = 'u2'") == 0
    assert (
        _count(tg, "SELECT COUNT(*) FROM conversation_settings WHERE conversation_id = 'c3'") == 0
    )
    # kept: other conversations, the deletion ledgers, the report (SPEC §1 rule 5)
    assert _count(tg, "SELECT COUNT(*) FROM messages") == 2
    assert _count(tg, "SELECT COUNT(*) FROM conversation_deletions") == 1
    assert _count(tg, "SELECT COUNT(*) FROM account_deletions") == 1
    assert tg.vault.show(summary.receipts[0][2])[1].comment == "kept after deletion"

    # nothing of a purged event is left in any table of the main database (the event log
    # keeps keyed hashes, never bodies)
    kept = all_text(tg.store.db)
    for gone in ("c1 first words", "c1 reply", "mallory", "u2-secret", "u2 confidential"):
        assert gone not in kept, gone
    assert "c2 words" in kept and "c4 words" in kept

    # idempotent
    assert _purge(tg, u2_deleted + 30 * DAY + 1) == ZERO
    assert _purge(tg, u2_deleted + 300 * DAY) == ZERO

    # what was deleted stays deleted: re-sent events are duplicates, new ones are refused
    again = tg.ingest(jsonl(events))
    assert again.duplicates == len(events) and again.accepted == 0 and again.rejected == 0
    late = tg.ingest(
        jsonl(
            [
                ev.message("c1m9", "c1", "u1", ev.t(60), content="too late"),
                ev.message("c3m9", "c3", "u2", ev.t(60), content="too late"),
            ]
        )
    )
    assert late.rejected == 2 and late.accepted == 0

    if tg.store.db.dialect == "sqlite":  # not even in free pages or the WAL
        main = sqlite_path_of(settings.db_url)
        assert main is not None
        wal = main.with_name(main.name + "-wal")
        raw = main.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        for gone in (b"c1 first words", b"u2-secret", b"u2 confidential", b"mallory"):
            assert gone not in raw, gone
        assert b"c4 words" in raw


def test_purge_deletes_the_sessions_of_purged_accounts(tg: Traingate, ev: Events) -> None:
    """A session row names its account: once the account is hard-deleted, none is left."""
    assert tg.ingest(jsonl([ev.account("u7", ev.t(0)), ev.account("u8", ev.t(0))])).rejected == 0
    sessions = [tg.create_session(account_id=a, ttl=DAY).token for a in ("u7", "u8")]
    assert tg.ingest(jsonl([ev.account_deleted("u7", ev.t(1))])).rejected == 0
    _purge(tg, parse_instant(ev.t(1)) + 30 * DAY + 1)
    assert _count(tg, "SELECT COUNT(*) FROM sessions WHERE account_id = 'u7'") == 0
    assert _count(tg, "SELECT COUNT(*) FROM sessions WHERE account_id = 'u8'") == 1
    assert tg.authenticate(sessions[1]).account_id == "u8"


def test_purge_leaves_a_store_without_deletions_alone(tg: Traingate, ev: Events) -> None:
    tg.ingest(jsonl([ev.account("u1", ev.t(0)), ev.message("m1", "c1", "u1", ev.t(1))]))
    assert _purge(tg, parse_instant("2099-01-01T00:00:00Z")) == ZERO
    assert _count(tg, "SELECT COUNT(*) FROM messages") == 1


@pytest.mark.store
def test_a_policy_put_in_force_from_an_earlier_date_shortens_the_stored_expiry(
    settings: Settings, ev: Events
) -> None:
    """Reports stored under consumer-2024 (P10Y); consumer-2025 (P5Y) is then configured from
    a date before some of them: those are purged five years after their submission, to the
    microsecond, and shown (by ``feedback show`` and the retention status) with that expiry;
    the others keep their ten years."""
    events = [
        ev.account("u1", "2024-01-01T00:00:00Z"),
        ev.message("m1", "c1", "u1", "2024-01-02T00:00:00Z"),
        ev.feedback("f-before", "u1", "c1", "m1", "2024-01-05T10:00:00Z"),
        ev.feedback("f-leap", "u1", "c1", "m1", LEAP),
        ev.feedback("f-after", "u1", "c1", "m1", "2024-03-01T09:00:01Z"),
    ]
    with Traingate.open(settings) as tg:
        summary = tg.ingest(jsonl(events))
        assert summary.rejected == 0, summary.errors
        receipts = {line: receipt for line, _, receipt in summary.receipts}
    before, leap, after = receipts[3], receipts[4], receipts[5]
    later = Settings(
        db_url=settings.db_url,
        key_file=settings.key_file,
        policy="consumer-2024,consumer-2025@2024-02-01T00:00:00Z",
    )
    with Traingate.open(later) as tg:
        assert tg.vault.show(leap)[0].expires_at == parse_instant("2029-02-28T13:45:07.654321Z")
        assert tg.vault.show(after)[0].expires_at == parse_instant("2029-03-01T09:00:01Z")
        assert tg.vault.show(before)[0].expires_at == parse_instant("2034-01-05T10:00:00Z")
        status = tg.retention_status(as_of=parse_instant("2025-01-01T00:00:00Z"))
        assert [(e.month, e.reports) for e in status.expiries] == [
            ("2029-02", 1),
            ("2029-03", 1),
            ("2034-01", 1),
        ]
        leap_expiry = parse_instant("2029-02-28T13:45:07.654321Z")
        assert _purge(tg, leap_expiry - 1) == ZERO
        assert _purge(tg, leap_expiry) == {**ZERO, "expired_reports": 1}
        assert _purge(tg, parse_instant("2029-03-01T09:00:00Z")) == ZERO
        assert _purge(tg, parse_instant("2031-01-01T00:00:00Z")) == {**ZERO, "expired_reports": 1}
        assert tg.vault.count() == 1
        assert tg.vault.show(before)[0].submitted_at == parse_instant("2024-01-05T10:00:00Z")
        assert _purge(tg, parse_instant("2034-01-05T10:00:00Z")) == {**ZERO, "expired_reports": 1}
    with Traingate.open(settings) as tg:  # consumer-2024 alone again: nothing comes back
        assert tg.vault.count() == 0
