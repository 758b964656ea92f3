"""Convert the upstream conversations into SPEC §2 events, and find the bundled sample.

``convert`` is a pure function of the parsed conversations and a seed; ``build_events`` reads
the upstream files first. The events come out sorted by time and numbered ``evt-000001`` on, in
an order in which each one is valid when processed after the ones before it: accounts exist
before their conversations (but for one deliberate late signup), a report follows the message it
rates, and nothing of a conversation or account follows its deletion.

Regenerate the bundled file with::

    python -m traingate._sample.importer --source ../shared/data/conversations \\
        --out src/traingate/_sample/data/sample-events.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from traingate._core.policy import Policy, PolicySet, load_policy_set
from traingate._sample.population import (
    END,
    Account,
    ConsentChange,
    Population,
    SamplePlans,
    generate_population,
    seeded,
)
from traingate._sample.sources import SourceConversation, load_hh_rlhf, load_oasst
from traingate._sample.timeline import Draft, Placed, conversation_drafts, place_conversations

__all__ = [
    "DEFAULT_SEED",
    "SAMPLE_FILE",
    "Event",
    "build_events",
    "convert",
    "count_by_type",
    "encode_events",
    "main",
    "sample_events_path",
    "write_events",
]

Event = dict[str, Any]

DEFAULT_SEED = 20240101
SAMPLE_FILE = "sample-events.jsonl.gz"
DELETE_FROM = datetime(2025, 6, 15, tzinfo=UTC)
"""Deletions happen from here to END, and always after everything they delete."""
DELETED_CONVERSATIONS = 10
"""Conversations deleted at random, besides one with feedback and one with an open flag."""

_ORDER = (
    "account.updated",
    "consent.updated",
    "conversation.updated",
    "message.created",
    "feedback.submitted",
    "safety.flagged",
    "safety.cleared",
    "conversation.deleted",
    "account.deleted",
)
_PRIORITY = {event_type: index for index, event_type in enumerate(_ORDER)}


def format_instant(at: datetime) -> str:
    """``2024-03-05T14:03:22Z``: RFC 3339, UTC, whole seconds."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _account_drafts(account: Account, *, signup: datetime | None) -> list[Draft]:
    periods = account.periods
    if signup is not None:
        periods = (replace(periods[0], start=signup), *periods[1:])
    return [
        Draft(
            period.start,
            "account.updated",
            {
                "account_id": account.account_id,
                "email": period.email,
                "plan": period.plan,
                "organization_id": period.organization_id,
            },
        )
        for period in periods
    ]


def _consent_draft(change: ConsentChange) -> Draft:
    subject = "account_id" if change.scope == "account" else "organization_id"
    return Draft(
        change.at,
        "consent.updated",
        {
            "scope": change.scope,
            subject: change.subject,
            "setting": change.setting,
            "granted": change.granted,
            "source": change.source,
        },
    )


def _deletion_at(rng: random.Random, after: datetime) -> datetime:
    low = max(after + timedelta(hours=1), DELETE_FROM)
    high = END - timedelta(hours=1)
    if low >= high:
        raise AssertionError(f"no room for a deletion after {format_instant(after)}")
    return low + timedelta(seconds=round(rng.uniform(0, (high - low).total_seconds())))


def _finally_granted(account: Account, consent: Sequence[ConsentChange]) -> bool:
    own = [c for c in consent if c.scope == "account" and c.subject == account.account_id]
    # Latest first; at the same instant a denial wins (False sorts first).
    return bool(own) and max(own, key=lambda c: (c.at, not c.granted)).granted


def _facts(drafts: Sequence[Draft]) -> tuple[dict[str, datetime], set[str], set[str]]:
    """The last event time per conversation and account, the conversations with feedback,
    and those with a flag that is never cleared."""
    last: dict[str, datetime] = {}
    feedback: set[str] = set()
    flags: dict[str, str] = {}
    cleared: set[str] = set()
    for draft in drafts:
        body = draft.body
        key: object = body.get("conversation_id") or body.get("account_id")
        if draft.type == "safety.cleared":
            cleared.add(body["flag_id"])
            key = flags[body["flag_id"]]
        if isinstance(key, str):
            last[key] = max(last.get(key, draft.at), draft.at)
        if draft.type == "feedback.submitted":
            feedback.add(body["conversation_id"])
        elif draft.type == "safety.flagged":
            flags[body["flag_id"]] = body["conversation_id"]
    return last, feedback, {cid for flag_id, cid in flags.items() if flag_id not in cleared}


