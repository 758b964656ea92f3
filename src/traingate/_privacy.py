"""One account's answer to "Is my data used for model training?", as data, with the evidence.

``account_privacy`` is the one place this answer is computed; ``traingate privacy``, ``GET
/v1/accounts/{id}/privacy`` and the privacy center all call it. For every purpose of the
policies in force it gives (SPEC §4) ``{"used", "bases", "conversations"}``: the account's
conversations (those it first named) holding at least one message eligible for the purpose as
of T, decided by the scalar evaluator (``explain_conversation``) under the policy in force at
each message's time, so the same messages a build of that purpose as of T holds. Nothing here
knows what a basis means: a past plan, an organization's consent, a flag, a mode, an expiry are
all part of the answer because the evaluator decides them.

Beside it, the evidence: the plans the account had, every consent ledger its bases read (per
scope, subject and setting, with the setting's default), whether each consent basis of the policy
in force at T covers the account's new messages, its conversations with the builds holding them
(lineage), and every policy used (id, version, sha256). Feedback reports are de-linked from the
account by design and are never attributed to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from traingate._core.facts import (
    ConsentChange,
    ConsentKey,
    ConversationFacts,
    PlanChange,
    consent_at,
    deleted_by,
    flag_active,
    plan_at,
)
from traingate._core.policy import Policy, PolicySet, explain_conversation, policy_at
from traingate._core.policy.coverage import content_expiry
from traingate._core.policy.model import ConsentBasis, FeedbackBasis
from traingate._core.timeutil import format_instant
from traingate._datasets.lineage import holdings, item_key_bytes
from traingate._datasets.records import conversation_item_key
from traingate._keys import KeyRing
from traingate._store.store import MessageRow, Store

__all__ = [
    "ConsentState",
    "ConversationSummary",
    "ConversationView",
    "PrivacyReport",
    "PurposeAnswer",
    "PurposeUse",
    "SettingState",
    "account_privacy",
    "consent_state",
    "conversation_view",
]


def _time(micros: int | None) -> str | None:
    return None if micros is None else format_instant(micros)


# -- consent ledgers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsentState:
    """A consent ledger as of a time: in force or not, since when, from which source.
    ``granted`` is the policy's ``default`` for a subject without any event up to then."""

    scope: str
    subject: str
    granted: bool
    since: int | None  # start of the current unbroken run of grants (or of denials)
    source: str | None
    history: tuple[ConsentChange, ...]
    setting: str = ""
    default: bool = False

    @property
    def explicit(self) -> bool:
        """Whether an event (not the default) decides the state."""
        return self.since is not None

    @property
    def ever_granted(self) -> bool:
        return any(change.granted for change in self.history)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "subject": self.subject,
            "setting": self.setting,
            "granted": self.granted,
            "default": "granted" if self.default else "denied",
            "since": _time(self.since),
            "source": self.source,
            "history": [
                {"at": format_instant(c.at), "granted": c.granted, "source": c.source}
                for c in self.history
            ],
        }


def consent_state(
    *,
    scope: str,
    subject: str,
    ledger: Sequence[ConsentChange],
    as_of: int,
    setting: str = "",
    default: bool = False,
) -> ConsentState:
    """The consent in force at ``as_of``, and since when: for a grant, the first grant after
    the last denial (a new grant covers new messages only); for a denial, the first denial
    after the last instant consent was in force. No event: the ``default``, since nothing."""
    known = tuple(sorted((c for c in ledger if c.at <= as_of), key=lambda c: (c.at, c.seq)))
    current = consent_at(known, as_of)
    if current is None:
        return ConsentState(scope, subject, default, None, None, known, setting, default)
    if current.granted:
        last_denial = max((c.at for c in known if not c.granted), default=None)
        start = next(c for c in known if c.granted and (last_denial is None or c.at > last_denial))
    else:
        in_force = [c.at for c in known if c.granted and consent_at(known, c.at) == c]
        last_grant = max(in_force, default=None)
        start = next(
            c for c in known if not c.granted and (last_grant is None or c.at >= last_grant)
        )
    return ConsentState(
        scope, subject, current.granted, start.at, start.source, known, setting, default
    )


