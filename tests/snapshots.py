"""Random conversations with a feedback report, their events and the snapshot SPEC §3 expects
of them, shared by test_vault_snapshot_property.py (the vault's snapshot is exactly that) and
test_feedback_lake.py (the same with the messages in the lake).

``conversations`` draws a case (messages and settings updates at second offsets from ``BASE``,
the report's offset, rating, comment and categories, the conversation's mode); ``_events`` gives
its events (ids tagged, the report after every message it may rate, one message after the
report); ``_expected`` computes its snapshot from the case alone, independently of
``traingate._core.report`` and ``traingate._core.deid``: messages with ``at`` <= the report's
time in time order (ties in file order), integrations stripped, uploads kept, every e-mail
(``EMAIL``) replaced everywhere, style and preferences as of the report's time, and the rated
message's index. ``_at``: an offset as an RFC 3339 instant.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from tests.factories import Events
from traingate._core.policy import MODES

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
BASE = datetime(2024, 2, 29, 23, 59, 0, tzinfo=UTC)
SOURCES = ["upload", "upload", "google_drive", "gmail", "github", "mcp:linear", "mcp:notion"]

emails = st.sampled_from(
    [
        "ada@example.com",
        "j.doe+tag@mail.co.uk",
        "X_Y%z@sub.domain.org",
        "a@b.io",
        "first.last@very-long-host.example.museum",
    ]
)
words = st.text(alphabet="abcxyz ÄΩ🙂.@-_+\n", min_size=0, max_size=12)
texts = st.lists(st.one_of(words, emails), max_size=5).map(" ".join)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), texts)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=6,
)
json_objects = st.dictionaries(texts, json_values, max_size=4)
attachments = st.lists(
    st.fixed_dictionaries(
        {
            "source": st.sampled_from(SOURCES),
            "name": st.one_of(st.none(), texts),
            "content": st.one_of(st.none(), texts),
        }
    ),
    max_size=3,
)


@st.composite
def conversations(draw: st.DrawFn) -> dict[str, Any]:
    """Messages and settings updates at second offsets; the report at offset ``report``."""
    report = draw(st.integers(0, 40))
    messages = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "offset": st.integers(0, 60),
                    "role": st.sampled_from(["user", "assistant"]),
                    "content": texts,
                    "attachments": attachments,
                }
            ),
            min_size=1,
            max_size=7,
        )
    )
    messages[0]["offset"] = min(messages[0]["offset"], report)  # something to rate
    updates = draw(
        st.lists(
            st.fixed_dictionaries(
                {"offset": st.integers(0, 60)},
                optional={
                    "custom_style": st.one_of(st.none(), json_objects),
                    "preferences": st.one_of(st.none(), json_objects),
                    "title": texts,
                },
            ),
            max_size=4,
        )
    )
    rateable = [i for i, m in enumerate(messages) if m["offset"] <= report]
    return {
        "report": report,
        "messages": messages,
        "updates": updates,
        "rated": draw(st.sampled_from(rateable)),
        "rating": draw(st.sampled_from(["up", "down"])),
        "comment": draw(st.one_of(st.none(), texts)),
        "categories": draw(st.lists(texts, max_size=3)),
        "report_micros": draw(st.integers(0, 999_999)),
        # given by the first update (the first event naming the conversation) and repeated by
        # every later one when ``repeat``
        "mode": draw(st.one_of(st.none(), st.sampled_from(MODES))),
        "repeat": draw(st.booleans()),
    }


def _at(offset: int, micros: int = 0) -> str:
    moment = BASE + timedelta(seconds=offset, microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return EMAIL.sub("[email]", value)
    if isinstance(value, list):
        return [_redact(v) for v in value]
    if isinstance(value, dict):
        # Keys that differ only by an e-mail address all stay: objects are stored with sorted
        # keys, and the second, third, ... in code-point order become "[email] (2)", ...
        redacted: dict[str, Any] = {}
        for key in sorted(value):
            name = EMAIL.sub("[email]", key)
            copies = [name] + [f"{name} ({n})" for n in range(2, len(value) + 2)]
            redacted[next(c for c in copies if c not in redacted)] = _redact(value[key])
        return redacted
    return value


def _expected(case: dict[str, Any]) -> dict[str, Any]:
    report = case["report"]
    kept = sorted(
        (i for i, m in enumerate(case["messages"]) if m["offset"] <= report),
        key=lambda i: (case["messages"][i]["offset"], i),
    )
    settings_now: dict[str, Any] = {"custom_style": None, "preferences": None}
    for update in sorted(
        (u for u in case["updates"] if u["offset"] <= report),
        key=lambda u: u["offset"],  # stable: file order among equal times
    ):
        for name in settings_now:
            if name in update:
                settings_now[name] = update[name]
    first = case["messages"][kept[0]]["offset"]
    mode = case["mode"] if case["updates"] and case["mode"] else "standard"
    return ({} if mode == "standard" else {"mode": mode}) | {
        "date": (BASE + timedelta(seconds=first)).date().isoformat(),
        "messages": [
            {
                "role": case["messages"][i]["role"],
                "content": _redact(case["messages"][i]["content"]),
                "attachments": [
                    {
                        "source": a["source"],
                        "name": _redact(a["name"]),
                        "content": _redact(a["content"]),
                        "omitted": False,
                    }
                    if a["source"] == "upload"
                    else {"source": a["source"], "name": None, "content": None, "omitted": True}
                    for a in case["messages"][i]["attachments"]
                ],
            }
            for i in kept
        ],
        "custom_style": _redact(settings_now["custom_style"]),
        "preferences": _redact(settings_now["preferences"]),
        "rating": case["rating"],
        "comment": _redact(case["comment"]),
        "categories": _redact(case["categories"]),
        "rated_message_index": kept.index(case["rated"]),
    }


def _events(case: dict[str, Any], tag: str) -> Iterator[dict[str, Any]]:
    ev = Events(prefix=f"{tag}-e")
    account, conv = f"{tag}-acct", f"{tag}-conv"
    yield ev.account(account, _at(-86_400), email=f"{tag}@owner.example")
    timeline: list[tuple[int, int, dict[str, Any]]] = []
    order = itertools.count()
    for n, update in enumerate(case["updates"]):
        fields = {k: v for k, v in update.items() if k != "offset"}
        if case["mode"] is not None and (n == 0 or case["repeat"]):
            fields["mode"] = case["mode"]
        timeline.append(
            (
                update["offset"],
                next(order),
                ev.conversation(conv, account, _at(update["offset"]), **fields),
            )
        )
    for i, message in enumerate(case["messages"]):
        atts = [
            {"attachment_id": f"{tag}-a{i}-{j}", **a} for j, a in enumerate(message["attachments"])
        ]
        timeline.append(
            (
                message["offset"],
                next(order),
                ev.message(
                    f"{tag}-m{i}",
                    conv,
                    account,
                    _at(message["offset"]),
                    role=message["role"],
                    content=message["content"],
                    attachments=atts,
                ),
            )
        )
    # file order: updates and messages as generated; the report after every message it may
    # rate; the events after the report's time stay after it in the file as well
    for _, _, event in timeline:
        yield event
    yield ev.feedback(
        f"{tag}-fb",
        account,
        conv,
        f"{tag}-m{case['rated']}",
        _at(case["report"], case["report_micros"]),
        rating=case["rating"],
        comment=case["comment"],
        categories=case["categories"],
    )
    yield ev.message(
        f"{tag}-late",
        conv,
        account,
        _at(case["report"] + 1),
        content="after the report: never in the snapshot",
    )
