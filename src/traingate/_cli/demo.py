"""The demo: the bundled real sample, two datasets, and the people to look at them as.

``prepare_demo`` is safe to run again: the sample is ingested as duplicates the second time,
datasets that already exist are verified instead of rebuilt, and new login links and a new admin
token are issued each run (old ones stay valid until they expire or are revoked).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from traingate._core.policy import Policy
from traingate._core.timeutil import parse_instant
from traingate._errors import TraingateError
from traingate._facade import Traingate
from traingate._ingest import IngestSummary
from traingate._privacy import PrivacyReport
from traingate._sample.importer import sample_events_path
from traingate._web.admin import SECTIONS
from traingate._web.answer import answer_for

__all__ = [
    "DEMO_AS_OF",
    "ConsoleToken",
    "DemoDataset",
    "DemoPlan",
    "DemoUser",
    "demo_purposes",
    "prepare_demo",
]

DEMO_AS_OF = "2025-07-01T00:00:00Z"
_SESSION_TTL = 7 * 86_400 * 1_000_000  # microseconds, as create_session takes it


@dataclass(frozen=True, slots=True)
class DemoUser:
    kind: str  # what this user shows
    account_id: str
    plan: str
    answer: str
    login_path: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class DemoDataset:
    purpose: str
    path: Path
    records: int
    reused: bool
    verified: bool


@dataclass(frozen=True, slots=True)
class ConsoleToken:
    """A token for the admin console, and the console's pages its role opens."""

    role: str
    token: str
    pages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DemoPlan:
    ingest: IngestSummary
    datasets: tuple[DemoDataset, ...]
    users: tuple[DemoUser, ...]
    console_tokens: tuple[ConsoleToken, ...]


_KINDS: tuple[tuple[str, Callable[[PrivacyReport], bool]], ...] = (
    ("consumer who opted in", lambda r: r.plan_class == "consumer" and r.consent.granted),
    ("consumer without opt-in", lambda r: r.plan_class == "consumer" and not r.consent.granted),
    (
        "commercial account, organization opted in",
        lambda r: (
            r.plan_class == "commercial"
            and r.organization_consent is not None
            and r.organization_consent.granted
        ),
    ),
    ("commercial account", lambda r: r.plan_class == "commercial"),
)


def _dataset(tg: Traingate, *, purpose: str, out: Path, as_of: int) -> DemoDataset:
    reused = out.exists()
    if not reused:
        tg.datasets.build(purpose=purpose, out=out, as_of=as_of)
    verification = tg.datasets.verify(path=out)
    manifest = json.loads((out / "manifest.json").read_text())
    return DemoDataset(
        purpose=purpose,
        path=out,
        records=int(manifest["counts"]["records"]),
        reused=reused,
        verified=verification.ok,
    )


def demo_purposes(policy: Policy) -> tuple[str, ...]:
    """The purposes the demo builds: those both a message basis and the feedback basis grant
    (the training purposes: a conversation and a report can each enter them), in the policy's
    order."""
    feedback = policy.feedback_basis
    granted = {p for basis in policy.message_bases() for p in basis.purposes}
    return tuple(
        p
        for p in policy.purposes
        if p in granted and feedback is not None and p in feedback.purposes
    )


def _users(tg: Traingate) -> tuple[DemoUser, ...]:
    """One account of each kind, with at least one conversation, and a login link for it."""
    accounts = [
        str(row[0])
        for row in tg.store.db.execute(
            "SELECT DISTINCT c.account_id FROM conversations c WHERE NOT EXISTS"
            " (SELECT 1 FROM account_deletions d WHERE d.account_id = c.account_id)"
            " ORDER BY c.account_id"
        )
    ]
    users: list[DemoUser] = []
    for kind, wanted in _KINDS:
        if kind.startswith("commercial") and any(u.kind.startswith("commercial") for u in users):
            continue
        for account_id in accounts:
            report = tg.privacy.answer(account_id=account_id)
            if report.known and report.conversations and wanted(report):
                session = tg.access.create_session(account_id=account_id, ttl=_SESSION_TTL)
                users.append(
                    DemoUser(
                        kind=kind,
                        account_id=account_id,
                        plan=report.plan.plan if report.plan else "?",
                        answer=answer_for(report, tg.policy).headline,
                        login_path=session.login_path,
                        expires_at=session.expires_at,
                    )
                )
                break
    return tuple(users)


def prepare_demo(tg: Traingate, *, datasets_dir: Path) -> DemoPlan:
    """Load the sample, build (or verify) the demo datasets, issue login links and a token."""
    with gzip.open(sample_events_path(), "rt", encoding="utf-8") as lines:
        summary = tg.events.ingest(lines)
    if summary.rejected:
        raise TraingateError(f"the bundled sample was rejected in part: {summary.errors[:3]}")
    as_of = parse_instant(DEMO_AS_OF)
    datasets = tuple(
        _dataset(tg, purpose=purpose, out=datasets_dir / f"demo-{purpose}", as_of=as_of)
        for purpose in demo_purposes(tg.policies.in_force(as_of))
    )
    return DemoPlan(
        ingest=summary, datasets=datasets, users=_users(tg), console_tokens=_console_tokens(tg)
    )


def _console_tokens(tg: Traingate) -> tuple[ConsoleToken, ...]:
    """One token per role the console's pages need (analyst: builds; privacy officer:
    explain, retention), each with the pages it opens (pages that need no role: both)."""
    roles = list(dict.fromkeys(role for _, _, role in SECTIONS if role is not None))
    return tuple(
        ConsoleToken(
            role=role,
            token=tg.access.create_token(role=role, name=f"demo console ({role})").token,
            pages=tuple(title for _, title, need in SECTIONS if need in (role, None)),
        )
        for role in roles
    )
