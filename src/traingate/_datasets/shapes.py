"""Dataset shapes: the same de-identified records (``RECORD_SCHEMA``) as the rows a training
library reads as they are. Pure and vectorised (``pyarrow.compute``): a batch in, a batch out.

- ``records``: the records themselves (SPEC §4), unchanged.
- ``chat``: one row per record, ``{"messages": [{"role", "content"}, ...]}`` (TRL's
  conversational language-modeling format).
- ``kto``: one row per feedback record whose rated message is the assistant's: ``prompt`` (the
  messages before it), ``completion`` (the rated message, a list of one) and ``label`` (true for
  a thumbs up): TRL's conversational unpaired-preference format.
- ``openai``: one row per record holding an assistant message, ``{"messages": [{"role",
  "content"}, ...]}``: OpenAI's chat fine-tuning JSONL, with no key that format does not allow.

A message's attachments leave inside its content (every shape but ``records``): after the
message's text, each attachment in order, separated by a blank line, as
``[attachment: NAME]`` and a newline and its content (an upload, whose name and content the
record already holds de-identified), or as ``[attachment omitted: SOURCE]`` (an integration,
whose name and content never leave; SPEC §3). A record that a shape has no row for is counted
under a reason of ``vocabulary.toml`` (``[reasons.shape]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from traingate._core.policy.model import ShapeReasons, reasons
from traingate._datasets.records import RECORD_SCHEMA
from traingate._errors import BuildError

__all__ = [
    "CHAT_MESSAGE",
    "SHAPES",
    "Shape",
    "ShapeTally",
    "Shaped",
    "as_shape",
    "row_messages",
    "shape_records",
    "shape_schema",
]

Shape = Literal["records", "chat", "kto", "openai"]
SHAPES: tuple[Shape, ...] = ("records", "chat", "kto", "openai")

CHAT_MESSAGE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
_CHAT = pa.list_(CHAT_MESSAGE)
_SCHEMAS: dict[str, pa.Schema] = {
    "records": RECORD_SCHEMA,
    "chat": pa.schema([pa.field("messages", _CHAT, nullable=False)]),
    "kto": pa.schema(
        [
            pa.field("prompt", _CHAT, nullable=False),
            pa.field("completion", _CHAT, nullable=False),
            pa.field("label", pa.bool_(), nullable=False),
        ]
    ),
    "openai": pa.schema([pa.field("messages", _CHAT, nullable=False)]),
}
# The columns of a shape's rows that hold messages (counted by ``row_messages``).
_MESSAGE_COLUMNS: dict[str, tuple[str, ...]] = {
    "records": ("messages",),
    "chat": ("messages",),
    "kto": ("prompt", "completion"),
    "openai": ("messages",),
}
_ASSISTANT = "assistant"  # SPEC §2 role
_UP = "up"  # SPEC §2 rating


def as_shape(text: str) -> Shape:
    """``text`` as a shape, or BuildError naming the shapes."""
    for known in SHAPES:
        if text == known:
            return known
    raise BuildError(f"unknown shape {text!r}; expected one of {', '.join(SHAPES)}")


def shape_schema(shape: Shape) -> pa.Schema:
    """The Arrow schema of a shape's rows."""
    return _SCHEMAS[shape]


def row_messages(shape: str, batch: pa.RecordBatch | pa.Table) -> int:
    """How many messages the rows of ``batch`` (of ``shape``) hold."""
    return sum(
        int(pc.sum(pc.fill_null(pc.list_value_length(batch.column(name)), 0)).as_py() or 0)
        for name in _MESSAGE_COLUMNS[shape]
    )


@dataclass(frozen=True, slots=True)
class Shaped:
    """A batch in a shape, and how many records of the batch it has no row for, by reason."""

    rows: pa.RecordBatch
    left_out: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ShapeTally:
    """What a build's shape made of its records: rows, messages in them, left out by reason."""

    shape: Shape = "records"
    rows: int = 0
    messages: int = 0
    left_out: Mapping[str, int] = field(default_factory=dict)

    def add(self, shaped: Shaped) -> ShapeTally:
        merged = dict(self.left_out)
        for reason, n in shaped.left_out.items():
            merged[reason] = merged.get(reason, 0) + n
        return ShapeTally(
            shape=self.shape,
            rows=self.rows + shaped.rows.num_rows,
            messages=self.messages + row_messages(self.shape, shaped.rows),
            left_out=merged,
        )

    def section(self) -> dict[str, Any]:
        """The manifest's ``shape``."""
        by_reason = {reason: n for reason, n in sorted(self.left_out.items()) if n}
        return {
            "name": self.shape,
            "rows": self.rows,
            "messages": self.messages,
            "left_out": {"records": sum(by_reason.values()), "by_reason": by_reason},
        }


def _offsets(lists: Any) -> Any:
    """The offsets of ``lists`` from 0 (a sliced list array's start elsewhere)."""
    offsets = lists.offsets
    return pc.subtract(offsets, offsets[0])


def _attachment_text(attachments: Any) -> Any:
    """Per message: its attachments as text (see the module), "" when it has none."""
    flat: Any = pc.list_flatten(attachments)
    source = pc.fill_null(pc.struct_field(flat, "source"), "")
    name = pc.fill_null(pc.struct_field(flat, "name"), "")
    content = pc.fill_null(pc.struct_field(flat, "content"), "")
    omitted = pc.fill_null(pc.struct_field(flat, "omitted"), False)
    kept = pc.binary_join_element_wise("[attachment: ", name, "]\n", content, "")
    gone = pc.binary_join_element_wise("[attachment omitted: ", source, "]", "")
    texts = pc.if_else(omitted, gone, kept)
    return pc.binary_join(pa.ListArray.from_arrays(_offsets(attachments), texts), "\n\n")


