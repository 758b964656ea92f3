"""The feedback snapshot (SPEC §3): pure, de-identified, de-linked. No I/O here.

A snapshot holds, as known when the report was received: every message of the conversation
with ``at <=`` the report's time, in time order; the conversation's custom_style and preferences
as of that time; the rating, comment, categories and the index of the rated message. Times are
coarsened to the UTC date of the first message. No identifier of account, organization,
conversation, message or report is kept. ``incognito`` says whether the conversation was marked
incognito (a boolean links nothing), so that the policy in force at submission can exclude the
report; it is written only when true, so other snapshots keep their bytes, and reads as false
when absent (snapshots stored before it existed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from traingate.deid import redact, redact_json, strip_attachment
from traingate.errors import EventError
from traingate.events import FeedbackSubmitted
from traingate.store.store import MessageRow
from traingate.timeutil import utc_date

__all__ = ["Snapshot", "take_snapshot"]


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
    incognito: bool = False

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
        if self.incognito:
            data["incognito"] = True
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
            incognito=raw.get("incognito", False) is True,
        )


def take_snapshot(
    *,
    report: FeedbackSubmitted,
    messages: Sequence[MessageRow],
    settings: Mapping[str, Any],
    incognito: bool = False,
) -> Snapshot:
    """The snapshot of ``report``, given the conversation's stored messages, its settings as
    of the report's time and whether it is incognito. Messages later than the report are left
    out here too."""
    kept = sorted((m for m in messages if m.at <= report.at), key=lambda m: (m.at, m.seq))
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
        incognito=incognito,
    )
