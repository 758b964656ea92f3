"""Ingest's batches: a file that stops decoding halfway keeps the batches written before."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.factories import Events
from traingate._facade import Traingate
from traingate._ingest import parsing


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_bytes_midway_keep_the_batches_before_them(
    tg: Traingate, ev: Events, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole batches before the bad bytes are written and stay (the part of a batch read
    before them is not: nothing of it was accepted); the error reaches the caller, which
    reports it (the CLI: "FILE is not UTF-8 text"). With parse workers, the lines in flight to
    them when reading fails are checked and written first."""
    monkeypatch.setattr(parsing, "INLINE", 0)
    monkeypatch.setattr(parsing, "CHUNK", 3)
    account = "acct-batches"
    lines = [json.dumps(ev.account(account, ev.t(0)))]
    lines += [json.dumps(ev.consent(account, ev.t(1, n), granted=n % 2 == 0)) for n in range(9)]

    def text() -> Iterator[str]:
        yield from lines
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    with pytest.raises(UnicodeDecodeError):
        tg.events.ingest(text(), batch_size=4, workers=workers)
    assert tg.store.count("account_plans") == 1
    assert tg.store.count("consents") == 7  # two batches of four
    again = tg.events.ingest(lines)
    assert (again.accepted, again.duplicates, again.rejected) == (2, 8, 0)


def test_ids_are_known_across_probe_chunks_and_report_keys(tg: Traingate, ev: Events) -> None:
    """The store is asked for a batch's event ids in chunks (SQLite's parameter limit), in
    one statement over the event log and the reports' keys: ids from either are recognised,
    past the first chunk, as duplicates with the same body and conflicts with another."""
    account, conv = "acct-probe", "conv-probe"
    events = [ev.account(account, ev.t(0)), ev.conversation(conv, account, ev.t(0))]
    for n in range(1_000):
        events.append(ev.message(f"m{n}", conv, account, ev.t(1, n)))
        if n % 100 == 99:
            events.append(ev.feedback(f"f{n}", account, conv, f"m{n}", ev.t(2, n)))
    lines = [json.dumps(event) for event in events]
    first = tg.events.ingest(lines)
    assert (first.accepted, first.duplicates, first.rejected) == (len(lines), 0, 0)
    again = tg.events.ingest(lines)
    assert (again.accepted, again.duplicates, again.rejected) == (0, len(lines), 0)
    report, message = events[-1], events[-2]
    assert report["type"] == "feedback.submitted" and message["type"] == "message.created"
    clash = [
        json.dumps({**ev.message("m-new", conv, account, ev.t(3)), "event_id": eid})
        for eid in (report["event_id"], message["event_id"])
    ]
    refused = tg.events.ingest(clash)
    assert refused.rejected == 2
    assert all(e.error.endswith("already accepted with a different body") for e in refused.errors)
