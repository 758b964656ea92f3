"""Place upstream conversations on a generated timeline and derive their events.

Each conversation gets an owner (weighted by account activity), a start time, message times,
synthetic attachments on a few user messages, feedback reports, safety flags, and sometimes a
later settings change. Everything here is a pure function of the seed and the inputs.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from traingate._sample.population import CONTENT_END, START, Account, seeded
from traingate._sample.sources import SourceConversation, SourceTurn

__all__ = ["Draft", "Placed", "conversation_drafts", "place_conversations"]

Body = dict[str, Any]

ATTACHMENT_RATE = 0.03
"""Share of user messages that get one synthetic attachment."""
HH_THUMBS_UP_RATE = 0.25
"""Share of HH-RLHF conversations whose final (chosen, less harmful) reply gets a thumbs up."""
HH_CLEAR_RATE = 0.12
"""Share of HH-RLHF flags that are cleared later."""
SETTINGS_CHANGE_RATE = 0.04
"""Share of conversations whose style or preferences change after their last message."""

HH_FLAG_WORDS = re.compile(
    r"\b(kill|killing|killed|steal|stealing|stole|bomb|bombs|gun|guns|poison|poisoning|drug|"
    r"drugs|hack|hacking|murder|rob|robbing|robbery|weapon|weapons|meth|explosive|explosives)\b",
    re.IGNORECASE,
)
"""An HH-RLHF conversation is flagged when a human turn contains one of these words."""

_STYLES: tuple[dict[str, str], ...] = (
    {"name": "Concise", "instructions": "Keep answers short and to the point."},
    {"name": "Formal", "instructions": "Use a formal tone and full sentences."},
    {"name": "Explanatory", "instructions": "Explain step by step, like a patient teacher."},
)
_UP_CATEGORIES = ("helpful", "accurate", "well_written", "creative")
_DOWN_CATEGORIES = ("inaccurate", "not_helpful", "incomplete", "unsafe")
_UP_COMMENTS = (
    "Exactly what I needed, thanks.",
    "Clear and well explained.",
    "Great answer!",
    "This helped a lot. Reach me at {email} if you want more examples like this.",
)
_DOWN_COMMENTS = (
    "This is wrong.",
    "Not helpful, too vague.",
    "It ignored part of my question.",
    "Please follow up with me at {email} about this answer.",
)
_ATTACHMENTS: tuple[tuple[str, str, str], ...] = (
    ("upload", "notes.txt", "Meeting notes\n- follow up with {email}\n- budget review on Friday\n"),
    ("upload", "contacts.csv", "name,email\nAlex Example,{email}\nSam Sample,sam@example.org\n"),
    ("google_drive", "Q3 planning (Google Doc)", "Q3 planning draft. Owner: {email}.\n"),
    ("gmail", "Re: invoice #4471", "From: billing@example.org\nTo: {email}\n\nInvoice attached.\n"),
    ("github", "example/repo: README.md", "# example/repo\n\nA small demo repository.\n"),
    (
        "mcp:linear",
        "LIN-{number}: Fix login timeout",
        "Users are logged out after 5 minutes.\nReporter: {email}\n",
    ),
)


@dataclass(frozen=True, slots=True)
class Draft:
    """An event before sorting: its time, type and fields (``event_id``/``at`` come later)."""

    at: datetime
    type: str
    body: Body


@dataclass(frozen=True, slots=True)
class Placed:
    """A conversation with its owner and start time."""

    conversation: SourceConversation
    account: Account
    start: datetime


def _seconds(rng: random.Random, low: float, high: float) -> timedelta:
    return timedelta(seconds=round(rng.uniform(low, high)))


def place_conversations(
    *, seed: int, conversations: Sequence[SourceConversation], accounts: Sequence[Account]
) -> list[Placed]:
    """Give every conversation an owner (weighted by activity) and a start time."""
    weights = [account.activity for account in accounts]
    placed: list[Placed] = []
    for conversation in conversations:
        rng = seeded(seed, "owner", conversation.conversation_id)
        account = rng.choices(accounts, weights=weights)[0]
        # A late signup's conversations may start before its first account.updated.
        earliest = START if account.late_signup else account.created + timedelta(hours=1)
        span = (CONTENT_END - earliest).total_seconds()
        placed.append(Placed(conversation, account, earliest + _seconds(rng, 0, span)))
    return placed


def title_of(conversation: SourceConversation) -> str:
    """The first user message on one line, cut to 60 characters."""
    first = next((turn.text for turn in conversation.turns if turn.role == "user"), "")
    line = " ".join(first.split())
    if not line:
        return "New conversation"
    return line if len(line) <= 60 else line[:59].rstrip() + "…"


def _settings(rng: random.Random, email: str) -> Body:
    settings: Body = {}
    if rng.random() < 0.15:
        settings["custom_style"] = dict(rng.choice(_STYLES))
    roll = rng.random()
    if roll < 0.10:
        settings["preferences"] = {"language": "en", "units": rng.choice(("metric", "imperial"))}
    elif roll < 0.20:
        settings["preferences"] = {"language": "en", "signature": f"Sent by {email}"}
    return settings


def _attachment(rng: random.Random, message_id: str, email: str) -> Body:
    source, name, content = rng.choice(_ATTACHMENTS)
    number = rng.randint(100, 999)
    return {
        "attachment_id": f"att-{message_id}-1",
        "source": source,
        "name": name.format(number=number),
        "content": content.format(email=email, number=number),
    }


def _feedback_delay(rng: random.Random) -> timedelta:
    return _seconds(rng, 2, 120) if rng.random() < 0.7 else _seconds(rng, 3_600, 3 * 86_400)


def _feedback(
    rng: random.Random, *, turn: SourceTurn, conversation_id: str, account: Account, up: bool
) -> Body:
    categories = _UP_CATEGORIES if up else _DOWN_CATEGORIES
    body: Body = {
        "feedback_id": f"fb-{turn.message_id}",
        "account_id": account.account_id,
        "conversation_id": conversation_id,
        "message_id": turn.message_id,
        "rating": "up" if up else "down",
        "categories": rng.sample(categories, rng.randint(1, 2)),
    }
    if rng.random() < 0.35:
        comment = rng.choice(_UP_COMMENTS if up else _DOWN_COMMENTS)
        body["comment"] = comment.format(email=account.email)
    return body


def _flag(at: datetime, flag_id: str, conversation_id: str, reason: str) -> Draft:
    body = {
        "flag_id": flag_id,
        "conversation_id": conversation_id,
        "policy": "usage_policy",
        "reason": reason,
    }
    return Draft(at, "safety.flagged", body)


def _message_drafts(*, seed: int, rng: random.Random, placed: Placed, owner: Body) -> list[Draft]:
    """The messages: a reply follows within seconds, the user's next turn within minutes."""
    drafts: list[Draft] = []
    at = placed.start
    previous_role = "user"
    for turn in placed.conversation.turns:
        at += _seconds(rng, 3, 90) if previous_role == "user" else _seconds(rng, 20, 1_200)
        previous_role = turn.role
        attachments = []
        pick = seeded(seed, "attachment", turn.message_id)
        if turn.role == "user" and pick.random() < ATTACHMENT_RATE:
            attachments.append(_attachment(pick, turn.message_id, placed.account.email))
        body = {
            **owner,
            "message_id": turn.message_id,
            "role": turn.role,
            "content": turn.text,
            "attachments": attachments,
        }
        drafts.append(Draft(at, "message.created", body))
    return drafts


