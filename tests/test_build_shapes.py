"""Dataset shapes (issue 16): chat, KTO and OpenAI rows made from the same de-identified records,
by a vectorised conversion that agrees with a plain per-record reference; what a shape leaves
out is counted under its vocabulary reason; nothing that leaves in any shape, the card or the
Croissant file names anyone (SPEC §3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import Events, jsonl
from tests.support import EMAIL, FORBIDDEN, TIME, deid_history, leaks, read_dataset
from traingate import _datasets as build
from traingate._core.policy.model import reasons
from traingate._core.timeutil import parse_instant
from traingate._datasets.records import RECORD_SCHEMA
from traingate._datasets.shapes import SHAPES, ShapeTally, as_shape, shape_records
from traingate._errors import BuildError
from traingate._facade import Traingate

T = Events.t

SAID = reasons().shape
OPENAI_ROLES = {"system", "developer", "user", "assistant", "tool"}


def attachment_text(attachment: dict[str, Any]) -> str:
    if attachment["omitted"]:
        return f"[attachment omitted: {attachment['source']}]"
    return f"[attachment: {attachment['name'] or ''}]\n{attachment['content'] or ''}"


def chat_message(message: dict[str, Any]) -> dict[str, Any]:
    """The reference: docs/builds.md's words, record by record."""
    parts = [message["content"] or ""] + [attachment_text(a) for a in message["attachments"]]
    return {"role": message["role"], "content": "\n\n".join(parts)}


def reference(shape: str, records: list[dict[str, Any]]) -> tuple[list[Any], dict[str, int]]:
    rows: list[Any] = []
    left: dict[str, int] = {}

    def leave(reason: str) -> None:
        left[reason] = left.get(reason, 0) + 1

    for record in records:
        messages = [chat_message(m) for m in record["messages"]]
        if shape == "chat":
            rows.append({"messages": messages})
        elif shape == "openai":
            if any(m["role"] == "assistant" for m in messages):
                rows.append({"messages": messages})
            else:
                leave(SAID.no_assistant)
        elif record["kind"] != "feedback":
            leave(SAID.not_feedback)
        else:
            index = record["rated_message_index"]
            inside = index is not None and 0 <= index < len(messages)
            if not inside or messages[index]["role"] != "assistant":
                leave(SAID.rated_not_assistant)
            else:
                rows.append(
                    {
                        "prompt": messages[:index],
                        "completion": [messages[index]],
                        "label": record["rating"] == "up",
                    }
                )
    return rows, left


def msg(role: str, content: str | None, *attachments: dict[str, Any]) -> dict[str, Any]:
    return {"role": role, "content": content, "attachments": list(attachments)}


UPLOAD = {"source": "upload", "name": "notes.txt", "content": "line", "omitted": False}
DRIVE = {"source": "google_drive", "name": None, "content": None, "omitted": True}


def record(kind: str, messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"record_id": "r", "kind": kind, "basis": "b", "date": "2024-05-01",
            "messages": messages, **fields}  # fmt: skip


RECORDS = [
    record("conversation", [msg("user", "hi", UPLOAD, DRIVE), msg("assistant", "hello")]),
    record("conversation", [msg("user", "alone")]),
    record("feedback", [msg("user", "q"), msg("assistant", "a"), msg("user", "more")],
           rating="up", rated_message_index=1),
    record("feedback", [msg("user", "q"), msg("assistant", "a")], rating="down",
           rated_message_index=0),
    record("feedback", [msg("user", "q"), msg("assistant", None)], rating="down",
           rated_message_index=1),
]  # fmt: skip


