"""One account's answer to "Is my data used for model training?", as data, with the evidence.

``account_privacy`` reads the account's ledgers (plan, consent, its organization's consent,
deletions), its conversations, and lineage (which builds took which of its conversations), and
decides with the same as-of questions the policy uses (``traingate.facts``). It answers for the
account as of one instant; the per-message truth is ``explain``. Feedback reports are de-linked
from the account by design, so they appear here only as the policy's feedback basis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from traingate.build.lineage import item_key_bytes
from traingate.build.records import conversation_item_key
from traingate.facts import ConsentChange, PlanChange, consent_at, plan_at
from traingate.keys import KeyRing
from traingate.policy import Policy
from traingate.store.store import MessageRow, Store
from traingate.timeutil import format_instant

__all__ = [
    "ConsentState",
    "ConversationSummary",
    "ConversationView",
    "PrivacyReport",
    "account_privacy",
    "consent_state",
    "conversation_view",
]

_CHUNK = 900


def _time(micros: int | None) -> str | None:
    return None if micros is None else format_instant(micros)


@dataclass(frozen=True, slots=True)
class ConsentState:
    """A consent ledger as of a time: in force or not, since when, from which source."""

    scope: str
    subject: str
    granted: bool
    since: int | None  # start of the current unbroken run of grants (or of denials)
    source: str | None
    history: tuple[ConsentChange, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "subject": self.subject,
            "granted": self.granted,
            "since": _time(self.since),
            "source": self.source,
            "history": [
                {"at": format_instant(c.at), "granted": c.granted, "source": c.source}
                for c in self.history
            ],
        }


def consent_state(
    *, scope: str, subject: str, ledger: Sequence[ConsentChange], as_of: int
) -> ConsentState:
    """The consent in force at ``as_of``, and since when: for a grant, the first grant after
    the last denial (a new grant covers new messages only); for a denial, the first denial
    after the last instant consent was in force."""
    known = tuple(sorted((c for c in ledger if c.at <= as_of), key=lambda c: (c.at, c.seq)))
    current = consent_at(known, as_of)
    if current is None:
        return ConsentState(scope, subject, False, None, None, known)
    if current.granted:
        last_denial = max((c.at for c in known if not c.granted), default=None)
        start = next(c for c in known if c.granted and (last_denial is None or c.at > last_denial))
    else:
        in_force = [c.at for c in known if c.granted and consent_at(known, c.at) == c]
        last_grant = max(in_force, default=None)
        start = next(
            c for c in known if not c.granted and (last_grant is None or c.at >= last_grant)
        )
    return ConsentState(scope, subject, current.granted, start.at, start.source, known)


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    conversation_id: str
    title: str | None
    messages: int
    first_message_at: int | None
    deleted_at: int | None
    flagged: bool
    incognito: bool
    builds: dict[str, tuple[str, ...]]  # purpose -> build ids holding it

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "title": self.title,
            "messages": self.messages,
            "first_message_at": _time(self.first_message_at),
            "deleted_at": _time(self.deleted_at),
            "usage_policy_flag": self.flagged,
            "incognito": self.incognito,
            "builds": {purpose: list(ids) for purpose, ids in sorted(self.builds.items())},
        }


@dataclass(frozen=True, slots=True)
class PrivacyReport:
    account_id: str
    as_of: int
    plan: PlanChange | None
    plan_class: str | None
    deleted_at: int | None
    consent: ConsentState
    organization_consent: ConsentState | None
    answer: str
    used: bool
    bases: tuple[dict[str, Any], ...]
    conversations: tuple[ConversationSummary, ...]
    builds: dict[str, tuple[dict[str, Any], ...]]

    @property
    def known(self) -> bool:
        return self.plan is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "as_of": format_instant(self.as_of),
            "known": self.known,
            "plan": None if self.plan is None else self.plan.plan,
            "plan_class": self.plan_class,
            "organization_id": None if self.plan is None else self.plan.organization_id,
            "deleted_at": _time(self.deleted_at),
            "model_training": {"used": self.used, "answer": self.answer},
            "consent": self.consent.to_dict(),
            "organization_consent": (
                None if self.organization_consent is None else self.organization_consent.to_dict()
            ),
            "bases": list(self.bases),
            "conversations": [c.to_dict() for c in self.conversations],
            "builds": {purpose: list(rows) for purpose, rows in sorted(self.builds.items())},
        }


def _answer(
    *,
    plan_class: str | None,
    deleted: bool,
    consent: ConsentState,
    org: ConsentState | None,
) -> tuple[str, bool]:
    """(answer code, whether new conversations are used for model training)."""
    if deleted:
        return "account_deleted", False
    if plan_class is None:
        return "unknown_account", False
    if plan_class == "commercial":
        if org is not None and org.granted:
            return "organization_opted_in", True
        return "organization_not_opted_in", False
    return ("opted_in", True) if consent.granted else ("not_opted_in", False)


def _bases(
    policy: Policy,
    *,
    plan_class: str | None,
    deleted: bool,
    consent: ConsentState,
    org: ConsentState | None,
    flagged: bool,
) -> tuple[dict[str, Any], ...]:
    out = []
    for basis in policy.bases:
        applies = basis.plan_class is None or basis.plan_class == plan_class
        if basis.kind == "consent":
            ledger = consent if basis.consent_scope == "account" else org
            in_effect = applies and not deleted and ledger is not None and ledger.granted
        elif basis.kind == "flag":
            in_effect = flagged and not deleted
        else:  # feedback: every report the account sends, until its expiry
            in_effect = True
        out.append(
            {
                "id": basis.id,
                "rule": basis.rule,
                "kind": basis.kind,
                "purposes": list(basis.purposes),
                "text": basis.text,
                "applies": applies,
                "in_effect": in_effect,
                "retention": basis.retention,
            }
        )
    return tuple(out)


def _conversations(store: Store, account_id: str, as_of: int) -> list[tuple[str, ...]]:
    db = store.db
    return [
        tuple(row)
        for row in db.execute(
            "SELECT c.conversation_id,"
            " (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.conversation_id"
            "  AND m.at <= ?),"
            " (SELECT MIN(m.at) FROM messages m WHERE m.conversation_id = c.conversation_id"
            "  AND m.at <= ?),"
            " (SELECT MIN(d.at) FROM conversation_deletions d"
            "  WHERE d.conversation_id = c.conversation_id AND d.at <= ?),"
            " (SELECT COUNT(*) FROM flags f WHERE f.conversation_id = c.conversation_id"
            "  AND f.at <= ? AND NOT EXISTS (SELECT 1 FROM flag_clears x"
            "  WHERE x.flag_id = f.flag_id AND x.at <= ?)),"
            " c.incognito"
            " FROM conversations c WHERE c.account_id = ? ORDER BY c.first_seq",
            (as_of, as_of, as_of, as_of, as_of, account_id),
        )
    ]


def _lineage(
    store: Store, keys: KeyRing, conversation_ids: Sequence[str]
) -> dict[str, list[tuple[str, str, int, int]]]:
    """conversation id -> [(build_id, purpose, built_at, as_of)] of the builds holding it."""
    by_key = {
        item_key_bytes(conversation_item_key(keys.signing_key, cid)): cid
        for cid in conversation_ids
    }
    found: dict[str, list[tuple[str, str, int, int]]] = {}
    item_keys = list(by_key)
    for start in range(0, len(item_keys), _CHUNK):
        clause, params = store.db.in_list("i.item_key", item_keys[start : start + _CHUNK])
        for item_key, build_id, purpose, built_at, as_of in store.db.execute(
            "SELECT DISTINCT i.item_key, b.build_id, b.purpose, b.built_at, b.as_of"
            " FROM builds b CROSS JOIN build_items i"  # per build: (build_id, item_key) leads
            f" WHERE i.build_id = b.build_id AND {clause} AND b.pending_scratch IS NULL"
            " ORDER BY b.built_at, b.build_id",
            params,
        ):
            found.setdefault(by_key[bytes(item_key)], []).append(
                (str(build_id), str(purpose), int(built_at), int(as_of))
            )
    return found


def account_privacy(
    *, store: Store, policy: Policy, keys: KeyRing, account_id: str, as_of: int
) -> PrivacyReport:
    """The account's privacy answer as of ``as_of`` (see the module docstring)."""
    plans = [
        PlanChange(at=int(at), seq=int(seq), plan=plan, organization_id=org)
        for at, seq, plan, org in store.db.execute(
            "SELECT at, event_seq, plan, organization_id FROM account_plans WHERE account_id = ?",
            (account_id,),
        )
    ]
    plan = plan_at(plans, as_of)
    plan_class = None if plan is None else policy.plan_class(plan.plan)
    deletions = [at for at in store.account_deletions(account_id) if at <= as_of]
    deleted_at = min(deletions) if deletions else None
    consent = consent_state(
        scope="account",
        subject=account_id,
        ledger=store.consent_ledger("account", account_id),
        as_of=as_of,
    )
    org = None
    if plan is not None and plan.organization_id is not None:
        org = consent_state(
            scope="organization",
            subject=plan.organization_id,
            ledger=store.consent_ledger("organization", plan.organization_id),
            as_of=as_of,
        )
    rows = _conversations(store, account_id, as_of)
    ids = [str(r[0]) for r in rows]
    lineage = _lineage(store, keys, ids)
    titles = {cid: store.settings_as_of(cid, as_of).get("title") for cid in ids}
    conversations = []
    per_build: dict[tuple[str, str], tuple[int, int, int]] = {}
    for cid, count, first, deleted, flags, incognito in rows:
        builds: dict[str, list[str]] = {}
        for build_id, purpose, built_at, build_as_of in lineage.get(str(cid), []):
            builds.setdefault(purpose, []).append(build_id)
            _, _, n = per_build.get((purpose, build_id), (built_at, build_as_of, 0))
            per_build[(purpose, build_id)] = (built_at, build_as_of, n + 1)
        title = titles.get(str(cid))
        conversations.append(
            ConversationSummary(
                conversation_id=str(cid),
                title=title if isinstance(title, str) else None,
                messages=int(count),
                first_message_at=None if first is None else int(first),
                deleted_at=None if deleted is None else int(deleted),
                flagged=int(flags) > 0,
                incognito=bool(incognito),
                builds={p: tuple(b) for p, b in builds.items()},
            )
        )
    by_purpose: dict[str, list[dict[str, Any]]] = {}
    for (purpose, build_id), (built_at, build_as_of, n) in sorted(
        per_build.items(), key=lambda kv: (kv[0][0], kv[1][0], kv[0][1])
    ):
        by_purpose.setdefault(purpose, []).append(
            {
                "build_id": build_id,
                "built_at": format_instant(built_at),
                "as_of": format_instant(build_as_of),
                "conversations": n,
            }
        )
    answer, used = _answer(
        plan_class=plan_class, deleted=deleted_at is not None, consent=consent, org=org
    )
    return PrivacyReport(
        account_id=account_id,
        as_of=as_of,
        plan=plan,
        plan_class=plan_class,
        deleted_at=deleted_at,
        consent=consent,
        organization_consent=org,
        answer=answer,
        used=used,
        bases=_bases(
            policy,
            plan_class=plan_class,
            deleted=deleted_at is not None,
            consent=consent,
            org=org,
            flagged=any(int(r[4]) > 0 for r in rows),
        ),
        conversations=tuple(conversations),
        builds={p: tuple(rows) for p, rows in by_purpose.items()},
    )


