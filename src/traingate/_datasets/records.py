"""Dataset records (SPEC §4): their Arrow schema, their ids, and their assembly. Pure.

A record is one item of a dataset: a conversation under one basis (its eligible messages), or
one feedback report (its snapshot). ``record_id`` is an HMAC-SHA256 with the signing key of the
item (conversation id and basis, or the vault's record key), so it is stable for the same item
and store and says nothing about the item to anyone without the key.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from traingate._core.deid import redact_json_text
from traingate._core.report import Snapshot
from traingate._keys import PreparedHmac

__all__ = [
    "ATTACHMENT_TYPE",
    "ENGINE_SCHEMA",
    "MESSAGE_TYPE",
    "RECORD_FIELDS",
    "RECORD_SCHEMA",
    "LineageItem",
    "conversation_item_key",
    "conversation_record_id",
    "conversation_records",
    "feedback_record",
    "feedback_record_id",
    "group_messages",
    "report_item_key",
    "settings_text",
]

ATTACHMENT_TYPE = pa.struct(
    [
        pa.field("source", pa.string()),
        pa.field("name", pa.string()),
        pa.field("content", pa.string()),
        pa.field("omitted", pa.bool_()),
    ]
)
MESSAGE_TYPE = pa.struct(
    [
        pa.field("role", pa.string()),
        pa.field("content", pa.string()),
        pa.field("attachments", pa.list_(ATTACHMENT_TYPE)),
    ]
)
RECORD_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("basis", pa.string(), nullable=False),
        pa.field("date", pa.string(), nullable=False),
        pa.field("messages", pa.list_(MESSAGE_TYPE), nullable=False),
        pa.field("custom_style", pa.string()),
        pa.field("preferences", pa.string()),
        pa.field("rating", pa.string()),
        pa.field("comment", pa.string()),
        pa.field("categories", pa.list_(pa.string())),
        pa.field("rated_message_index", pa.int64()),
    ]
)
RECORD_FIELDS = tuple(RECORD_SCHEMA.names)

# What an engine hands the builder for conversation records: the record minus its id, plus
# the conversation id (for the record id and lineage; it never reaches a file).
ENGINE_SCHEMA = pa.schema(
    [
        pa.field("conversation_id", pa.string(), nullable=False),
        pa.field("basis", pa.string(), nullable=False),
        pa.field("date", pa.string(), nullable=False),
        pa.field("messages", pa.list_(MESSAGE_TYPE), nullable=False),
        pa.field("message_count", pa.int64(), nullable=False),
        pa.field("custom_style", pa.string()),
        pa.field("preferences", pa.string()),
    ]
)

_RECORD_DOMAIN = b"traingate/record/v1\x00"


@dataclass(frozen=True, slots=True)
class LineageItem:
    """What lineage keeps of one record: keyed hashes only."""

    item_key: str
    kind: str
    record_id: str
    messages: int


def _mac(key: bytes, *parts: str) -> str:
    payload = _RECORD_DOMAIN + "\x00".join(parts).encode()
    return hmac.digest(key, payload, "sha256").hex()


class _Macs:
    """Record ids and lineage keys in bulk: ``_mac`` from a prepared HMAC state."""

    def __init__(self, key: bytes) -> None:
        self._mac = PreparedHmac(key)

    def hex(self, *parts: str) -> str:
        return self._mac.digest(_RECORD_DOMAIN + "\x00".join(parts).encode()).hex()


def conversation_record_id(signing_key: bytes, conversation_id: str, basis: str) -> str:
    return _mac(signing_key, "conversation", conversation_id, basis)


def feedback_record_id(signing_key: bytes, record_key: str) -> str:
    return _mac(signing_key, "feedback", record_key)


def conversation_item_key(signing_key: bytes, conversation_id: str) -> str:
    """The lineage key of a conversation (every basis of it)."""
    return _mac(signing_key, "lineage", "conversation", conversation_id)


def report_item_key(signing_key: bytes, record_key: str) -> str:
    """The lineage key of a feedback report, from the vault's record key."""
    return _mac(signing_key, "lineage", "report", record_key)


def settings_text(fields: str | None, name: str) -> str | None:
    """The record's text of setting ``name`` from the stored settings update that last carried
    it (``fields`` is that update's JSON object), de-identified; None when unset or null."""
    if fields is None:
        return None
    return redact_json_text(json.loads(fields).get(name))