def batch(records: list[dict[str, Any]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(records, schema=RECORD_SCHEMA)


@pytest.mark.parametrize(
    ("shape", "rows", "left_out"),
    [
        ("records", 5, {}),
        ("chat", 5, {}),
        ("kto", 2, {SAID.not_feedback: 2, SAID.rated_not_assistant: 1}),
        ("openai", 4, {SAID.no_assistant: 1}),
    ],
)
def test_what_each_shape_makes_of_the_records(
    shape: str, rows: int, left_out: dict[str, int]
) -> None:
    shaped = shape_records(batch(RECORDS), shape=as_shape(shape))
    assert shaped.rows.num_rows == rows
    assert dict(shaped.left_out) == left_out


def test_attachments_are_written_into_the_content() -> None:
    rows = shape_records(batch(RECORDS[:1]), shape="chat").rows.to_pylist()
    assert rows[0]["messages"][0] == {
        "role": "user",
        "content": "hi\n\n[attachment: notes.txt]\nline\n\n[attachment omitted: google_drive]",
    }


def test_kto_rows_are_trl_conversational_unpaired_preference() -> None:
    rows = shape_records(batch(RECORDS), shape="kto").rows.to_pylist()
    assert rows[0] == {
        "prompt": [{"role": "user", "content": "q"}],
        "completion": [{"role": "assistant", "content": "a"}],
        "label": True,
    }
    assert rows[1]["label"] is False and rows[1]["completion"][0]["content"] == ""


def test_reasons_come_from_the_vocabulary() -> None:
    assert len({SAID.not_feedback, SAID.rated_not_assistant, SAID.no_assistant}) == 3


def test_an_unknown_shape_is_refused() -> None:
    with pytest.raises(BuildError, match="unknown shape 'sft'; expected one of records, chat"):
        as_shape("sft")
    assert build.SHAPES == SHAPES  # the command line's list, kept without importing pyarrow


text = st.text(alphabet="ab @.\n", max_size=6)
attachments = st.lists(
    st.fixed_dictionaries({"source": st.sampled_from(["upload", "gmail"]),
                           "name": st.none() | text, "content": st.none() | text,
                           "omitted": st.booleans()}), max_size=2)  # fmt: skip
messages = st.lists(
    st.builds(lambda r, c, a: msg(r, c, *a), st.sampled_from(["user", "assistant"]),
              st.none() | text, attachments),
    min_size=1,
    max_size=4,
)  # fmt: skip
records = st.lists(
    st.one_of(
        messages.map(lambda ms: record("conversation", ms)),
        messages.flatmap(
            lambda ms: st.builds(
                lambda i, r: record("feedback", ms, rated_message_index=i, rating=r),
                st.integers(0, len(ms) - 1),
                st.sampled_from(["up", "down"]),
            )
        ),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(records, st.integers(0, 8), st.sampled_from(["chat", "kto", "openai"]))
def test_the_vectorised_shapes_equal_the_reference(
    items: list[dict[str, Any]], cut: int, shape: str
) -> None:
    """Any records, in a batch sliced anywhere (the writer's batches are slices), give the
    rows and the reasons of the per-record reference; rows + left out = records."""
    whole = batch(items)
    tally = ShapeTally(shape=as_shape(shape))
    rows: list[Any] = []
    for piece in (whole.slice(0, cut), whole.slice(cut)):
        shaped = shape_records(piece, shape=as_shape(shape))
        tally = tally.add(shaped)
        rows += shaped.rows.to_pylist()
    expected_rows, expected_left = reference(shape, items)
    assert rows == expected_rows
    assert dict(tally.left_out) == expected_left
    section = tally.section()
    assert section["rows"] + section["left_out"]["records"] == len(items)


# -- the leak scan of SPEC §3 over every shape, the card and the Croissant file ---------------


@pytest.mark.parametrize("record_format", ["parquet", "jsonl"])
def test_no_ids_emails_or_times_leave_in_any_shape(
    tg: Traingate, tmp_path: Path, record_format: str
) -> None:
    summary = tg.events.ingest(jsonl(deid_history()))
    assert summary.rejected == 0, summary.errors
    left_out: dict[str, int] = {}
    for purpose in tg.policy.purposes:
        for shape in SHAPES:
            out = tmp_path / f"{purpose}-{shape}"
            result = tg.datasets.build(
                purpose=purpose, out=out, as_of=parse_instant(T(30)), format=record_format,
                shape=shape,
            )  # fmt: skip
            assert leaks(read_dataset(out)) == [], (purpose, shape)
            for path in (out / "data").iterdir():
                raw = path.read_bytes().decode("utf-8", errors="replace")
                assert not [v for v in FORBIDDEN if v in raw], path
                if record_format == "jsonl":
                    assert not EMAIL.findall(raw), path
            # the documents: no id, no e-mail, no time but the build's own as-of
            for name in ("README.md", "croissant.json", "manifest.json"):
                raw = (out / name).read_text().replace(result.manifest["as_of"], "")
                assert not [v for v in FORBIDDEN if v in raw], (name, shape)
                assert not EMAIL.findall(raw), (name, shape)
                if name != "manifest.json":  # the manifest's policy ranges carry instants
                    assert not TIME.findall(raw), (name, shape, TIME.findall(raw))
            for reason, n in result.manifest["shape"]["left_out"]["by_reason"].items():
                left_out[reason] = left_out.get(reason, 0) + n
            assert tg.datasets.verify(path=out).ok
    # not vacuous: the scenario's report on a user message is left out of kto, by its reason
    assert left_out.get(SAID.rated_not_assistant, 0) > 0
    attachment_texts = [
        m["content"]
        for p in tg.policy.purposes
        for row in read_dataset(tmp_path / f"{p}-chat")
        for m in row["messages"]
    ]
    assert any("[attachment omitted: gmail]" in t for t in attachment_texts)
    assert any("[attachment: cv of [email]]\nreach me at [email]" in t for t in attachment_texts)


def test_a_records_build_keeps_its_manifest_files_to_the_data_parts(
    tg: Traingate, tmp_path: Path
) -> None:
    tg.events.ingest(jsonl(deid_history()))
    result = tg.datasets.build(purpose=next(iter(tg.policy.purposes)), out=tmp_path / "d",
                              as_of=parse_instant(T(30)))  # fmt: skip
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert all(set(f) == {"path", "rows", "sha256"} for f in manifest["files"])
    assert all(f["path"].startswith("data/part-") for f in manifest["files"])
    assert [d["path"] for d in manifest["documents"]] == ["README.md", "croissant.json"]
    assert manifest["shape"]["name"] == "records"
    assert (
        manifest["shape"]["rows"]
        == manifest["counts"]["records"]
        == len(read_dataset(tmp_path / "d"))
    )
    assert result.manifest == manifest
