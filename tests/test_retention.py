"""Retention: report expiry at the exact instant (29 February included), reports without
expiry, the hard delete of deleted conversations and accounts after ``deleted_after``, the
content expiry of SPEC §5 ``[[retention]]`` rules (purge deletes what builds already leave
out: a build after a purge equals the one before), and purge idempotency, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event as hypothesis_event
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import Events, all_text, jsonl
from tests.support import KEEP, variant, variant_text
from traingate._core.policy import PolicySet, bundled_policy, default_policy
from traingate._core.timeutil import Duration, format_instant, parse_instant
from traingate._facade import Traingate
from traingate._retention.purge import purge
from traingate._retention.rules import (
    HARD_DELETE_AFTER,
    PurgeCounts,
    content_windows,
    deletion_due_at,
    deletion_windows,
    expired_submissions,
    hard_delete_cutoff,
    hard_delete_due,
    latest_start,
    report_expired,
    report_expiry,
)
from traingate._settings import Settings
from traingate._store.db import sqlite_path_of

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


def test_content_expires_when_the_keep_of_the_rule_that_applies_runs_out() -> None:
    """``content_expiry`` of a message that no basis covers, under a policy whose rule for
    every message keeps content for a duration: the message's time plus that keep, named by
    that rule (a case the random histories of the purge property reach only sometimes)."""
    from traingate._core.facts import ConversationFacts, MessageFact
    from traingate._core.policy.coverage import content_expiry

    policy = bundled_policy("consumer-2025")
    default = next(r for r in policy.retention if r.basis_id is None and r.mode is None)
    at = parse_instant("2025-03-01T12:00:00Z")
    message = MessageFact(message_id="m1", at=at, seq=0, role="user")
    facts = ConversationFacts(conversation_id="c1", account_id="a1", messages=(message,), plans=())
    assert content_expiry(policy, facts, message) == (
        default.keep_duration.add_to(at),
        default.id,
    )


def test_content_never_expires_when_its_rule_stops_applying_before_the_keep_runs_out() -> None:
    """Under a policy whose only retention rule is a flag basis's, content flagged for a day and
    then cleared is under that rule for a day only, far less than its keep: it never expires
    (no instant at which a rule that applies has run out)."""
    from traingate._core.facts import ConversationFacts, FlagFact, MessageFact, PlanChange
    from traingate._core.policy.coverage import content_expiry
    from traingate._core.policy.model import FlagBasis

    policy = bundled_policy("consumer-2025")
    flagged, basis = next(
        (r, b)
        for r in policy.retention
        if r.basis_id is not None and isinstance(b := policy.basis(r.basis_id), FlagBasis)
    )
    only_flagged = policy.model_copy(update={"retention": (flagged,)})
    at = parse_instant("2025-03-01T12:00:00Z")
    message = MessageFact(message_id="m1", at=at, seq=0, role="user")
    plan = next(iter(policy.plans))
    facts = ConversationFacts(
        conversation_id="c1",
        account_id="a1",
        messages=(message,),
        plans=(PlanChange(at=at - 1, seq=0, plan=plan, organization_id=None),),
        flags=(FlagFact(flag_id="f1", at=at, policy=basis.flag_policy, cleared_at=(at + DAY,)),),
    )
    assert content_expiry(policy, facts, message) is not None  # the default rule's keep
    assert content_expiry(only_flagged, facts, message) is None


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
    switches=st.lists(_INSTANTS, min_size=0, max_size=4, unique=True),
    submitted=_INSTANTS,
    as_of=_INSTANTS,
)
def test_expired_submission_days_match_the_exact_expiry(
    switches: list[int], submitted: int, as_of: int
) -> None:
    """Policies of 10 years, 5 years and no limit taking turns at random dates: a report on a
    day of ``days`` has expired; one that has expired is on a day of ``days`` or of
    ``check``."""
    turns = (default_policy(), bundled_policy("consumer-2025"), KEEP)
    policies = PolicySet.of(
        turns[n % 3]
        .effective(at)
        .model_copy(update={"version": 100 + n})  # a set names each id and version once
        for n, at in enumerate([parse_instant("1980-01-01T00:00:00Z"), *sorted(switches)])
    )
    found = expired_submissions(policies, as_of)
    day = submitted - submitted % DAY
    in_days = any((first is None or first <= day) and day <= last for first, last in found.days)
    expiry = report_expiry(policies, submitted)
    expired = expiry is not None and expiry <= as_of
    if in_days:
        assert expired
    if expired:
        assert in_days or day in found.check
    assert len(found.check) <= 4 * len(policies.policies)


def test_purge_counts_to_dict() -> None:
    counts = PurgeCounts(
        as_of=0,
        expired_reports=1,
        conversations_purged=2,
        messages_purged=3,
        accounts_purged=4,
        messages_expired=5,
    )
    assert counts.to_dict() == {
        "as_of": "1970-01-01T00:00:00Z",
        "expired_reports": 1,
        "conversations_purged": 2,
        "messages_purged": 3,
        "accounts_purged": 4,
        "messages_expired": 5,
    }


# -- purge on both stores ----------------------------------------------------------------------


def _purge(tg: Traingate, as_of: int) -> dict[str, Any]:
    counts = purge(store=tg.store, vault=tg.vault, as_of=as_of).to_dict()
    del counts["as_of"]
    return counts


ZERO = {
    "expired_reports": 0,
    "conversations_purged": 0,
    "messages_purged": 0,
    "accounts_purged": 0,
    "messages_expired": 0,
}


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
    summary = tg.events.ingest(jsonl(events))
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
    assert tg.events.ingest(jsonl(events)).accepted == 3
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
    summary = tg.events.ingest(jsonl(events))
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
    again = tg.events.ingest(jsonl(events))
    assert again.duplicates == len(events) and again.accepted == 0 and again.rejected == 0
    late = tg.events.ingest(
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
    assert (
        tg.events.ingest(jsonl([ev.account("u7", ev.t(0)), ev.account("u8", ev.t(0))])).rejected
        == 0
    )
    sessions = [tg.access.create_session(account_id=a, ttl=DAY).token for a in ("u7", "u8")]
    assert tg.events.ingest(jsonl([ev.account_deleted("u7", ev.t(1))])).rejected == 0
    _purge(tg, parse_instant(ev.t(1)) + 30 * DAY + 1)
    assert _count(tg, "SELECT COUNT(*) FROM sessions WHERE account_id = 'u7'") == 0
    assert _count(tg, "SELECT COUNT(*) FROM sessions WHERE account_id = 'u8'") == 1
    assert tg.access.authenticate(sessions[1]).account_id == "u8"


def test_purge_leaves_a_store_without_deletions_alone(tg: Traingate, ev: Events) -> None:
    tg.events.ingest(jsonl([ev.account("u1", ev.t(0)), ev.message("m1", "c1", "u1", ev.t(1))]))
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
        summary = tg.events.ingest(jsonl(events))
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
        status = tg.retention.status(as_of=parse_instant("2025-01-01T00:00:00Z"))
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


# -- durations and windows (pure) --------------------------------------------------------------

_DURATIONS = st.sampled_from(["P30D", "P1M", "P18M", "P1Y", "P1Y6M", "P2Y", "P5Y", "P10Y", "P7D"])


@settings(max_examples=300, deadline=None)
@given(text=_DURATIONS, until=_INSTANTS, strict=st.booleans())
def test_latest_start_is_the_last_instant_a_duration_fits_before(
    text: str, until: int, strict: bool
) -> None:
    duration = Duration.parse(text)
    t = latest_start(duration, until, strict=strict)
    if strict:
        assert duration.add_to(t) < until <= duration.add_to(t + 1)
    else:
        assert duration.add_to(t) <= until < duration.add_to(t + 1)


def test_windows_follow_each_policy_of_the_set() -> None:
    as_of = parse_instant("2026-06-01T00:00:00Z")
    switch = parse_instant("2025-09-28T00:00:00Z")
    assert content_windows(default_policy(), as_of) == ()  # no retention rule: nothing expires
    c2025 = bundled_policy("consumer-2025")
    shortest = latest_start(Duration.parse("P30D"), as_of)
    assert shortest == as_of - 30 * DAY
    assert content_windows(c2025, as_of) == ((None, shortest),)
    both = PolicySet.of([default_policy(), c2025.effective(switch)])
    assert content_windows(both, as_of) == ((switch, shortest),)
    assert content_windows(both, switch + 30 * DAY - 1) == ()
    # deletions: more than deleted_after (P30D) before as-of, under each policy of the set
    assert deletion_windows(default_policy(), as_of) == ((None, hard_delete_cutoff(as_of) - 1),)
    short = variant("short-delete", deleted_after="P7D").effective(switch)
    mixed = PolicySet.of([default_policy(), short])
    assert deletion_windows(mixed, as_of) == (
        (None, switch - 1),
        (switch, as_of - 7 * DAY - 1),
    )
    before, after = switch - DAY, switch + DAY
    assert deletion_due_at(mixed, before) == before + 30 * DAY
    assert deletion_due_at(mixed, after) == after + 7 * DAY
    assert hard_delete_due(deleted_at=after, as_of=after + 7 * DAY + 1, policy=mixed)
    assert not hard_delete_due(deleted_at=after, as_of=after + 7 * DAY, policy=mixed)


def test_a_report_without_retention_never_expires() -> None:
    at = parse_instant(LEAP)
    assert report_expiry(KEEP, at) is None
    assert not report_expired(expires_at=None, as_of=parse_instant("8999-12-31T23:59:59Z"))
    assert expired_submissions(KEEP, parse_instant("8999-12-31T23:59:59Z")).days == ()


# -- reports without expiry, on both stores -----------------------------------------------------


def _settings(base: Settings, tmp_path: Path, policy: str) -> Settings:
    """``base``'s store and key file under ``policy``, where ``keep`` names a file of KEEP."""
    file = tmp_path / "keep-feedback.toml"
    file.write_text(variant_text("keep-feedback", keep_feedback=True), encoding="utf-8")
    return Settings(
        db_url=base.db_url, key_file=base.key_file, policy=policy.replace("keep", str(file))
    )


