"""Fuzzing ingest with Hypothesis-generated malformed and hostile events (tests/fuzz_events.py)
through the library, the command line and HTTP, on SQLite and PostgreSQL: each event is
rejected with an error naming its line, or stored exactly (read back, byte for byte); no
input crashes the process; nothing is half-stored (row counts agree with the summary)."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from tests.api_support import Api, running_api
from tests.fuzz_events import Case, cases, check, counts, with_prefix
from tests.support import run
from traingate._facade import Traingate
from traingate._ingest import IngestError, IngestSummary
from traingate._ingest.incoming import Declared, Incoming, Rejected
from traingate._ingest.parsing import INLINE, parse_lines
from traingate._settings import Settings

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _prefix() -> str:
    return f"fz{uuid.uuid4().hex[:12]}"


def _summary(data: dict[str, Any]) -> IngestSummary:
    """An ingest summary from its JSON form (with the receipts the API adds on request)."""
    return IngestSummary(
        accepted=data["accepted"],
        duplicates=data["duplicates"],
        rejected=data["rejected"],
        errors=[IngestError(e["line"], e["event_id"], e["error"]) for e in data["errors"]],
        receipts=[(r["line"], r["event_id"], r["receipt"]) for r in data.get("receipts", [])],
    )


@FUZZ
@given(case=cases())
def test_library_ingest(tg: Traingate, case: Case) -> None:
    prefix = _prefix()
    lines = with_prefix(case, prefix)
    before = counts(tg)
    summary = tg.events.ingest(lines)
    check(tg, lines, summary, before, prefix)


@FUZZ
@given(case=cases())
def test_library_ingest_one_batch_per_event(tg: Traingate, case: Case) -> None:
    prefix = _prefix()
    lines = with_prefix(case, prefix)
    before = counts(tg)
    summary = tg.events.ingest(lines, batch_size=1)
    check(tg, lines, summary, before, prefix)


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[Api]:
    """The API over an empty store (conftest's ``api`` holds a history)."""
    with running_api(settings, tmp_path / "datasets") as running:
        yield running


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases(), as_array=st.booleans())
def test_http_ingest(api: Api, case: Case, as_array: bool) -> None:
    prefix = _prefix()
    lines = with_prefix(case, prefix)
    if as_array:  # the elements that are JSON at all; the API numbers them 1, 2, …
        values = []
        for line in lines:
            try:
                values.append(json.loads(line))
            except (ValueError, RecursionError):
                continue
        body = json.dumps(values).encode("utf-8")
        media = "application/json"
        try:
            lines = [json.dumps(v, ensure_ascii=False) for v in values]
        except RecursionError:
            return
    else:
        body = "\n".join(lines).encode("utf-8")
        media = "application/x-ndjson"
        # the API numbers NDJSON lines as a file is read: split at \n (\r\n, \r) only
    with Traingate.open(api.settings) as tg:
        before = counts(tg)
    done = api.client.post(
        "/v1/events",
        params={"receipts": "true"},
        content=body,
        headers={**api.as_role("ingest"), "Content-Type": media},
    )
    assert done.status_code < 500, done.text
    if done.status_code in (400, 413):  # refused whole: nothing changed
        assert done.json()["error"]["code"] in ("invalid_json", "too_many_events")
        with Traingate.open(api.settings) as tg:
            assert counts(tg) == before
        return
    assert done.status_code in (200, 422), done.text
    with Traingate.open(api.settings) as tg:
        note(f"lines={lines!r}\nresponse={done.json()!r}")
        check(tg, lines, _summary(done.json()), before, prefix)


@settings(
    max_examples=3,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking subprocesses is slow
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(cases(), min_size=6, max_size=10))
def test_cli_ingest(db_url: str, tmp_path: Path, batches: list[Case]) -> None:
    prefix = _prefix()
    lines = with_prefix([line for case in batches for line in case], prefix)
    events = tmp_path / f"{prefix}.jsonl"
    events.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {"TRAINGATE_DB": db_url, "TRAINGATE_KEY_FILE": str(tmp_path / "keys.json")}
    settings_ = Settings(db_url=db_url, key_file=tmp_path / "keys.json")
    with Traingate.open(settings_) as tg:
        before = counts(tg)
    receipts = tmp_path / f"{prefix}-receipts.jsonl"
    done = run(["ingest", str(events), "--receipts", str(receipts)], cwd=tmp_path, env=env)
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert done.returncode == (1 if summary["rejected"] else 0)
    if receipts.exists():
        summary["receipts"] = [json.loads(line) for line in receipts.read_text().splitlines()]
    with Traingate.open(settings_) as tg:  # the file's lines are ``lines``: no raw \r or \n
        check(tg, lines, _summary(summary), before, prefix)
        assert tg.audit.verify()["ok"]