def _oasst_signals(rng: random.Random, placed: Placed, messages: list[Draft]) -> list[Draft]:
    """Majority thumbs on assistant turns become reports; red flags become flags."""
    cid = placed.conversation.conversation_id
    drafts: list[Draft] = []
    for turn, message in zip(placed.conversation.turns, messages, strict=True):
        if turn.role == "assistant" and turn.thumbs_up != turn.thumbs_down:
            up = turn.thumbs_up > turn.thumbs_down
            body = _feedback(rng, turn=turn, conversation_id=cid, account=placed.account, up=up)
            drafts.append(Draft(message.at + _feedback_delay(rng), "feedback.submitted", body))
        if turn.red_flags:
            reports = f"{turn.red_flags} report{'s' if turn.red_flags != 1 else ''}"
            reason = f"OASST red_flag on message {turn.message_id} ({reports})"
            flag_at = message.at + _seconds(rng, 60, 2 * 86_400)
            drafts.append(_flag(flag_at, f"flag-{turn.message_id}", cid, reason))
    return drafts


def _hh_signals(rng: random.Random, placed: Placed, messages: list[Draft]) -> list[Draft]:
    """A share of final (chosen) replies get a thumbs up; keyword hits get a flag."""
    conversation = placed.conversation
    cid = conversation.conversation_id
    last = messages[-1].at
    drafts: list[Draft] = []
    final = conversation.turns[-1]
    if final.role == "assistant" and rng.random() < HH_THUMBS_UP_RATE:
        body = _feedback(rng, turn=final, conversation_id=cid, account=placed.account, up=True)
        body["categories"] = ["harmless", *body["categories"][:1]]
        drafts.append(Draft(last + _feedback_delay(rng), "feedback.submitted", body))
    human = " ".join(turn.text for turn in conversation.turns if turn.role == "user")
    match = HH_FLAG_WORDS.search(human)
    if match:
        flag_id = f"flag-{cid}"
        flag_at = last + _seconds(rng, 300, 3 * 86_400)
        drafts.append(_flag(flag_at, flag_id, cid, f"red-team keyword: {match.group(1).lower()}"))
        if rng.random() < HH_CLEAR_RATE:
            clear_at = flag_at + _seconds(rng, 86_400, 14 * 86_400)
            drafts.append(Draft(clear_at, "safety.cleared", {"flag_id": flag_id}))
    return drafts


def conversation_drafts(*, seed: int, placed: Placed) -> list[Draft]:
    """Every event of one conversation: settings, messages, feedback, flags, clears."""
    conversation = placed.conversation
    rng = seeded(seed, "conversation", conversation.conversation_id)
    owner: Body = {
        "conversation_id": conversation.conversation_id,
        "account_id": placed.account.account_id,
    }
    settings = _settings(rng, placed.account.email)
    title = title_of(conversation)
    drafts = [Draft(placed.start, "conversation.updated", {**owner, "title": title, **settings})]
    messages = _message_drafts(seed=seed, rng=rng, placed=placed, owner=owner)
    drafts.extend(messages)
    if conversation.origin == "oasst":
        drafts.extend(_oasst_signals(rng, placed, messages))
    else:
        drafts.extend(_hh_signals(rng, placed, messages))
    if rng.random() < SETTINGS_CHANGE_RATE:
        # A later settings change: a new style, the preferences (if any) restated unchanged.
        changed = {**owner, "title": title, **settings, "custom_style": dict(rng.choice(_STYLES))}
        change_at = messages[-1].at + _seconds(rng, 3_600, 10 * 86_400)
        drafts.append(Draft(change_at, "conversation.updated", changed))
    return drafts