END = parse_instant("8999-12-31T23:59:59Z")


def test_a_report_kept_until_its_holder_deletes_it(
    settings: Settings, tmp_path: Path, ev: Events
) -> None:
    events = [
        ev.account("u1", "2024-01-01T00:00:00Z"),
        ev.message("m1", "c1", "u1", "2024-01-02T00:00:00Z"),
        ev.feedback("f1", "u1", "c1", "m1", "2024-01-05T10:00:00Z", comment="kept"),
    ]
    with Traingate.open(_settings(settings, tmp_path, "keep")) as tg:
        summary = tg.events.ingest(jsonl(events))
        assert summary.rejected == 0, summary.errors
        receipt = summary.receipts[0][2]
        info, snapshot = tg.vault.show(receipt)
        assert info.expires_at is None and info.to_dict()["expires_at"] is None
        assert snapshot.comment == "kept"
        assert [r.expires_at for r in tg.vault.reports(as_of=END)] == [None]
        status = tg.retention.status(as_of=END)
        assert (status.reports_stored, status.reports_without_expiry, status.expiries) == (1, 1, ())
        assert status.to_dict()["policies"][0]["feedback_retention"] is None
        assert _purge(tg, END) == ZERO
        assert tg.feedback.delete(receipt).expires_at is None  # only its holder deletes it
        assert tg.vault.count() == 0