@dataclass(frozen=True, slots=True)
class ConversationView:
    """One conversation as its owner sees it: messages and settings as of a time."""

    conversation_id: str
    account_id: str
    as_of: int
    settings: dict[str, Any]
    messages: tuple[MessageRow, ...]
    deleted_at: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "account_id": self.account_id,
            "as_of": format_instant(self.as_of),
            "title": self.settings.get("title"),
            "custom_style": self.settings.get("custom_style"),
            "preferences": self.settings.get("preferences"),
            "deleted_at": _time(self.deleted_at),
            "messages": [
                {
                    "message_id": m.message_id,
                    "role": m.role,
                    "at": format_instant(m.at),
                    "content": m.content,
                    "attachments": list(m.attachments),
                }
                for m in self.messages
            ],
        }


def conversation_view(*, store: Store, conversation_id: str, as_of: int) -> ConversationView:
    """The conversation's messages and settings as of ``as_of``. Raises NotFoundError."""
    account_id = store.conversation_owner(conversation_id)
    deletions = store.db.execute(
        "SELECT MIN(at) FROM conversation_deletions WHERE conversation_id = ? AND at <= ?",
        (conversation_id, as_of),
    )
    deleted = deletions[0][0] if deletions else None
    return ConversationView(
        conversation_id=conversation_id,
        account_id=account_id,
        as_of=as_of,
        settings=store.settings_as_of(conversation_id, as_of),
        messages=tuple(store.messages_until(conversation_id, as_of)),
        deleted_at=None if deleted is None else int(deleted),
    )
