"""SPEC §2 events: pydantic models, strict validation and line parsing.

This module checks what one event says on its own (shape, types, times, plans). What an event
means against what is already stored (ownership, deletions, reused ids) is checked by the store's
ingest (``traingate._ingest``). Plans and consent settings come from the policies in force:
``parse_event(..., plans=policies.plans, settings=policies.settings)``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from traingate._core.policy.model import Mode
from traingate._core.timeutil import parse_instant
from traingate._errors import EventError, TimestampError

__all__ = [
    "EVENT_TYPES",
    "AccountDeleted",
    "AccountUpdated",
    "Attachment",
    "ConsentUpdated",
    "ConversationDeleted",
    "ConversationUpdated",
    "Event",
    "FeedbackSubmitted",
    "MessageCreated",
    "ParsedEvent",
    "SafetyCleared",
    "SafetyFlagged",
    "canonical_json",
    "parse_event",
    "parse_line",
]


def _instant(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string")
    try:
        return parse_instant(value)
    except TimestampError as exc:
        raise ValueError(str(exc)) from None


Instant = Annotated[int, BeforeValidator(_instant)]
Id = Annotated[str, Field(min_length=1, max_length=512)]
Text = Annotated[str, Field(max_length=10_000_000)]
MAX_DEPTH = 64


def _shallow(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form JSON nests at most ``MAX_DEPTH`` levels: deeper values would break the
    recursive code that redacts and writes them, in every later build."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nests deeper than {MAX_DEPTH} levels of objects and arrays")
        children = item.values() if isinstance(item, dict) else item
        assert isinstance(children, Iterable)
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_shallow)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _EventBase(_Model):
    event_id: Id
    at: Instant


class Attachment(_Model):
    attachment_id: Id
    source: Annotated[str, Field(min_length=1, max_length=256)]
    name: Text | None = None
    content: Text | None = None


class AccountUpdated(_EventBase):
    type: Literal["account.updated"]
    account_id: Id
    email: Annotated[str, Field(max_length=1024)]
    plan: Annotated[str, Field(min_length=1, max_length=64)]
    organization_id: Id | None = None


class AccountDeleted(_EventBase):
    type: Literal["account.deleted"]
    account_id: Id


class ConsentUpdated(_EventBase):
    type: Literal["consent.updated"]
    scope: Literal["account", "organization"]
    account_id: Id | None = None
    organization_id: Id | None = None
    # Any name: whether a configured policy declares it is checked by parse_event (SPEC §5).
    setting: Annotated[str, Field(min_length=1, max_length=256)]
    granted: bool
    source: Annotated[str, Field(min_length=1, max_length=256)]

    @property
    def subject(self) -> str:
        """The account or organization whose consent this is."""
        subject = self.account_id if self.scope == "account" else self.organization_id
        assert subject is not None  # guaranteed by parse_event
        return subject


class ConversationUpdated(_EventBase):
    type: Literal["conversation.updated"]
    conversation_id: Id
    account_id: Id
    custom_style: JsonObject | None = None
    preferences: JsonObject | None = None
    title: Text | None = None
    # SPEC §5: the conversation's mode, set by the first accepted event naming the conversation
    # (checked at ingest). ``incognito: true`` is ``mode: incognito``, false is standard.
    mode: Mode | None = None
    incognito: bool | None = None

    @property
    def incognito_mode(self) -> str:
        """The mode ``incognito`` stands for."""
        return "incognito" if self.incognito else "standard"

    @property
    def given_mode(self) -> tuple[str, str] | None:
        """(the mode this event gives, the field that gave it), or None when it gives none."""
        if self.mode is not None:
            return self.mode, "mode"
        if self.incognito is not None:
            return self.incognito_mode, "incognito"
        return None


class ConversationDeleted(_EventBase):
    type: Literal["conversation.deleted"]
    conversation_id: Id
    account_id: Id


class MessageCreated(_EventBase):
    type: Literal["message.created"]
    conversation_id: Id
    message_id: Id
    account_id: Id
    role: Literal["user", "assistant"]
    content: Text
    attachments: list[Attachment] = Field(default_factory=list, max_length=1000)


class FeedbackSubmitted(_EventBase):
    type: Literal["feedback.submitted"]
    feedback_id: Id
    account_id: Id
    conversation_id: Id
    message_id: Id
    rating: Literal["up", "down"]
    comment: Text | None = None
    categories: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=1000
    )


class SafetyFlagged(_EventBase):
    type: Literal["safety.flagged"]
    flag_id: Id
    conversation_id: Id
    policy: Literal["usage_policy"]
    reason: Text | None = None


class SafetyCleared(_EventBase):
    type: Literal["safety.cleared"]
    flag_id: Id


AnyEvent = (
    AccountUpdated
    | AccountDeleted
    | ConsentUpdated
    | ConversationUpdated
    | ConversationDeleted
    | MessageCreated
    | FeedbackSubmitted
    | SafetyFlagged
    | SafetyCleared
)
Event = Annotated[AnyEvent, Field(discriminator="type")]
_EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(Event)

EVENT_TYPES: tuple[str, ...] = (
    "account.updated",
    "account.deleted",
    "consent.updated",
    "conversation.updated",
    "conversation.deleted",
    "message.created",
    "feedback.submitted",
    "safety.flagged",
    "safety.cleared",
)


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """A valid event with its canonical body (the identity used for idempotency)."""

    event: AnyEvent
    body: str


def canonical_json(value: object) -> str:
    """The one text of a JSON value: sorted keys, no spaces, UTF-8 kept."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):  # integers beyond 64 bits
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is beyond the range of a double")
    return value