def test_no_limit_in_the_set_shortens_never_lengthens(
    settings: Settings, tmp_path: Path, ev: Events
) -> None:
    """Stored without expiry, then consumer-2025 (P5Y) configured from before: five years. Stored
    with ten years (consumer-2024), then a no-limit policy configured from before: still ten."""
    events = [
        ev.account("u1", "2024-01-01T00:00:00Z"),
        ev.message("m1", "c1", "u1", "2024-01-02T00:00:00Z"),
        ev.feedback("f1", "u1", "c1", "m1", "2024-01-05T10:00:00Z"),
    ]
    with Traingate.open(_settings(settings, tmp_path, "keep")) as tg:
        receipt = tg.events.ingest(jsonl(events[:3])).receipts[0][2]
    five = parse_instant("2029-01-05T10:00:00Z")
    shorter = _settings(settings, tmp_path, "keep,consumer-2025@2024-01-03T00:00:00Z")
    with Traingate.open(shorter) as tg:
        assert tg.vault.show(receipt)[0].expires_at == five
        status = tg.retention.status(as_of=five)
        assert status.reports_without_expiry == 0
        assert [(e.month, e.reports, e.expired) for e in status.expiries] == [("2029-01", 1, True)]
        assert _purge(tg, five - 1) == ZERO
        assert _purge(tg, five) == {**ZERO, "expired_reports": 1}

    more = [ev.feedback("f2", "u1", "c1", "m1", "2024-01-06T10:00:00Z")]
    with Traingate.open(settings) as tg:  # consumer-2024: ten years
        receipt = tg.events.ingest(jsonl(more)).receipts[0][2]
    ten = parse_instant("2034-01-06T10:00:00Z")
    longer = _settings(settings, tmp_path, "consumer-2024,keep@2024-01-03T00:00:00Z")
    with Traingate.open(longer) as tg:
        assert tg.vault.show(receipt)[0].expires_at == ten
        assert tg.retention.status(as_of=ten).reports_without_expiry == 0
        assert _purge(tg, ten - 1) == ZERO
        assert _purge(tg, ten) == {**ZERO, "expired_reports": 1}