def _deletions(
    *, seed: int, population: Population, placed: Sequence[Placed], drafts: Sequence[Draft]
) -> list[Draft]:
    """Two account deletions (a consumer who opted in, a commercial account) and about a
    dozen conversation deletions (one with feedback, one with an open flag, and ten more),
    each after every event of what it deletes."""
    rng = seeded(seed, "deletions")
    last, feedback, open_flags = _facts(drafts)
    owned = Counter(item.account.account_id for item in placed)
    plain = [
        account
        for account in population.accounts
        if len(account.periods) == 1 and not account.late_signup and owned[account.account_id]
    ]
    granted = [a for a in plain if _finally_granted(a, population.consent)]
    doomed = [
        rng.choice(group)
        for group in (
            [a for a in granted if a.initial_plan in population.plans.consumer],
            [a for a in plain if a.initial_plan in population.plans.commercial],
        )
        if group
    ]
    survivors = [i.conversation.conversation_id for i in placed if i.account not in doomed]
    chosen = {
        rng.choice(group)
        for group in (
            [c for c in survivors if c.startswith("oasst-") and c in feedback],
            [c for c in survivors if c.startswith("hh-") and c in open_flags],
        )
        if group
    }
    chosen.update(rng.sample(survivors, min(DELETED_CONVERSATIONS, len(survivors))))
    deletions: list[Draft] = []
    for item in placed:
        cid = item.conversation.conversation_id
        if cid in chosen:
            body = {"conversation_id": cid, "account_id": item.account.account_id}
            deletions.append(Draft(_deletion_at(rng, last[cid]), "conversation.deleted", body))
    for account in doomed:
        ends = [last[account.account_id]] + [
            last[i.conversation.conversation_id] for i in placed if i.account is account
        ]
        body = {"account_id": account.account_id}
        deletions.append(Draft(_deletion_at(rng, max(ends)), "account.deleted", body))
    return deletions


def convert(
    *,
    conversations: Sequence[SourceConversation],
    seed: int = DEFAULT_SEED,
    policy: Policy | PolicySet | None = None,
) -> list[Event]:
    """The sample's events for ``conversations``, sorted by time and numbered, with the plans
    and consent settings of ``policy`` (default: the default policy)."""
    population = generate_population(seed=seed, plans=SamplePlans.of(policy))
    placed = place_conversations(
        seed=seed, conversations=conversations, accounts=population.accounts
    )
    drafts: list[Draft] = []
    ends: dict[str, datetime] = {}
    for item in placed:
        own = conversation_drafts(seed=seed, placed=item)
        ends[item.conversation.conversation_id] = max(draft.at for draft in own)
        drafts.extend(own)
    for account in population.accounts:
        signup = None
        owned = [item for item in placed if item.account is account]
        if account.late_signup and owned:
            first = min(owned, key=lambda item: item.start)
            signup = ends[first.conversation.conversation_id] + timedelta(days=1)
        drafts.extend(_account_drafts(account, signup=signup))
    drafts.extend(_consent_draft(change) for change in population.consent)
    drafts.extend(_deletions(seed=seed, population=population, placed=placed, drafts=drafts))
    drafts.sort(key=lambda draft: (draft.at, _PRIORITY[draft.type]))
    return [
        {
            "type": draft.type,
            "event_id": f"evt-{n:06d}",
            "at": format_instant(draft.at),
            **draft.body,
        }
        for n, draft in enumerate(drafts, start=1)
    ]


def build_events(
    *, source_dir: Path, seed: int = DEFAULT_SEED, policy: Policy | PolicySet | None = None
) -> list[Event]:
    """Read OASST and HH-RLHF under ``source_dir`` and convert them (OASST first)."""
    conversations = [*load_oasst(source_dir), *load_hh_rlhf(source_dir)]
    return convert(conversations=conversations, seed=seed, policy=policy)


def encode_events(events: Iterable[Event]) -> bytes:
    """JSON Lines, UTF-8, one compact object per line, keys in the events' own order."""
    return "".join(
        json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n" for event in events
    ).encode("utf-8")


def write_events(*, events: Iterable[Event], path: Path) -> None:
    """Write ``events`` as gzip-compressed JSONL with a fixed header (mtime 0, no name)."""
    data = gzip.compress(encode_events(events), compresslevel=9, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def count_by_type(events: Iterable[Event]) -> dict[str, int]:
    """How many events of each type, in SPEC order."""
    counts = Counter(str(event["type"]) for event in events)
    return {event_type: counts[event_type] for event_type in _ORDER if counts[event_type]}


def sample_events_path() -> Path:
    """Where the bundled sample (gzip JSONL) is installed."""
    resource = resources.files("traingate._sample") / "data" / SAMPLE_FILE
    if not isinstance(resource, Path):
        raise RuntimeError(f"the bundled sample is not a plain file: {resource}")
    return resource


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m traingate._sample.importer",
        description="Convert the upstream OASST and HH-RLHF files into traingate events.",
    )
    parser.add_argument(
        "--source",
        type=Path,
        required=True,
        help="folder holding oasst_en100_trees/ and hh_rlhf_harmless_base_test/",
    )
    parser.add_argument("--out", type=Path, required=True, help="gzip JSONL file to write")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--policy",
        default=None,
        help="the policies whose plans and consent settings the sample uses, as traingate's"
        " --policy (default: the default policy)",
    )
    args = parser.parse_args(argv)
    policy = load_policy_set(args.policy)
    events = build_events(source_dir=args.source, seed=args.seed, policy=policy)
    write_events(events=events, path=args.out)
    json.dump({"events": len(events), "by_type": count_by_type(events)}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