# NUL and lone surrogates: no PostgreSQL text column holds NUL and no UTF-8 holds a lone
# surrogate, so events carrying them are rejected on every backend alike.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_text(value: object, path: str) -> tuple[str, str] | None:
    """The field path and problem of the first string (key or value) holding NUL or a lone
    surrogate, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return path, "contains a NUL character (\\u0000), which traingate does not store"
        if _SURROGATE.search(value):
            return path, "contains a lone surrogate (\\ud800-\\udfff): not valid Unicode"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            found = _bad_text(key, inner) if isinstance(key, str) else None
            found = found or _bad_text(item, inner)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _bad_text(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _explain(error: Mapping[str, Any]) -> tuple[str, str]:
    loc = tuple(error.get("loc", ()))
    kind = error.get("type", "")
    # Drop the union tag pydantic puts first (the event type) and validator function names.
    if loc and isinstance(loc[0], str) and loc[0] in EVENT_TYPES:
        loc = loc[1:]
    loc = tuple(part for part in loc if not (isinstance(part, str) and "[" in part))
    field = _field_path(loc) or "type"
    if kind == "union_tag_invalid":
        return "type", f"unknown event type; expected one of {', '.join(EVENT_TYPES)}"
    if kind == "union_tag_not_found":
        return "type", "missing; every event needs a type"
    if kind == "missing":
        return field, "is required"
    if kind == "extra_forbidden":
        return field, "is not a field of this event type"
    message = str(error.get("msg", "is invalid"))
    message = message.removeprefix("Value error, ")
    return field, message[0].lower() + message[1:] if message else "is invalid"


def parse_event(
    raw: object,
    *,
    plans: Mapping[str, str],
    settings: Collection[str] | None = None,
    line: int | None = None,
) -> ParsedEvent:
    """Validate one decoded JSON value as an event. ``plans`` maps plan name to its class
    (``consumer`` or ``commercial``); ``settings`` are the consent settings the policies
    declare (None: any). Raises EventError naming line, event_id and field."""
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    event_id = event_id if isinstance(event_id, str) else None
    if event_id is not None and not event_id.isascii() and _SURROGATE.search(event_id):
        event_id = event_id.encode("utf-8", "backslashreplace").decode()  # printable in errors

    def fail(field: str | None, message: str) -> EventError:
        return EventError(message, field=field, event_id=event_id, line=line)

    if not isinstance(raw, dict):
        raise fail(None, "an event must be a JSON object")
    try:
        event = _EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        field, message = _explain(exc.errors()[0])
        raise fail(field, message) from None
    if isinstance(event, AccountUpdated):
        plan_class = plans.get(event.plan)
        if plan_class is None:
            raise fail("plan", f"unknown plan {event.plan!r}; expected one of {', '.join(plans)}")
        if plan_class == "commercial" and event.organization_id is None:
            raise fail("organization_id", f"is required for the commercial plan {event.plan!r}")
        if plan_class != "commercial" and event.organization_id is not None:
            raise fail("organization_id", f"must be null for the consumer plan {event.plan!r}")
    elif isinstance(event, ConsentUpdated):
        wanted, other = (
            ("account_id", "organization_id")
            if event.scope == "account"
            else ("organization_id", "account_id")
        )
        if getattr(event, wanted) is None:
            raise fail(wanted, f"is required for scope {event.scope!r}")
        if getattr(event, other) is not None:
            raise fail(other, f"must be absent or null for scope {event.scope!r}")
        if settings is not None and event.setting not in settings:
            raise fail(
                "setting",
                f"unknown setting {event.setting!r}: no configured policy declares it; "
                f"declared: {', '.join(settings) or 'none'}",
            )
    elif isinstance(event, ConversationUpdated):
        implied = None if event.incognito is None else event.incognito_mode
        if event.mode is not None and implied is not None and event.mode != implied:
            raise fail(
                "mode",
                f"is {event.mode!r} but incognito is {str(event.incognito).lower()} "
                f"(mode {implied!r}): the two disagree",
            )
    body = canonical_json(raw)
    if "\\u0000" in body or (not body.isascii() and _SURROGATE.search(body)):
        found = _bad_text(raw, "")
        if found is not None:
            raise fail(*found)
    return ParsedEvent(event=event, body=body)


def parse_line(
    text: str,
    *,
    plans: Mapping[str, str],
    settings: Collection[str] | None = None,
    line: int,
) -> ParsedEvent:
    """Decode one JSONL line and validate it as an event."""
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:  # orjson refuses integers beyond 64 bits; the standard parser tells the rest
            raw = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, RecursionError) as exc:
            raise EventError(f"not valid JSON: {exc}", line=line) from None
    return parse_event(raw, plans=plans, settings=settings, line=line)