# -- deleted_after of the policy in force at the deletion ---------------------------------------


def test_deleted_after_of_the_policy_in_force_at_the_deletion(
    settings: Settings, tmp_path: Path, ev: Events
) -> None:
    file = tmp_path / "short-delete.toml"
    file.write_text(variant_text("short-delete", deleted_after="P7D"), encoding="utf-8")
    configured = Settings(
        db_url=settings.db_url,
        key_file=settings.key_file,
        policy=f"consumer-2024,{file}@2024-03-01T00:00:00Z",
    )
    events = [
        *(ev.account(a, "2024-01-01T00:00:00Z") for a in ("u1", "u2", "u3")),
        ev.message("m1", "c1", "u1", "2024-01-02T00:00:00Z"),
        ev.message("m2", "c2", "u2", "2024-01-02T00:00:00Z"),
        ev.message("m3", "c3", "u3", "2024-01-02T00:00:00Z"),
        ev.conversation_deleted("c1", "u1", "2024-02-20T12:00:00Z"),  # P30D
        ev.conversation_deleted("c2", "u2", "2024-03-05T12:00:00Z"),  # P7D
        ev.account_deleted("u3", "2024-03-06T12:00:00Z"),  # P7D
    ]
    with Traingate.open(configured) as tg:
        assert tg.events.ingest(jsonl(events)).rejected == 0
        status = tg.retention.status(as_of=parse_instant("2024-03-10T00:00:00Z"))
        assert [(p.subject, format_instant(p.due_at)) for p in status.pending] == [
            ("c2", "2024-03-12T12:00:00Z"),
            ("u3", "2024-03-13T12:00:00Z"),
            ("c1", "2024-03-21T12:00:00Z"),
        ]
        assert [p["deleted_after"] for p in status.to_dict()["policies"]] == ["P30D", "P7D"]
        c2_due = parse_instant("2024-03-12T12:00:00Z")
        assert _purge(tg, c2_due) == ZERO
        assert _purge(tg, c2_due + 1) == {**ZERO, "conversations_purged": 1, "messages_purged": 1}
        u3_due = parse_instant("2024-03-13T12:00:00Z")
        assert _purge(tg, u3_due) == ZERO
        assert _purge(tg, u3_due + 1) == {
            **ZERO,
            "conversations_purged": 1,
            "messages_purged": 1,
            "accounts_purged": 1,
        }
        c1_due = parse_instant("2024-03-21T12:00:00Z")
        assert _purge(tg, c1_due) == ZERO
        assert _purge(tg, c1_due + 1) == {**ZERO, "conversations_purged": 1, "messages_purged": 1}
        assert _count(tg, "SELECT COUNT(*) FROM messages") == 0


