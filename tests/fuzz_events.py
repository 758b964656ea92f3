"""Hypothesis strategies of malformed and hostile event lines, and the oracle that checks what
ingest made of them (tests/test_fuzz.py).

A case is a few event lines sharing a unique prefix: valid events of every kind, each maybe
mutated (a field set to a huge, SQL-looking or Unicode-edge string, a wrong type, dropped,
an extra field, deep nesting, an unknown type, a bad time) and maybe broken as text (cut
short, a raw NUL byte, a BOM, duplicate keys, wrapped in an array, repeated).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st

from traingate._core.deid import redact
from traingate._core.events import canonical_json
from traingate._facade import Traingate
from traingate._ingest import IngestSummary

AT = "2024-03-01T12:00:00Z"
LATER = "2024-03-01T12:00:05Z"

SQLISH = [
    "'; DROP TABLE messages; --",
    '" OR 1=1 --',
    "Robert'); DELETE FROM events WHERE ('1'='1",
    "%s %d {0} ? $1 :name",
    "'' || (SELECT hash FROM audit_log) || ''",
    "\\'; COMMIT; VACUUM; --",
    "/* */ UNION SELECT * FROM api_tokens",
]
EDGES = [
    "\x00",
    "\ud800",
    "\udfff",
    "\ud83d",
    "\ud83d\ude00",
    "\ufeff",
    "\u202e",
    "\u2028",
    "\u2029",
    "\x85",
    "\uffff",
    "\U0010ffff",
    "e\u0301",
    "😀",
    "\x7f",
    "\r\n",
    "\\",
    '"',
    "\x1b[31m",
    "\\u0000",
    "a@example.com",
]
PIECES = [*SQLISH, *EDGES, "a", "é", " ", "ß", "中"]
BAD_TIMES = [
    "2024-03-01",
    "2024-03-01T12:00Z",
    "2024-02-30T12:00:00Z",
    "20240301T120000Z",
    "2024-03-01T12:00:00",
    "2024-03-01T12:00:00\x00Z",
    "\uff19\uff19\uff19\uff19-03-01T12:00:00Z",  # fullwidth digits
    "",
    # SPEC §2's range: [1970-01-01T00:00:00Z, 9000-01-01T00:00:00Z) in UTC
    "1969-12-31T23:59:59.999999Z",
    "9000-01-01T00:00:00Z",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
]

texts = st.one_of(
    st.text(max_size=40),
    st.text(
        alphabet=st.characters(codec=None, categories=["Cs", "Cc", "Cf", "Co", "Zl", "Mn", "So"]),
        max_size=12,
    ),
    st.sampled_from(PIECES),
    st.lists(st.sampled_from(PIECES), max_size=8).map("".join),
    st.integers(1_000, 200_000).map(lambda n: "x" * n + "é😀"),
)
wrong_types = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.sampled_from(["true", "1", "null"]),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=12,
)
DEPTHS = [3, 63, 64, 65, 200, 600, 1100, 5000, 100_000]


def _deep(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    return '{"k":' * depth + "1" + "}" * depth


def templates(prefix: str, slot: int) -> dict[str, dict[str, Any]]:
    """One valid event of each kind for slot ``slot`` of a case (ids unique to the case)."""
    base = {"event_id": f"{prefix}-e{slot}", "at": AT}
    account, conversation = f"{prefix}-a", f"{prefix}-c"
    return {
        "account": {
            "type": "account.updated",
            **base,
            "account_id": account,
            "email": "a@example.com",
            "plan": "free",
            "organization_id": None,
        },
        "consent": {
            "type": "consent.updated",
            **base,
            "scope": "account",
            "account_id": account,
            "setting": "model_training",
            "granted": True,
            "source": "privacy_settings",
        },
        "conversation": {
            "type": "conversation.updated",
            **base,
            "conversation_id": conversation,
            "account_id": account,
            "title": "t",
            "custom_style": {"tone": "dry"},
            "preferences": {},
            "mode": ("standard", "incognito", "temporary")[slot % 3],
        },
        "message": {
            "type": "message.created",
            **base,
            "conversation_id": conversation,
            "message_id": f"{prefix}-m{slot}",
            "account_id": account,
            "role": "user",
            "content": "hello",
            "attachments": [
                {
                    "attachment_id": f"{prefix}-x{slot}",
                    "source": "upload",
                    "name": "n",
                    "content": "c",
                }
            ],
        },
        "feedback": {
            "type": "feedback.submitted",
            **base,
            "at": LATER,
            "feedback_id": f"{prefix}-f{slot}",
            "account_id": account,
            "conversation_id": conversation,
            "message_id": f"{prefix}-m0",
            "rating": "down",
            "comment": "c",
            "categories": ["x"],
        },
        "flag": {
            "type": "safety.flagged",
            **base,
            "flag_id": f"{prefix}-g{slot}",
            "conversation_id": conversation,
            "policy": "usage_policy",
            "reason": "r",
        },
    }


KINDS = ["account", "consent", "conversation", "message", "feedback", "flag"]
STRING_FIELDS = {
    "account": ["account_id", "email", "event_id"],
    "consent": ["account_id", "source", "setting"],
    "conversation": ["title", "conversation_id", "mode"],
    "message": ["content", "message_id", "conversation_id"],
    "feedback": ["comment", "feedback_id"],
    "flag": ["reason", "flag_id"],
}

mutations = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 9), texts),
    st.tuples(st.just("wrong"), st.integers(0, 20), wrong_types),
    st.tuples(st.just("drop"), st.integers(0, 20), st.none()),
    st.tuples(st.just("extra"), texts, json_values),
    st.tuples(st.just("nest"), st.sampled_from(["custom_style", "preferences"]), json_values),
    st.tuples(st.just("deep"), st.sampled_from(DEPTHS), st.sampled_from(["list", "dict"])),
    st.tuples(st.just("type"), texts, st.none()),
    st.tuples(st.just("at"), st.sampled_from(BAD_TIMES), st.none()),
    st.tuples(st.just("attachment"), texts, texts),
    st.tuples(st.just("categories"), st.lists(texts, max_size=3), st.none()),
)
breaks = st.sampled_from(["none"] * 8 + ["cut", "nul", "bom", "dupkey", "array", "repeat", "blank"])

Case = list[str]


def _mutate(kind: str, event: dict[str, Any], mutation: tuple[Any, Any, Any]) -> str | None:
    """Apply one mutation; returns a deep-nesting marker to splice in, if any."""
    op, arg, value = mutation
    fields = [k for k in event if k != "type"]
    if op == "set":
        names = STRING_FIELDS[kind]
        event[names[arg % len(names)]] = value
    elif op == "wrong":
        event[fields[arg % len(fields)]] = value
    elif op == "drop":
        event.pop(fields[arg % len(fields)], None)
    elif op == "extra":
        event[arg] = value
    elif op == "nest" and kind == "conversation":
        event[arg] = {"v": value}
    elif op == "deep":
        target = "custom_style" if kind == "conversation" else STRING_FIELDS[kind][0]
        event[target] = "__DEEP__"
        return _deep(arg, value)
    elif op == "type":
        event["type"] = arg
    elif op == "at":
        event["at"] = arg
    elif op == "attachment" and kind == "message":
        event["attachments"] = [
            {"attachment_id": "x", "source": "gdrive", "name": arg, "content": value}
        ]
    elif op == "categories" and kind == "feedback":
        event["categories"] = arg
    return None


def _line(event: dict[str, Any], deep: str | None, ascii_only: bool) -> str:
    line = json.dumps(event, ensure_ascii=ascii_only)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: only as JSON escapes
        line = json.dumps(event)
    if deep is not None:
        line = line.replace('"__DEEP__"', deep, 1)
    return line


def _break(line: str, how: str, previous: list[str], cut: int) -> str:
    if how == "cut":
        return line[: cut % max(1, len(line))]
    if how == "nul":
        at = cut % max(1, len(line))
        return line[:at] + "\x00" + line[at:]
    if how == "bom":
        return "\ufeff" + line
    if how == "dupkey" and line.endswith("}"):
        return line[:-1] + f', "event_id": "{PREFIX}-dup"}}'
    if how == "array":
        return f"[{line}]"
    if how == "repeat" and previous:
        return previous[-1]
    if how == "blank":
        return "   "
    return line


PREFIX = "@@P@@"  # replaced by a fresh prefix each time a case runs (``with_prefix``)


def with_prefix(case: Case, prefix: str) -> Case:
    return [line.replace(PREFIX, prefix) for line in case]


@st.composite
def cases(draw: Callable[..., Any], max_events: int = 5) -> Case:
    """A list of event lines: valid and hostile events around each other."""
    prefix = PREFIX
    lines: list[str] = []
    for slot in range(draw(st.integers(1, max_events))):
        kind = KINDS[0] if slot == 0 else draw(st.sampled_from(KINDS))
        if slot == 1:
            kind = "message"  # slot 0 opens the account, slot 1 the rated message
        event = templates(prefix, slot)[kind]
        if slot == 1:
            event["message_id"] = f"{prefix}-m0"
        deep = None
        for mutation in draw(st.lists(mutations, max_size=2)):
            deep = _mutate(kind, event, mutation) or deep
        line = _line(event, deep, draw(st.booleans()))
        lines.append(_break(line, draw(breaks), lines, draw(st.integers(0, 10**6))))
    return lines


# -- the oracle ------------------------------------------------------------------------------

TABLES = ("events", "messages", "report_events", "account_plans", "consents", "flags")


def counts(tg: Traingate) -> dict[str, int]:
    return {t: int(tg.store.db.execute(f"SELECT COUNT(*) FROM {t}")[0][0]) for t in TABLES}


def _parsed(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _event_row(tg: Traingate, event_id: str) -> tuple[Any, ...] | None:
    key = tg.keys.short_hash("event", event_id)
    rows = tg.store.db.execute("SELECT seq, body_hash FROM events WHERE event_key = ?", (key,))
    return tuple(rows[0]) if rows else None


def check(
    tg: Traingate,
    lines: Sequence[str],
    summary: IngestSummary,
    before: dict[str, int],
    prefix: str,
) -> None:
    """Each line was rejected with an error naming it, or stored exactly; nothing else
    changed; the counts agree with the summary."""
    numbered = [n for n, line in enumerate(lines, start=1) if line.strip()]
    assert summary.accepted + summary.duplicates + summary.rejected == len(numbered), summary
    assert len(summary.errors) == summary.rejected
    errors = {e.line for e in summary.errors}
    assert len(errors) == summary.rejected and errors <= set(numbered), summary.errors
    for error in summary.errors:
        assert error.error and f"line {error.line}" in error.error
    receipts = {line: receipt for line, _, receipt in summary.receipts}
    assert len(receipts) == len(summary.receipts), summary.receipts
    accepted: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for n in numbered:
        if n in errors:
            continue
        event = _parsed(lines[n - 1])
        assert event is not None, f"line {n} was kept but is not a JSON object"
        if event["event_id"] in accepted:
            assert accepted[event["event_id"]] == event
            duplicates += 1
            continue
        accepted[event["event_id"]] = event
        _stored_exactly(tg, event, receipts.get(n))
    assert duplicates == summary.duplicates
    kinds = [e["type"] for e in accepted.values()]
    after = counts(tg)
    delta = {t: after[t] - before[t] for t in TABLES}
    assert delta["events"] == len(kinds) - kinds.count("feedback.submitted"), delta
    assert delta["report_events"] == kinds.count("feedback.submitted"), delta
    assert delta["messages"] == kinds.count("message.created"), delta
    assert delta["account_plans"] == kinds.count("account.updated"), delta
    assert delta["consents"] == kinds.count("consent.updated"), delta
    assert delta["flags"] == kinds.count("safety.flagged"), delta
    for n in errors:  # a rejected event left nothing behind
        event = _parsed(lines[n - 1])
        if event is None or not isinstance(event.get("event_id"), str):
            continue
        event_id = event["event_id"]
        if event_id.startswith(prefix) and event_id not in accepted:
            assert _event_row(tg, event_id) is None, f"line {n} was rejected but stored"


def _stored_exactly(tg: Traingate, event: dict[str, Any], receipt: str | None) -> None:
    db = tg.store.db
    kind = event["type"]
    if kind == "feedback.submitted":
        assert receipt is not None, f"no receipt for {event}"
        _, snapshot = tg.vault.show(receipt)
        comment = event.get("comment")
        assert snapshot.comment == (None if comment is None else redact(comment))
        assert list(snapshot.categories) == [redact(c) for c in event.get("categories", [])]
        return
    row = _event_row(tg, event["event_id"])
    assert row is not None, f"{event['event_id']!r} accepted but not stored"
    seq, body_hash = row  # the event log keeps the hash of the canonical body, not the body
    assert body_hash == tg.keys.short_hash("body", canonical_json(event))
    if kind == "message.created":
        [(content, role, attachments)] = db.execute(
            "SELECT content, role, attachments FROM messages WHERE message_id = ?",
            (event["message_id"],),
        )
        assert content == event["content"]
        assert content.encode("utf-8") == event["content"].encode("utf-8")
        assert role == event["role"]
        expected = [
            {
                "attachment_id": a["attachment_id"],
                "source": a["source"],
                "name": a.get("name"),
                "content": a.get("content"),
            }
            for a in event.get("attachments", [])
        ]
        assert json.loads(attachments) == expected
    elif kind == "conversation.updated":
        [(fields,)] = db.execute(
            "SELECT fields FROM conversation_settings WHERE event_seq = ?", (seq,)
        )
        names = ("custom_style", "preferences", "title")
        assert json.loads(fields) == {k: event[k] for k in names if k in event}
        given = event.get("mode")
        if given is None and event.get("incognito") is not None:
            given = "incognito" if event["incognito"] else "standard"
        if given is not None:  # it set the conversation's mode, or gave the one it had
            assert tg.store.conversation_mode(event["conversation_id"]) == given
    elif kind == "account.updated":
        [row] = db.execute(
            "SELECT account_id, email, plan, organization_id FROM account_plans"
            " WHERE event_seq = ?",
            (seq,),
        )
        keys = ("account_id", "email", "plan", "organization_id")
        assert tuple(row) == tuple(event.get(k) for k in keys)
    elif kind == "consent.updated":
        [row] = db.execute(
            "SELECT subject, source, setting FROM consents WHERE event_seq = ?", (seq,)
        )
        assert tuple(row) == (event["account_id"], event["source"], event["setting"])
    elif kind == "safety.flagged":
        [(reason,)] = db.execute("SELECT reason FROM flags WHERE event_seq = ?", (seq,))
        assert reason == event.get("reason")