@dataclass(frozen=True, slots=True)
class SettingState:
    """A consent basis of the policy in force at as-of, for this account then: whether it
    applies to the account's plan, whose consent it reads, and whether it covers messages the
    account sends from then on (in a mode it does not exclude)."""

    basis: ConsentBasis
    policy: Policy
    applies: bool
    consent: ConsentState | None  # None: the plan names no subject (no organization)

    @property
    def granted(self) -> bool:
        return self.consent is not None and self.consent.granted

    @property
    def covers_new_messages(self) -> bool:
        return self.applies and self.granted

    def to_dict(self) -> dict[str, Any]:
        basis = self.basis
        return {
            "basis": basis.id,
            "policy": self.policy.identity(),
            "setting": basis.setting,
            "scope": basis.consent_scope,
            "subject": None if self.consent is None else self.consent.subject,
            "plan_class": basis.plan_class,
            "applies": self.applies,
            "granted": self.granted,
            "default": basis.default,
            "since": None if self.consent is None else _time(self.consent.since),
            "source": None if self.consent is None else self.consent.source,
            "covers_new_messages": self.covers_new_messages,
            "exclude_modes": list(basis.exclude_modes),
            "revocation": basis.revocation,
            "coverage": basis.coverage,
        }


# -- what is used ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PurposeAnswer:
    """SPEC §4: the account's conversations with a message eligible for one purpose as of T,
    and the bases under which those messages are eligible (sorted, without repeats)."""

    conversations: tuple[str, ...]
    bases: tuple[str, ...]

    @property
    def used(self) -> bool:
        return bool(self.conversations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "used": self.used,
            "bases": list(self.bases),
            "conversations": list(self.conversations),
        }


@dataclass(frozen=True, slots=True)
class PurposeUse:
    """How one purpose judges one conversation's messages as of T."""

    judged: int  # messages at or before as-of
    eligible: int
    bases: tuple[str, ...]  # of the eligible messages, in the order first seen
    reasons: tuple[str, ...]  # rule ids given for the messages that are not eligible
    plans: tuple[tuple[str, str | None], ...]  # (plan, organization) at eligible messages' times
    policies: tuple[tuple[str, int], ...]  # (id, version) of the policies that decided
    first_eligible_at: int | None
    last_eligible_at: int | None
    expired_under: tuple[str, ...]  # retention rules whose keep ran out (content expiry)

    @property
    def used(self) -> bool:
        return self.eligible > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "eligible_messages": self.eligible,
            "messages": self.judged,
            "bases": list(self.bases),
            "reasons": list(self.reasons),
            "plans": [{"plan": plan, "organization_id": org} for plan, org in self.plans],
            "policies": [{"id": pid, "version": version} for pid, version in self.policies],
            "first_eligible_at": _time(self.first_eligible_at),
            "last_eligible_at": _time(self.last_eligible_at),
            "expired_under": list(self.expired_under),
        }


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    conversation_id: str
    title: str | None
    messages: int
    first_message_at: int | None
    deleted_at: int | None
    flagged: bool
    mode: str
    builds: dict[str, tuple[str, ...]]  # purpose -> build ids holding it
    uses: dict[str, PurposeUse] = field(default_factory=dict)  # purpose -> how it judges it

    @property
    def incognito(self) -> bool:
        return self.mode == "incognito"

    def used_for(self, purpose: str) -> bool:
        use = self.uses.get(purpose)
        return use is not None and use.used

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "title": self.title,
            "mode": self.mode,
            "incognito": self.incognito,
            "messages": self.messages,
            "first_message_at": _time(self.first_message_at),
            "deleted_at": _time(self.deleted_at),
            "flagged": self.flagged,
            "purposes": {purpose: use.to_dict() for purpose, use in self.uses.items()},
            "builds": {purpose: list(ids) for purpose, ids in sorted(self.builds.items())},
        }