# -- conversation content: [[retention]] rules (consumer-2025) ---------------------------------


def d25(day: int, second: int = 0) -> str:
    """Day ``day`` after 2025-10-01T12:00:00Z (consumer-2025 is in force)."""
    base = parse_instant("2025-10-01T12:00:00Z")
    return format_instant(base + day * DAY + second * 1_000_000)


def _content_world(ev: Events) -> list[dict[str, Any]]:
    """Under consumer-2025: an opted-in chat (kept 5 years), a plain one (30 days), a flagged one
    (2 years from the flag on), an incognito one with consent (30 days: no basis covers it) and
    one whose consent is revoked on day 101 (5 years until then, so expired at the revocation)."""
    events: list[dict[str, Any]] = []
    for account in ("opt", "plain", "flagged", "inc", "rev"):
        events.append(ev.account(account, d25(0)))
    events += [
        ev.consent("opt", d25(0), True),
        ev.consent("inc", d25(0), True),
        ev.consent("rev", d25(0), True),
        ev.message("o1", "c-opt", "opt", d25(1), content="opted-in words"),
        ev.message("o2", "c-opt", "opt", d25(1, 1), role="assistant", content="opted-in reply"),
        ev.message("p1", "c-plain", "plain", d25(1), content="plain words"),
        ev.message("f1", "c-flag", "flagged", d25(1), content="flagged words"),
        ev.flag("fl1", "c-flag", d25(2)),
        ev.conversation("c-inc", "inc", d25(1), mode="incognito"),
        ev.message("i1", "c-inc", "inc", d25(1, 1), content="incognito words"),
        ev.message("r1", "c-rev", "rev", d25(1), content="revoked words"),
        ev.consent("rev", d25(101), False),
    ]
    return events


@pytest.fixture
def tg25(settings: Settings) -> Any:
    configured = Settings(
        db_url=settings.db_url, key_file=settings.key_file, policy="consumer-2025"
    )
    with Traingate.open(configured) as app:
        yield app


def _stored(tg: Traingate) -> list[str]:
    return sorted(str(r[0]) for r in tg.store.db.execute("SELECT message_id FROM messages"))


def test_purge_deletes_messages_whose_content_expired(tg25: Traingate, ev: Events) -> None:
    tg = tg25
    summary = tg.events.ingest(jsonl(_content_world(ev)))
    assert summary.rejected == 0, summary.errors
    expired = tg.policy.vocabulary.decision.content_expiry
    plain_expiry = parse_instant(d25(31))  # 30 days after p1

    # before any purge, explain already says the content expired
    before = tg.privacy.explain(
        conversation_id="c-plain", purpose="model_training", as_of=plain_expiry
    )
    assert expired in before.messages[0].decision.reasons
    early = tg.privacy.explain(
        conversation_id="c-plain", purpose="model_training", as_of=plain_expiry - 1
    )
    assert expired not in early.messages[0].decision.reasons

    assert _purge(tg, plain_expiry - 1) == ZERO
    assert _purge(tg, plain_expiry) == {**ZERO, "messages_expired": 1}
    assert _purge(tg, plain_expiry) == ZERO  # idempotent
    assert _purge(tg, parse_instant(d25(31, 1))) == {**ZERO, "messages_expired": 1}  # incognito
    assert _stored(tg) == ["f1", "o1", "o2", "r1"]
    text = all_text(tg.store.db)
    assert "plain words" not in text and "incognito words" not in text
    assert "revoked words" in text

    revoked = parse_instant(d25(101))
    assert _purge(tg, revoked - 1) == ZERO
    assert _purge(tg, revoked) == {**ZERO, "messages_expired": 1}

    flagged = Duration.parse("P2Y").add_to(parse_instant(d25(1)))
    assert _purge(tg, flagged - 1) == ZERO
    assert _purge(tg, flagged) == {**ZERO, "messages_expired": 1}

    opted = Duration.parse("P5Y").add_to(parse_instant(d25(1)))
    assert _purge(tg, opted) == {**ZERO, "messages_expired": 1}
    assert _purge(tg, opted + 1_000_000) == {**ZERO, "messages_expired": 1}
    assert _stored(tg) == []
    # the conversations and their ledgers stay: later events about them are judged as before
    assert tg.store.conversation_owner("c-opt") == "opt"