def group_messages(rows: pa.Table) -> pa.RecordBatch:
    """Eligible messages, one per row in record order (``conversation_id``, ``basis``,
    ``date`` of the message, ``message`` struct, ``style_fields``, ``prefs_fields``), cut into
    conversation records (``ENGINE_SCHEMA``): one per run of equal (conversation, basis); its
    date is its first message's; its settings become de-identified JSON text."""
    if rows.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=ENGINE_SCHEMA)
    rows = rows.combine_chunks()
    n = rows.num_rows
    conversation = rows.column("conversation_id")
    basis = rows.column("basis")
    changed = pc.or_(
        pc.not_equal(conversation.slice(1), conversation.slice(0, n - 1)),
        pc.not_equal(basis.slice(1), basis.slice(0, n - 1)),
    )
    starts = pa.concat_arrays(
        [pa.array([0], pa.int32()), pc.cast(pc.add(pc.indices_nonzero(changed), 1), pa.int32())]
    )
    offsets = cast(pa.Int32Array, pa.concat_arrays([starts, pa.array([n], pa.int32())]))
    messages = pa.ListArray.from_arrays(
        offsets, rows.column("message").combine_chunks().cast(MESSAGE_TYPE)
    )
    first = rows.take(starts)
    style = [settings_text(f, "custom_style") for f in first.column("style_fields").to_pylist()]
    prefs = [settings_text(f, "preferences") for f in first.column("prefs_fields").to_pylist()]
    arrays = [
        first.column("conversation_id").combine_chunks(),
        first.column("basis").combine_chunks(),
        first.column("date").combine_chunks(),
        messages,
        pc.cast(pc.list_value_length(messages), pa.int64()),
        pa.array(style, pa.string()),
        pa.array(prefs, pa.string()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=ENGINE_SCHEMA)


def conversation_records(
    batch: pa.RecordBatch, *, signing_key: bytes
) -> tuple[pa.RecordBatch, list[LineageItem]]:
    """An engine batch (``ENGINE_SCHEMA``) as dataset records (``RECORD_SCHEMA``), with the
    lineage items they hold."""
    conversations = [str(c) for c in batch.column("conversation_id").to_pylist()]
    bases = [str(b) for b in batch.column("basis").to_pylist()]
    counts = [int(n or 0) for n in batch.column("message_count").to_pylist()]
    macs = _Macs(signing_key)
    record_ids = [macs.hex("conversation", c, b) for c, b in zip(conversations, bases, strict=True)]
    item_keys: dict[str, str] = {}
    items = []
    for conversation, record_id, count in zip(conversations, record_ids, counts, strict=True):
        key = item_keys.get(conversation)
        if key is None:
            key = item_keys[conversation] = macs.hex("lineage", "conversation", conversation)
        items.append(
            LineageItem(item_key=key, kind="conversation", record_id=record_id, messages=count)
        )
    n = batch.num_rows
    arrays = [
        pa.array(record_ids, pa.string()),
        pa.array(["conversation"] * n, pa.string()),
        batch.column("basis"),
        batch.column("date"),
        batch.column("messages"),
        batch.column("custom_style"),
        batch.column("preferences"),
        pa.nulls(n, pa.string()),
        pa.nulls(n, pa.string()),
        pa.nulls(n, pa.list_(pa.string())),
        pa.nulls(n, pa.int64()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA), items


def feedback_record(
    *, signing_key: bytes, record_key: str, basis: str, snapshot: Snapshot
) -> tuple[dict[str, Any], LineageItem]:
    """One feedback report's record (a dict in ``RECORD_SCHEMA`` order) and its lineage item.
    The snapshot is already de-identified; its settings are written as the same JSON text as a
    conversation record's."""
    record_id = feedback_record_id(signing_key, record_key)
    record = {
        "record_id": record_id,
        "kind": "feedback",
        "basis": basis,
        "date": snapshot.date,
        "messages": [dict(m) for m in snapshot.messages],
        "custom_style": redact_json_text(snapshot.custom_style),
        "preferences": redact_json_text(snapshot.preferences),
        "rating": snapshot.rating,
        "comment": snapshot.comment,
        "categories": list(snapshot.categories),
        "rated_message_index": snapshot.rated_message_index,
    }
    item = LineageItem(
        item_key=report_item_key(signing_key, record_key),
        kind="feedback",
        record_id=record_id,
        messages=len(snapshot.messages),
    )
    return record, item
