"""Parse workers (``traingate._ingest.parsing``): a file parsed in worker processes gives the
same summary, errors, receipts and stored rows as one parsed in the ingesting process."""

from __future__ import annotations

import gzip
import json
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import Events
from traingate._core.policy import MODES
from traingate._facade import Traingate
from traingate._ingest import parsing
from traingate._ingest.incoming import Declared
from traingate._keys import ShortHasher
from traingate._sample.importer import sample_events_path
from traingate._settings import Settings

# Every table ingest writes, with an order that makes two stores comparable row by row.
TABLES = {
    "events": "seq",
    "report_events": "event_key",
    "account_plans": "event_seq",
    "account_deletions": "event_seq",
    "consents": "event_seq",
    "conversations": "conversation_id",
    "conversation_settings": "event_seq",
    "conversation_deletions": "event_seq",
    "messages": "event_seq",
    "flags": "event_seq",
    "flag_clears": "event_seq",
    "feedback_keys": "feedback_key",
}


def _rows(tg: Traingate) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
            for row in tg.store.db.execute(f"SELECT * FROM {table} ORDER BY {order}")
        ]
        for table, order in TABLES.items()
    }


def _parse(
    lines: Iterable[tuple[int, str]], *, workers: int, inline: int, ahead: int
) -> Generator[parsing.Parsed, None, None]:
    return parsing.parse_lines(
        lines,
        declared=Declared.of({"free": "consumer"}, ("model_training",)),
        short_hash=ShortHasher(b"k" * 32),
        workers=workers,
        inline=inline,
        ahead=ahead,
    )


@pytest.fixture(autouse=True)
def workers_from_the_first_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "INLINE", 0)


@pytest.fixture
def reference(tmp_path: Path, settings: Settings) -> Iterator[Traingate]:
    """A second SQLite store sharing the key file of ``tg``, so keyed hashes compare."""
    other = Settings(
        db_url=f"sqlite:///{tmp_path / 'ref' / 'ref.sqlite'}", key_file=settings.key_file
    )
    with Traingate.open(other) as app:
        yield app