def test_purge_judges_each_message_under_the_policy_in_force_at_its_time(
    settings: Settings, ev: Events
) -> None:
    """consumer-2024 (no retention rule) until 2025-09-28, consumer-2025 after: a message of
    2025-09-27 is kept however old; one of 2025-10-02 expires after 30 days."""
    configured = Settings(
        db_url=settings.db_url, key_file=settings.key_file, policy="consumer-2024,consumer-2025"
    )
    events = [
        ev.account("u1", "2025-09-01T00:00:00Z"),
        ev.message("old", "c1", "u1", "2025-09-27T12:00:00Z"),
        ev.message("new", "c1", "u1", "2025-10-02T12:00:00Z"),
    ]
    with Traingate.open(configured) as tg:
        assert tg.events.ingest(jsonl(events)).rejected == 0
        due = parse_instant("2025-11-01T12:00:00Z")
        assert _purge(tg, due - 1) == ZERO
        assert _purge(tg, due) == {**ZERO, "messages_expired": 1}
        assert _purge(tg, parse_instant("2040-01-01T00:00:00Z")) == ZERO
        assert _stored(tg) == ["old"]


def _records(out: Path) -> list[dict[str, Any]]:
    rows = [
        json.loads(line)
        for part in sorted((out / "data").glob("part-*.jsonl"))
        for line in part.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return sorted(rows, key=lambda r: (r["record_id"], r["basis"]))


def test_a_build_after_purge_equals_the_build_before(
    tg25: Traingate, ev: Events, tmp_path: Path
) -> None:
    """SPEC §5: a build is the same as if purge had run at every instant."""
    tg = tg25
    assert tg.events.ingest(jsonl(_content_world(ev))).rejected == 0
    as_of = parse_instant(d25(40))  # c-plain and c-inc expired; c-rev still opted in
    purposes = ("model_training", "safety_review")
    engines = ("duckdb", "scalar")
    before = {}
    for purpose in purposes:
        for engine in engines:
            out = tmp_path / f"before-{purpose}-{engine}"
            tg.datasets.build(purpose=purpose, as_of=as_of, out=out, format="jsonl", engine=engine)
            before[purpose, engine] = _records(out)
    assert before["model_training", "duckdb"], "the opted-in chats are in the build"
    assert before["safety_review", "duckdb"], "the flagged chat is in the build"
    assert _purge(tg, as_of) == {**ZERO, "messages_expired": 2}
    for purpose in purposes:
        for engine in engines:
            out = tmp_path / f"after-{purpose}-{engine}"
            result = tg.datasets.build(
                purpose=purpose, as_of=as_of, out=out, format="jsonl", engine=engine
            )
            assert _records(out) == before[purpose, engine], (purpose, engine)
            manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
            assert manifest["counts"]["records"] == len(before[purpose, engine])
            assert result is not None


def test_retention_status_shows_the_content_rules_and_upcoming_expiries(
    tg25: Traingate, ev: Events
) -> None:
    tg = tg25
    assert tg.events.ingest(jsonl(_content_world(ev))).rejected == 0
    c2025 = bundled_policy("consumer-2025")
    default_rule = next(r.id for r in c2025.retention if r.when == "always")

    status = tg.retention.status(as_of=parse_instant(d25(20)))
    [policy] = status.to_dict()["policies"]
    assert [r["id"] for r in policy["content_rules"]] == [r.id for r in c2025.retention]
    assert [r["keep"] for r in policy["content_rules"]] == [r.keep for r in c2025.retention]
    assert policy["feedback_retention"] == c2025.feedback_basis.retention  # type: ignore[union-attr]
    content = status.content
    assert content is not None and not content.partial
    assert (content.due_messages, content.due_conversations) == (0, 0)
    upcoming = [(m.month, m.messages, m.conversations, dict(m.by_rule)) for m in content.upcoming]
    assert upcoming == [
        ("2025-11", 2, 2, {default_rule: 2}),  # p1 and i1 on 1 November
        ("2026-01", 1, 1, {default_rule: 1}),  # r1 at its revocation on 10 January
    ]

    later = parse_instant(d25(35))
    content = tg.retention.status(as_of=later).content
    assert content is not None and (content.due_messages, content.due_conversations) == (2, 2)
    _purge(tg, later)
    content = tg.retention.status(as_of=later).content
    assert content is not None and content.due_messages == 0
    assert tg.retention.status(as_of=later).to_dict()["content"]["due"] == {
        "messages": 0,
        "conversations": 0,
    }


def test_retention_status_without_content_rules(tg: Traingate, ev: Events) -> None:
    tg.events.ingest(jsonl([ev.account("u1", ev.t(0)), ev.message("m1", "c1", "u1", ev.t(1))]))
    status = tg.retention.status(as_of=parse_instant(ev.t(400)))
    assert status.content is None and not status.content_rules
    assert status.to_dict()["policies"][0]["content_rules"] == []


def test_the_console_retention_page_shows_content_rules_and_expiries(
    tmp_path: Path, ev: Events
) -> None:
    """The retention page under consumer-2025, against the wall clock: the policy's content
    rules (ids, keeps and texts from the file), the messages past their retention and those
    expiring soon; the purge button deletes the former."""
    import re as regex

    from fastapi.testclient import TestClient

    from traingate._core.timeutil import now_micros
    from traingate._server import create_app

    configured = Settings(
        db_url=f"sqlite:///{tmp_path / 'data' / 'traingate.sqlite'}",
        key_file=tmp_path / "keys.json",
        policy="consumer-2025",
    )
    now = now_micros()

    def ago(days: int) -> str:
        return format_instant(now - days * DAY)

    events = [
        ev.account("u1", ago(200)),
        ev.message("old", "c1", "u1", ago(100), content="past its thirty days"),
        ev.message("soon", "c2", "u1", ago(10), content="twenty days left"),
    ]
    with Traingate.open(configured) as tg:
        assert tg.events.ingest(jsonl(events)).rejected == 0
        token = tg.access.create_token(role="privacy_officer").token
    c2025 = bundled_policy("consumer-2025")
    app = create_app(settings=configured, datasets_dir=tmp_path / "datasets")
    with TestClient(app) as client:
        signed = client.post("/admin/login", data={"token": token, "next": "/admin"})
        assert signed.status_code == 200
        page = client.get("/admin/retention").text
        for rule in c2025.retention:
            assert f"<span>{rule.id}</span>" in page and f"<code>{rule.keep}</code>" in page
            assert rule.text.replace("'", "&#39;") in page
        assert "30 days <code>P30D</code>" in page
        reasons = c2025.vocabulary
        for reason in (reasons.decision.content_expiry, reasons.feedback.expiry):
            assert f'<span>{reason}</span><span class="spec">{c2025.rules[reason].rule}' in page
        assert regex.search(r'id="content-due">.*1 message of 1 conversation passed', page)
        assert 'id="content-table"' in page and "<code>" + c2025.retention[0].id in page
        csrf = regex.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert csrf is not None
        purged = client.post("/admin/purge", data={"csrf": csrf.group(1)})
        assert purged.status_code == 200 and "Messages expired" in purged.text
        assert "No stored message has passed its retention." in purged.text


# -- purge against brute force, over random histories (SQLite) ----------------------------------

_BASE = parse_instant("2025-09-01T00:00:00Z")


@st.composite
def _histories(draw: st.DrawFn) -> tuple[list[dict[str, Any]], str, int]:
    ev = Events(prefix="h")

    def at() -> str:  # whole days and seconds: Hypothesis favours small integers
        day, second = draw(st.integers(0, 400)), draw(st.sampled_from([0, 1, 43_200, 86_399]))
        return format_instant(_BASE + day * DAY + second * 1_000_000)

    policy = draw(
        st.sampled_from(
            [
                "consumer-2025",
                "consumer-2024,consumer-2025",
                "consumer-2025,keep@2026-03-01T00:00:00Z",
                "chatgpt-2025",
            ]
        )
    )
    commercial = "business" if policy.startswith("chatgpt") else "team"
    events: list[dict[str, Any]] = []
    accounts = ["a0", "a1", "a2"]
    for account in accounts:
        plan = draw(st.sampled_from(["free", "pro", commercial]))
        organization = "o1" if plan == commercial else None
        events.append(ev.account(account, at(), plan=plan, organization_id=organization))
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            events.append(ev.consent(draw(st.sampled_from(accounts)), at(), draw(st.booleans())))
        else:
            events.append(ev.consent("o1", at(), draw(st.booleans()), scope="organization"))
    for c in range(draw(st.integers(1, 4))):
        conv, owner = f"c{c}", draw(st.sampled_from(accounts))
        mode = draw(st.sampled_from(["standard", "incognito", "temporary"]))
        events.append(ev.conversation(conv, owner, at(), mode=mode))
        for m in range(draw(st.integers(1, 4))):
            events.append(ev.message(f"{conv}m{m}", conv, owner, at(), content=f"{conv} {m}"))
        if draw(st.booleans()):
            events.append(ev.flag(f"{conv}f", conv, at()))
            if draw(st.booleans()):
                events.append(ev.clear(f"{conv}f", at()))
    as_of = _BASE + draw(st.integers(0, 3 * 365)) * DAY + draw(st.sampled_from([0, 1, -1]))
    return events, policy, as_of


@settings(max_examples=30, deadline=None)
@given(history=_histories())
def test_purge_deletes_exactly_what_the_plan_expired_and_changes_no_decision(
    history: tuple[list[dict[str, Any]], str, int],
) -> None:
    """Purge at T deletes exactly the messages whose ``content_expiry`` (under the policy in
    force at each) is at or before T (the windows skip no candidate), and every remaining
    message's decision as of T, for every purpose, is the one before the purge."""
    import tempfile

    from traingate._core.policy.coverage import content_expiry

    events, policy, as_of = history
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings(db_url=f"sqlite:///{tmp}/data/t.sqlite", key_file=Path(tmp) / "k.json")
        with Traingate.open(_settings(base, Path(tmp), policy)) as tg:
            summary = tg.events.ingest(jsonl(events))
            assert summary.rejected == 0, summary.errors
            conversations = sorted(
                str(r[0]) for r in tg.store.db.execute("SELECT conversation_id FROM conversations")
            )
            purposes = list(tg.policies.purposes)
            expected: set[str] = set()
            before: dict[tuple[str, str, str], Any] = {}
            for conv in conversations:
                facts = tg.store.conversation_facts(conv)
                for message in facts.messages:
                    found = content_expiry(tg.policies.in_force(message.at), facts, message)
                    if found is not None and found[0] <= as_of:
                        expected.add(message.message_id)
                for purpose in purposes:
                    explained = tg.privacy.explain(
                        conversation_id=conv, purpose=purpose, as_of=as_of
                    )
                    for m in explained.messages:
                        before[conv, purpose, m.message_id] = m.decision
            counts = _purge(tg, as_of)
            hypothesis_event(f"expired: {min(len(expected), 3)}+")
            assert counts["messages_expired"] == len(expected)
            remaining = set(_stored(tg))
            assert not remaining & expected
            assert all(mid in remaining for (_, _, mid) in before if mid not in expected)
            for conv in conversations:
                for purpose in purposes:
                    explained = tg.privacy.explain(
                        conversation_id=conv, purpose=purpose, as_of=as_of
                    )
                    for m in explained.messages:
                        assert m.decision == before[conv, purpose, m.message_id], (conv, purpose)
            assert _purge(tg, as_of) == ZERO