def test_huge_and_hostile_content_round_trips(tg: Traingate) -> None:
    """Strings at the size limit, every Unicode plane, SQL text: stored byte for byte."""
    prefix = _prefix()
    contents = [
        "x" * 10_000_000,
        "".join(chr(c) for c in range(1, 0xD800))
        + "".join(chr(c) for c in range(0xE000, 0x110000, 7)),
        "'); DROP TABLE messages; --\\'\"` $1 %s",
        "\u202e\ufeff\u2028\u2029\x85\x7f\x1f",
    ]
    lines = [
        json.dumps(
            {
                "type": "message.created",
                "event_id": f"{prefix}-{n}",
                "at": "2024-03-01T12:00:00Z",
                "conversation_id": f"{prefix}-c",
                "message_id": f"{prefix}-m{n}",
                "account_id": f"{prefix}-a",
                "role": "user",
                "content": content,
                "attachments": [],
            },
            ensure_ascii=bool(n % 2),
        )
        for n, content in enumerate(contents)
    ]
    too_long = json.loads(lines[0])
    too_long |= {
        "event_id": f"{prefix}-big",
        "message_id": f"{prefix}-big",
        "content": "y" * 10_000_001,
    }
    lines.append(json.dumps(too_long))
    before = counts(tg)
    summary = tg.events.ingest(lines)
    assert (summary.accepted, summary.rejected) == (4, 1)
    assert summary.errors[0].line == 5 and "content" in summary.errors[0].error
    check(tg, lines, summary, before, prefix)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('"content": "a\\u0000b"', "content"),
        ('"content": "\\ud800"', "content"),
        (
            '"content": "ok", "attachments": [{"attachment_id": "x", "source": "upload",'
            ' "name": "\\u0000"}]',
            "attachments[0].name",
        ),
    ],
)
def test_nul_and_lone_surrogates_are_rejected_on_every_backend(
    tg: Traingate, text: str, field: str
) -> None:
    line = (
        '{"type": "message.created", "event_id": "e1", "at": "2024-03-01T12:00:00Z",'
        ' "conversation_id": "c", "message_id": "m", "account_id": "a", "role": "user", '
        + text
        + "}"
    )
    summary = tg.events.ingest([line])
    assert summary.rejected == 1, summary
    assert f"field {field!r}" in summary.errors[0].error
    assert counts(tg)["messages"] == 0


def test_a_nul_deep_in_a_style_is_named(tg: Traingate) -> None:
    line = json.dumps(
        {
            "type": "conversation.updated",
            "event_id": "e1",
            "at": "2024-03-01T12:00:00Z",
            "conversation_id": "c",
            "account_id": "a",
            "custom_style": {"tone": ["dry", {"x\x00": 1}]},
        }
    )
    [error] = tg.events.ingest([line]).errors
    assert "NUL" in error.error and "custom_style.tone[1]" in error.error


def test_bytes_that_are_not_utf8_reject_only_their_line(tmp_path: Path) -> None:
    good = json.dumps(
        {
            "type": "account.updated",
            "event_id": "ok",
            "at": "2024-03-01T12:00:00Z",
            "account_id": "a",
            "email": "a@example.com",
            "plan": "free",
            "organization_id": None,
        }
    ).encode()
    bad = good.replace(b'"ok"', b'"n\xffo"').replace(b'"a"', b'"b"')
    (tmp_path / "events.jsonl").write_bytes(b"\xfe\xff\n" + bad + b"\n" + good + b"\n")
    done = run(["ingest", "events.jsonl"], cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["accepted"], summary["rejected"]) == (1, 2)
    assert [e["line"] for e in summary["errors"]] == [1, 2]


def _styled(depth: int) -> str:
    """A conversation whose custom_style nests ``depth`` levels (its own object included)."""
    line = json.dumps(
        {
            "type": "conversation.updated",
            "event_id": f"deep-{depth}",
            "at": "2024-03-01T12:00:00Z",
            "conversation_id": f"deep-{depth}",
            "account_id": "a",
            "custom_style": "__DEEP__",
        }
    )
    return line.replace('"__DEEP__"', '{"k":' * (depth - 1) + "[1]" + "}" * (depth - 1))


def test_free_form_json_nests_at_most_64_levels(tg: Traingate, tmp_path: Path) -> None:
    """Deeper styles would break the recursive redaction of every later snapshot and build."""
    rejected = tg.events.ingest([_styled(65), _styled(5000)])
    assert rejected.rejected == 2 and "64 levels" in rejected.errors[0].error
    deepest = [
        _styled(64),
        json.dumps(
            {
                "type": "message.created",
                "event_id": "deep-m",
                "at": "2024-03-01T12:00:01Z",
                "conversation_id": "deep-64",
                "message_id": "deep-m",
                "account_id": "a",
                "role": "user",
                "content": "x",
                "attachments": [],
            }
        ),
        json.dumps(
            {
                "type": "feedback.submitted",
                "event_id": "deep-f",
                "at": "2024-03-01T12:00:02Z",
                "feedback_id": "deep-f",
                "account_id": "a",
                "conversation_id": "deep-64",
                "message_id": "deep-m",
                "rating": "up",
            }
        ),
    ]
    summary = tg.events.ingest(deepest)
    assert summary.accepted == 3, summary.errors
    _, snapshot = tg.feedback.show(summary.receipts[0][2])
    assert snapshot.custom_style is not None
    built = tg.datasets.build(
        purpose="model_training", out=tmp_path / "ds", as_of=10**15 * 2, format="jsonl"
    )
    assert built.manifest["counts"]["records"] == 1  # the report; the conversation has no consent