@dataclass(frozen=True, slots=True)
class PrivacyReport:
    """The account's answer as of ``as_of`` under ``policies``: ``purposes`` is SPEC §4's
    answer; the rest is its evidence."""

    account_id: str
    as_of: int
    known: bool  # the store holds something of the account (a plan, a conversation, a deletion)
    policies: PolicySet
    used_policies: tuple[Policy, ...]  # every policy the answer used, by effective date
    plans: tuple[PlanChange, ...]  # the plan history up to as-of, in order
    deleted_at: int | None
    purposes: dict[str, PurposeAnswer]
    settings: tuple[SettingState, ...]  # the consent bases of the policy in force at as-of
    consents: tuple[ConsentState, ...]  # every ledger those and earlier bases read
    conversations: tuple[ConversationSummary, ...]
    builds: dict[str, tuple[dict[str, Any], ...]]

    @property
    def policy(self) -> Policy:
        """The policy in force at as-of."""
        return self.policies.in_force(self.as_of)

    @property
    def plan(self) -> PlanChange | None:
        return plan_at(self.plans, self.as_of)

    @property
    def plan_class(self) -> str | None:
        plan = self.plan
        return None if plan is None else self.policies.plans.get(plan.plan)

    @property
    def consent(self) -> ConsentState:
        """The account's own setting: that of the policy's first account-scope consent basis
        (else the first setting it declares)."""
        for state in self.settings:
            if state.basis.consent_scope == "account" and state.consent is not None:
                return state.consent
        for ledger in self.consents:
            if ledger.scope == "account":
                return ledger
        return ConsentState("account", self.account_id, False, None, None, ())

    @property
    def organization_consent(self) -> ConsentState | None:
        """The consent of the account's organization at as-of, for the first organization-scope
        consent basis that applies to its plan."""
        for state in self.settings:
            if state.basis.consent_scope == "organization" and state.applies:
                return state.consent
        return None

    def conversation(self, conversation_id: str) -> ConversationSummary | None:
        return next((c for c in self.conversations if c.conversation_id == conversation_id), None)

    def basis_in_use(self, basis_id: str) -> bool:
        return any(basis_id in answer.bases for answer in self.purposes.values())

    def _bases(self) -> list[dict[str, Any]]:
        plan_class = self.plan_class
        deleted = self.deleted_at is not None
        settings = {s.basis.id: s for s in self.settings}
        out = []
        for basis in self.policy.bases:
            in_use = self.basis_in_use(basis.id)
            if isinstance(basis, ConsentBasis):
                applies = basis.plan_class == plan_class
                state = settings.get(basis.id)
                new = state is not None and state.covers_new_messages and not deleted
                in_effect = in_use or new
            else:
                applies = True
                in_effect = in_use
            if isinstance(basis, FeedbackBasis):  # every report the account sends
                in_effect = self.known and not deleted
            out.append(
                {
                    "id": basis.id,
                    "rule": basis.rule,
                    "kind": basis.kind,
                    "purposes": list(basis.purposes),
                    "text": basis.text,
                    "parameters": basis.model_dump(
                        mode="json", exclude={"id", "rule", "kind", "purposes", "text"}
                    ),
                    "applies": applies,
                    "in_effect": in_effect,
                    "used": in_use,
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        plan = self.plan
        organization = self.organization_consent
        return {
            "account_id": self.account_id,
            "as_of": format_instant(self.as_of),
            "known": self.known,
            "purposes": {purpose: a.to_dict() for purpose, a in self.purposes.items()},
            "policy": self.policy.identity(),
            "policies": [p.identity() for p in self.used_policies],
            "plan": None if plan is None else plan.plan,
            "plan_class": self.plan_class,
            "organization_id": None if plan is None else plan.organization_id,
            "plan_history": [
                {
                    "at": format_instant(p.at),
                    "plan": p.plan,
                    "plan_class": self.policies.plans.get(p.plan),
                    "organization_id": p.organization_id,
                }
                for p in self.plans
            ],
            "deleted_at": _time(self.deleted_at),
            "settings": [s.to_dict() for s in self.settings],
            "consent": self.consent.to_dict(),
            "organization_consent": None if organization is None else organization.to_dict(),
            "consents": [c.to_dict() for c in self.consents],
            "bases": self._bases(),
            "conversations": [c.to_dict() for c in self.conversations],
            "builds": {purpose: list(rows) for purpose, rows in sorted(self.builds.items())},
        }


# -- reading the store ------------------------------------------------------------------------


def _lineage(
    store: Store, keys: KeyRing, conversation_ids: Sequence[str]
) -> dict[str, list[tuple[str, str, int, int]]]:
    """conversation id -> [(build_id, purpose, built_at, as_of)] of the builds holding it,
    oldest first (``lineage.holdings``: each build's lineage looked up by key)."""
    by_key = {
        item_key_bytes(conversation_item_key(keys.signing_key, cid)): cid
        for cid in conversation_ids
    }
    found: dict[str, list[tuple[str, str, int, int]]] = {}
    if not by_key:
        return found
    for build, items in holdings(store.db, item_keys=list(by_key)):
        row = (build.build_id, build.purpose, build.built_at, build.as_of)
        for conversation_id in dict.fromkeys(by_key[item_key] for item_key, *_ in items):
            found.setdefault(conversation_id, []).append(row)
    return found


def _plans(store: Store, account_id: str) -> tuple[PlanChange, ...]:
    rows = store.db.execute(
        "SELECT at, event_seq, plan, organization_id FROM account_plans WHERE account_id = ?",
        (account_id,),
    )
    changes = (
        PlanChange(at=int(at), seq=int(seq), plan=str(plan), organization_id=org)
        for at, seq, plan, org in rows
    )
    return tuple(sorted(changes, key=lambda p: (p.at, p.seq)))


def _conversation_ids(store: Store, account_id: str) -> list[str]:
    return [
        str(row[0])
        for row in store.db.execute(
            "SELECT conversation_id FROM conversations WHERE account_id = ? ORDER BY first_seq",
            (account_id,),
        )
    ]


def _consent_keys(
    policies: PolicySet, account_id: str, plans: Iterable[PlanChange]
) -> dict[ConsentKey, bool]:
    """Every (scope, subject, setting) a consent basis of the set reads for this account, with
    the default of the basis that reads it (the latest policy's first such basis)."""
    organizations = sorted({p.organization_id for p in plans if p.organization_id})
    keys: dict[ConsentKey, bool] = {}
    for policy in reversed(policies.policies):
        for basis in policy.bases:
            if not isinstance(basis, ConsentBasis):
                continue
            subjects = [account_id] if basis.consent_scope == "account" else organizations
            for subject in subjects:
                keys.setdefault(
                    (basis.consent_scope, subject, basis.setting), basis.default_granted
                )
    return keys


def _use(
    policies: PolicySet, facts: ConversationFacts, purpose: str, as_of: int
) -> tuple[PurposeUse, list[tuple[str, int]]]:
    decided = explain_conversation(policy=policies, facts=facts, purpose=purpose, as_of=as_of)
    bases: list[str] = []
    reasons: list[str] = []
    plans: list[tuple[str, str | None]] = []
    used: list[tuple[str, int]] = []
    expired: list[str] = []
    eligible = [m.at for m, d in decided if d.eligible]
    for message, decision in decided:
        if decision.policy_id is not None and decision.policy_version is not None:
            used.append((decision.policy_id, decision.policy_version))
        if decision.eligible:
            assert decision.basis is not None
            bases.append(decision.basis)
            plan = plan_at(facts.plans, message.at)
            if plan is not None:
                plans.append((plan.plan, plan.organization_id))
            continue
        reasons.extend(decision.reasons)
        deciding = policy_at(policies, message.at)
        if deciding.vocabulary.decision.content_expiry in decision.reasons:
            expiry = content_expiry(deciding, facts, message)
            if expiry is not None:
                expired.append(expiry[1])
    return (
        PurposeUse(
            judged=len(decided),
            eligible=len(eligible),
            bases=tuple(dict.fromkeys(bases)),
            reasons=tuple(dict.fromkeys(reasons)),
            plans=tuple(dict.fromkeys(plans)),
            policies=tuple(dict.fromkeys(used)),
            first_eligible_at=min(eligible, default=None),
            last_eligible_at=max(eligible, default=None),
            expired_under=tuple(dict.fromkeys(expired)),
        ),
        used,
    )


def _settings(
    policy: Policy,
    *,
    plan: PlanChange | None,
    plan_class: str | None,
    ledgers: dict[ConsentKey, tuple[ConsentChange, ...]],
    account_id: str,
    as_of: int,
) -> tuple[SettingState, ...]:
    """Each consent basis of ``policy`` for this account at ``as_of``: its subject's ledger
    read with the basis's own ``default`` (two bases may read one ledger with others)."""
    out = []
    for basis in policy.bases:
        if not isinstance(basis, ConsentBasis):
            continue
        scope = basis.consent_scope
        organization = None if plan is None else plan.organization_id
        subject = account_id if scope == "account" else organization
        state = None
        if subject:
            state = consent_state(
                scope=scope,
                subject=subject,
                setting=basis.setting,
                default=basis.default_granted,
                ledger=ledgers.get((scope, subject, basis.setting), ()),
                as_of=as_of,
            )
        out.append(
            SettingState(
                basis=basis, policy=policy, applies=basis.plan_class == plan_class, consent=state
            )
        )
    return tuple(out)


def account_privacy(
    *, store: Store, policy: Policy | PolicySet, keys: KeyRing, account_id: str, as_of: int
) -> PrivacyReport:
    """The account's privacy answer as of ``as_of`` (see the module docstring): every message
    decided under the policy of ``policy`` in force at its own time."""
    policies = PolicySet.of(policy)
    in_force = policies.in_force(as_of)
    all_plans = _plans(store, account_id)
    plans = tuple(p for p in all_plans if p.at <= as_of)
    plan = plan_at(plans, as_of)
    plan_class = None if plan is None else policies.plans.get(plan.plan)
    deletions = store.account_deletions(account_id)
    deleted_at = min((at for at in deletions if at <= as_of), default=None)

    defaults = _consent_keys(policies, account_id, all_plans)
    ledgers = {key: store.consent_ledger(*key) for key in defaults}

    ids = _conversation_ids(store, account_id)
    lineage = _lineage(store, keys, ids)
    purposes = list(policies.purposes)
    found: dict[str, tuple[set[str], set[str]]] = {p: (set(), set()) for p in purposes}
    used_policies: set[tuple[str, int]] = {(in_force.id, in_force.version)}
    conversations = []
    per_build: dict[tuple[str, str], tuple[int, int, int]] = {}
    for cid in ids:
        facts = store.conversation_facts(cid)
        uses: dict[str, PurposeUse] = {}
        for purpose in purposes:
            use, deciders = _use(policies, facts, purpose, as_of)
            uses[purpose] = use
            used_policies.update(deciders)
            if use.used:
                found[purpose][0].add(cid)
                found[purpose][1].update(use.bases)
        builds: dict[str, list[str]] = {}
        for build_id, purpose, built_at, build_as_of in lineage.get(cid, []):
            builds.setdefault(purpose, []).append(build_id)
            _, _, n = per_build.get((purpose, build_id), (built_at, build_as_of, 0))
            per_build[(purpose, build_id)] = (built_at, build_as_of, n + 1)
        seen = [m.at for m in facts.messages if m.at <= as_of]
        title = store.settings_as_of(cid, as_of).get("title")
        conversations.append(
            ConversationSummary(
                conversation_id=cid,
                title=title if isinstance(title, str) else None,
                messages=len(seen),
                first_message_at=min(seen, default=None),
                deleted_at=min(
                    (at for at in facts.conversation_deleted if at <= as_of), default=None
                ),
                flagged=any(flag_active(f, as_of) for f in facts.flags)
                and not deleted_by(facts.conversation_deleted, as_of),
                mode=facts.mode,
                builds={p: tuple(b) for p, b in builds.items()},
                uses=uses,
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
    order = {(p.id, p.version): i for i, p in enumerate(policies.policies)}
    return PrivacyReport(
        account_id=account_id,
        as_of=as_of,
        known=bool(all_plans or ids or deletions),
        policies=policies,
        used_policies=tuple(
            policies.named(pid, version)
            for pid, version in sorted(used_policies, key=lambda k: order.get(k, len(order)))
        ),
        plans=plans,
        deleted_at=deleted_at,
        purposes={
            purpose: PurposeAnswer(
                conversations=tuple(sorted(found[purpose][0])),
                bases=tuple(sorted(found[purpose][1])),
            )
            for purpose in purposes
        },
        settings=_settings(
            in_force,
            plan=plan,
            plan_class=plan_class,
            ledgers=ledgers,
            account_id=account_id,
            as_of=as_of,
        ),
        consents=tuple(
            consent_state(
                scope=scope,
                subject=subject,
                setting=setting,
                default=defaults[(scope, subject, setting)],
                ledger=ledger,
                as_of=as_of,
            )
            for (scope, subject, setting), ledger in ledgers.items()
        ),
        conversations=tuple(conversations),
        builds={p: tuple(rows) for p, rows in by_purpose.items()},
    )


# -- one conversation, as its owner sees it ------------------------------------------------------


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
