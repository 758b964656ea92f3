"""The feedback snapshot (SPEC §3): pure, de-identified, de-linked. No I/O here.

A snapshot holds, as known when the report was received: every message of the conversation
with ``at <=`` the report's time, in time order; the conversation's custom_style and preferences
as of that time; the rating, comment, categories and the index of the rated message. Times are
coarsened to the UTC date of the first message. No identifier of account, organization,
conversation, message or report is kept. ``mode`` is the conversation's mode (SPEC §5:
``standard``, ``incognito`` or ``temporary``; a mode links nothing), so that the policy in force
at submission can exclude the report; it is written only when not standard, so standard
snapshots keep their bytes, and reads as standard when absent. Snapshots stored before modes
existed said ``"incognito": true`` for an incognito conversation: they read as mode incognito.

The messages may come from the store and from a lake read at receipt (``merge_messages``): the
snapshot is the same whichever holds them, ordered by (``at``, arrival, message id).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from traingate._core.deid import redact, redact_json, strip_attachment
from traingate._core.events import FeedbackSubmitted
from traingate._core.facts import MessageRow
from traingate._core.timeutil import utc_date
from traingate._errors import EventError

__all__ = ["Snapshot", "merge_messages", "take_snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    date: str
    messages: tuple[dict[str, Any], ...]
    custom_style: Any
    preferences: Any
    rating: str
    comment: str | None
    categories: tuple[str, ...]
    rated_message_index: int
    mode: str = "standard"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "date": self.date,
            "messages": list(self.messages),
            "custom_style": self.custom_style,
            "preferences": self.preferences,
            "rating": self.rating,
            "comment": self.comment,
            "categories": list(self.categories),
            "rated_message_index": self.rated_message_index,
        }
        if self.mode != "standard":
            data["mode"] = self.mode
        return data

    def to_json(self) -> bytes:
        """Canonical bytes: what the vault encrypts."""
        return json.dumps(
            self.to_dict(),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Snapshot:
        raw = json.loads(data)
        return cls(
            date=raw["date"],
            messages=tuple(raw["messages"]),
            custom_style=raw["custom_style"],
            preferences=raw["preferences"],
            rating=raw["rating"],
            comment=raw["comment"],
            categories=tuple(raw["categories"]),
            rated_message_index=int(raw["rated_message_index"]),
            mode=_mode(raw),
        )


def _mode(raw: Mapping[str, Any]) -> str:
    """A stored snapshot's mode: its ``mode``, else incognito for the older ``"incognito":
    true``, else standard."""
    mode = raw.get("mode")
    if isinstance(mode, str):
        return mode
    return "incognito" if raw.get("incognito") is True else "standard"


def merge_messages(
    *, held: Sequence[MessageRow], archived: Sequence[MessageRow]
) -> list[MessageRow]:
    """The store's messages of a conversation (``held``) and those a lake holds of it
    (``archived``), each message once (the store's row when both hold it), in (``at``,
    ``seq``, ``message_id``) order. A lake written by ``traingate lake export`` numbers its
    rows by the store's arrival order, so the two agree on ties."""
    if not archived:
        return list(held)
    seen = {m.message_id for m in held}
    merged = list(held)
    for message in archived:  # a lake row delivered twice counts once too
        if message.message_id not in seen:
            seen.add(message.message_id)
            merged.append(message)
    merged.sort(key=_order)
    return merged


def _order(message: MessageRow) -> tuple[int, int, str]:
    return (message.at, message.seq, message.message_id)


def take_snapshot(
    *,
    report: FeedbackSubmitted,
    messages: Sequence[MessageRow],
    settings: Mapping[str, Any],
    mode: str = "standard",
) -> Snapshot:
    """The snapshot of ``report``, given the conversation's stored messages, its settings as
    of the report's time and its mode. Messages later than the report are left
    out here too."""
    kept = sorted((m for m in messages if m.at <= report.at), key=_order)
    index = next((i for i, m in enumerate(kept) if m.message_id == report.message_id), None)
    if index is None:
        raise EventError(
            "the rated message is not in the conversation at the report's time",
            field="message_id",
            event_id=report.event_id,
        )
    return Snapshot(
        date=utc_date(kept[0].at),
        messages=tuple(
            {
                "role": m.role,
                "content": redact(m.content),
                "attachments": [strip_attachment(a) for a in m.attachments],
            }
            for m in kept
        ),
        custom_style=redact_json(settings.get("custom_style")),
        preferences=redact_json(settings.get("preferences")),
        rating=report.rating,
        comment=redact(report.comment) if report.comment is not None else None,
        categories=tuple(redact(c) for c in report.categories),
        rated_message_index=index,
        mode=mode,
    )