def _mixed(e: Events) -> list[str]:
    """Valid events of every type, refusals of every stage (JSON, shape, state), duplicates
    and a conflict, across many chunks."""
    events: list[dict[str, Any]] = []
    for n in range(40):
        account, conv = f"a{n}", f"c{n}"
        events += [
            e.account(account, e.t(0), email=f"user{n}@example.com"),
            e.consent(account, e.t(1), granted=n % 2 == 0),
            e.conversation(  # mode and incognito disagree for n = 0, 14, 21, 35: refused
                conv,
                account,
                e.t(1),
                mode=MODES[n % 3],
                **({"incognito": True} if n % 7 == 0 else {}),
            ),
            e.message(f"m{n}", conv, account, e.t(2), role="user"),
            e.message(f"m{n}b", conv, account, e.t(3), role="assistant"),
            e.feedback(f"f{n}", account, conv, f"m{n}b", e.t(4)),
            e.message(f"m{n}", conv, account, e.t(5)),  # reused message_id: refused
            e.flag(f"fl{n}", conv, e.t(6)),
            e.conversation(conv, account, e.t(6), mode=MODES[n % 2]),  # refused when it changes
            e.consent(account, e.t(6), True, setting=("model_training", "undeclared")[n % 2]),
        ]
        if n % 5 == 0:
            events += [e.clear(f"fl{n}", e.t(7)), e.conversation_deleted(conv, account, e.t(8))]
    lines = [json.dumps(event) for event in events]
    lines[10:10] = ["{not json", '{"type": "message.created"}', "", "[1]"]
    lines.append(json.dumps({**events[3], "content": "another body"}))  # conflict
    return lines + lines[:50]  # duplicates


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_match_parsing_here(
    tg: Traingate,
    reference: Traingate,
    ev: Events,
    workers: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(parsing, "CHUNK", 7)
    lines = _mixed(ev)
    here = reference.events.ingest(lines, workers=0, batch_size=25)
    there = tg.events.ingest(lines, workers=workers, batch_size=25)
    assert there.to_dict() == here.to_dict()
    assert (here.accepted, here.duplicates, here.rejected) == (327, 37, 105)
    assert len(there.receipts) == len(here.receipts) == 40
    assert _rows(tg) == _rows(reference)


def test_the_bundled_sample_through_workers(
    tg: Traingate, reference: Traingate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parsing, "CHUNK", 997)
    with gzip.open(sample_events_path(), "rt", encoding="utf-8") as source:
        lines = list(source)
    here = reference.events.ingest(lines, workers=0, batch_size=5_000)
    there = tg.events.ingest(lines, workers=2, batch_size=5_000)
    assert there.to_dict() == here.to_dict()
    assert there.rejected == 0 and there.accepted > 15_000
    assert [r[:2] for r in there.receipts] == [r[:2] for r in here.receipts]
    assert _rows(tg) == _rows(reference)


def _cannot_start(*args: object, **kwargs: object) -> None:
    raise OSError(24, "Too many open files")


@pytest.mark.parametrize("failure", ["exits at once", "cannot start"])
def test_a_worker_that_fails_is_replaced_by_parsing_here(
    tg: Traingate,
    reference: Traingate,
    ev: Events,
    failure: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(parsing, "CHUNK", 5)
    if failure == "exits at once":
        monkeypatch.setattr(parsing, "WORKER_ARGS", ("-c", "import sys; sys.exit(3)"))
    else:
        monkeypatch.setattr(parsing.subprocess, "Popen", _cannot_start)
    lines = _mixed(ev)
    here = reference.events.ingest(lines, workers=0, batch_size=25)
    there = tg.events.ingest(lines, workers=2, batch_size=25)
    assert there.to_dict() == here.to_dict()
    assert _rows(tg) == _rows(reference)


def test_stopping_early_stops_the_workers(ev: Events, monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that stops taking lines (an error while writing a batch) ends the workers at
    once, with lines still queued for them and results nobody will read."""
    monkeypatch.setattr(parsing, "CHUNK", 50)
    lines = [(n, json.dumps(ev.account(f"a{n}", ev.t(0)))) for n in range(1, 20_001)]
    parsed = _parse(lines, workers=2, inline=0, ahead=10_000)
    assert [next(parsed).line for _ in range(3)] == [1, 2, 3]
    parsed.close()  # returns: no worker left running or blocked


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The workers started from here on, each a real worker counting the chunks it is handed
    (``chunks``)."""
    workers: list[Any] = []

    class Counted(parsing._Worker):
        def __init__(self, declared: Declared, short_hash: ShortHasher) -> None:
            super().__init__(declared, short_hash)
            self.chunks = 0
            workers.append(self)

        def submit(self, chunk: list[tuple[int, str]]) -> None:
            self.chunks += 1
            super().submit(chunk)

    monkeypatch.setattr(parsing, "_Worker", Counted)
    return workers


@pytest.mark.parametrize(("lines", "starts"), [(60, True), (30, False), (29, False)])
def test_workers_start_before_the_last_line_parsed_here(
    ev: Events, lines: int, starts: bool, started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller whose batch is the ``inline`` lines writes it when it takes the last of them:
    by then the workers are parsing the lines after it. A file of at most ``inline`` lines
    starts none."""
    monkeypatch.setattr(parsing, "CHUNK", 10)
    numbered = [(n, json.dumps(ev.account(f"a{n}", ev.t(0)))) for n in range(1, lines + 1)]
    parsed = _parse(numbered, workers=1, inline=30, ahead=20)
    taken = [next(parsed).line for _ in range(min(lines, 30))]
    assert taken == list(range(1, min(lines, 30) + 1))
    if starts:
        assert len(started) == 1 and started[0].chunks == 2  # lines 31-50: ``ahead``
    else:
        assert started == []
    assert [item.line for item in parsed] == list(range(31, lines + 1))


@pytest.mark.parametrize("workers", [0, 1])
def test_reading_fails_after_the_held_line(
    ev: Events, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line held back while the workers start is handed on before a read failure."""

    def numbered() -> Iterator[tuple[int, str]]:
        for n in range(1, 6):
            yield n, json.dumps(ev.account(f"a{n}", ev.t(0)))
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    parsed = _parse(numbered(), workers=workers, inline=5, ahead=20)
    assert [next(parsed).line for _ in range(5)] == [1, 2, 3, 4, 5]
    with pytest.raises(UnicodeDecodeError):
        next(parsed)