def _chat_messages(batch: pa.RecordBatch) -> tuple[Any, Any]:
    """The records' messages as role/content lists, and the same messages flat."""
    messages: Any = batch.column("messages")
    flat: Any = pc.list_flatten(messages)
    role: Any = pc.struct_field(flat, "role")
    content: Any = pc.fill_null(pc.struct_field(flat, "content"), "")
    attachments: Any = pc.struct_field(flat, "attachments")
    has = pc.greater(pc.fill_null(pc.list_value_length(attachments), 0), pa.scalar(0))
    if pc.any(has).as_py():  # only the messages with attachments are joined anew
        which = pc.indices_nonzero(has)
        joined = pc.binary_join_element_wise(
            pc.take(content, which), _attachment_text(pc.take(attachments, which)), "\n\n"
        )
        content = pc.replace_with_mask(content, has, joined)
    chat = pa.StructArray.from_arrays([role, content], fields=list(CHAT_MESSAGE))
    return pa.ListArray.from_arrays(_offsets(messages), chat, type=_CHAT), chat


def _kto(batch: pa.RecordBatch, said: ShapeReasons) -> Shaped:
    kind: Any = batch.column("kind")
    feedback = batch.filter(pc.equal(kind, pa.scalar("feedback")))
    conversations = batch.num_rows - feedback.num_rows
    lists, flat = _chat_messages(feedback)
    lengths: Any = pc.list_value_length(lists)
    starts: Any = pc.cast(lists.offsets.slice(0, feedback.num_rows), pa.int64())
    index: Any = feedback.column("rated_message_index")
    rated: Any = pc.fill_null(index, pa.scalar(-1))
    inside: Any = pc.and_(
        pc.greater_equal(rated, pa.scalar(0)), pc.less(rated, pc.cast(lengths, pa.int64()))
    )
    at: Any = pc.if_else(inside, pc.add(starts, rated), 0)
    roles: Any = pc.struct_field(flat, "role")
    rated_role: Any = pc.take(roles, at) if len(flat) else pa.nulls(feedback.num_rows, pa.string())
    keep: Any = pc.fill_null(
        pc.and_(inside, pc.equal(rated_role, pa.scalar(_ASSISTANT))), pa.scalar(False)
    )
    kept = int(pc.sum(keep).as_py() or 0)
    # prompt: every message before the rated one, of the rows kept
    parent = pc.list_parent_indices(lists)
    position = pc.subtract(pa.array(range(len(flat)), pa.int64()), pc.take(starts, parent))
    before = pc.and_(pc.less(position, pc.take(rated, parent)), pc.take(keep, parent))
    prompt_lengths = pc.if_else(keep, pc.cast(rated, pa.int32()), 0).filter(keep)
    prompt_offsets = pa.concat_arrays(
        [pa.array([0], pa.int32()), pc.cumulative_sum(prompt_lengths).cast(pa.int32())]
    )
    prompt = pa.ListArray.from_arrays(prompt_offsets, flat.filter(before), type=_CHAT)
    completion = pa.ListArray.from_arrays(
        pa.array(range(kept + 1), pa.int32()), pc.take(flat, at.filter(keep)), type=_CHAT
    )
    rating: Any = feedback.column("rating")
    label = pc.fill_null(pc.equal(rating.filter(keep), pa.scalar(_UP)), pa.scalar(False))
    rows = pa.RecordBatch.from_arrays([prompt, completion, label], schema=_SCHEMAS["kto"])
    left_out = {
        said.not_feedback: conversations,
        said.rated_not_assistant: feedback.num_rows - kept,
    }
    return Shaped(rows=rows, left_out={r: n for r, n in left_out.items() if n})


def _openai(batch: pa.RecordBatch, said: ShapeReasons) -> Shaped:
    lists, flat = _chat_messages(batch)
    parent: Any = pc.list_parent_indices(lists)
    roles: Any = pc.struct_field(flat, "role")
    speaking = pc.filter(parent, pc.equal(roles, pa.scalar(_ASSISTANT)))
    keep = pc.is_in(pa.array(range(batch.num_rows), pa.int64()), value_set=pc.unique(speaking))
    if not pc.all(keep).as_py():
        lists = lists.filter(keep)
    rows = pa.RecordBatch.from_arrays([lists], schema=_SCHEMAS["openai"])
    missing = batch.num_rows - rows.num_rows
    return Shaped(rows=rows, left_out={said.no_assistant: missing} if missing else {})


def shape_records(batch: pa.RecordBatch, *, shape: Shape) -> Shaped:
    """Records (``RECORD_SCHEMA``) as rows of ``shape``, with what was left out by reason."""
    if shape == "records":
        return Shaped(rows=batch)
    said = reasons().shape
    if shape == "chat":
        rows = pa.RecordBatch.from_arrays([_chat_messages(batch)[0]], schema=_SCHEMAS["chat"])
        return Shaped(rows=rows)
    if shape == "kto":
        return _kto(batch, said)
    if shape == "openai":
        return _openai(batch, said)
    raise BuildError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