def test_http_bodies_nesting_too_deeply_are_400(api: Api) -> None:
    for body in ("[" * 100_000 + "]" * 100_000, "[" + _styled(5000) + "]"):
        done = api.client.post(
            "/v1/events",
            content=body,
            headers={**api.as_role("ingest"), "Content-Type": "application/json"},
        )
        assert done.status_code in (400, 422), done.text


# -- raw bytes: the line parser and POST /v1/events (issue 19) ---------------------------------

RAW = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# A body: raw bytes (anything, newlines and bytes that are not UTF-8 included) between which
# valid events (None: the next one) are placed, each on its own line.
RAW_PARTS = st.lists(st.one_of(st.binary(max_size=200), st.none()), min_size=1, max_size=10)


def _raw_body(
    tg: Traingate, parts: list[bytes | None], prefix: str
) -> tuple[bytes, dict[str, str]]:
    """The parts joined by newlines, each None an account.updated event of its own account
    (valid alone and in the store); and the text of each valid line, with its account."""
    plan = next(name for name, kind in tg.policies.plans.items() if kind == "consumer")
    valid: dict[str, str] = {}
    chunks: list[bytes] = []
    for index, part in enumerate(parts):
        if part is None:
            line = json.dumps(
                {
                    "type": "account.updated",
                    "event_id": f"{prefix}-{index}",
                    "at": "2024-03-01T12:00:00Z",
                    "account_id": f"{prefix}-account-{index}",
                    "email": f"{index}@example.com",
                    "plan": plan,
                    "organization_id": None,
                }
            )
            valid[line] = f"{prefix}-account-{index}"
            part = line.encode("utf-8")
        chunks.append(part)
    return b"\n".join(chunks), valid


def _file_lines(body: bytes) -> list[tuple[int, str]]:
    """The numbered, non-blank lines of a body as the command line reads a file."""
    text = body.decode("utf-8", errors="surrogateescape")
    lines = enumerate(io.StringIO(text, newline=None), start=1)
    return [(number, line) for number, line in lines if line.strip()]


@RAW
@given(parts=RAW_PARTS)
def test_the_line_parser_takes_any_bytes(tg: Traingate, parts: list[bytes | None]) -> None:
    """Every non-blank line comes back, in order, as an event or a rejection naming its line
    and saying why; no exception escapes; every valid line is an event."""
    body, valid = _raw_body(tg, parts, "raw")
    numbered = _file_lines(body)
    parsed = list(
        parse_lines(
            iter(numbered),
            declared=Declared.of(tg.policies.plans, tg.policies.settings),
            short_hash=tg.keys.short_hasher,
            workers=0,
            inline=INLINE,
            ahead=0,
        )
    )
    assert [item.line for item in parsed] == [number for number, _ in numbered]
    for (_, text), item in zip(numbered, parsed, strict=True):
        if text.rstrip("\r\n") in valid:
            assert isinstance(item, Incoming), item
        if isinstance(item, Rejected):
            assert item.message.strip()


@RAW
@given(parts=RAW_PARTS, media=st.sampled_from(["application/x-ndjson", "application/json"]))
def test_post_events_takes_any_bytes(
    api: Api, parts: list[bytes | None], media: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Raw bytes posted to /v1/events: never a 5xx or a logged traceback. NDJSON keeps every
    valid line (accepted, stored) and rejects only the others, each naming its line; a JSON
    body that is not an array of events is refused whole (400 or 422) and changes nothing."""
    prefix = _prefix()
    with Traingate.open(api.settings) as tg:
        body, valid = _raw_body(tg, parts, prefix)
        before = counts(tg)
    caplog.clear()
    done = api.client.post(
        "/v1/events", content=body, headers={**api.as_role("ingest"), "Content-Type": media}
    )
    assert done.status_code < 500, done.text
    assert [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"] == []
    answer = done.json()
    if media == "application/json":
        assert done.status_code in (400, 422), done.text
        with Traingate.open(api.settings) as tg:
            assert counts(tg) == before
        return
    numbered = _file_lines(body)
    wanted = {n: valid[t.rstrip("\r\n")] for n, t in numbered if t.rstrip("\r\n") in valid}
    assert done.status_code in (200, 422), done.text
    assert answer["accepted"] == len(wanted), answer
    assert answer["accepted"] + answer["rejected"] == len(numbered), answer
    assert not {e["line"] for e in answer["errors"]} & set(wanted)
    with Traingate.open(api.settings) as tg:
        for account in wanted.values():
            assert tg.privacy.answer(account_id=account).known, account
