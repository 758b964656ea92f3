"""The scalar evaluator: one item, one purpose, one as-of, with its reasons.

This is the evaluator that explains. The bulk evaluator (``traingate.build``) reads the same
policy and must agree with this one on every item; property tests hold them equal.

Each function takes one policy or a ``PolicySet``; with a set, an item is decided under the
policy in force at its time (a message at its ``at``, a report at its submission), and the
decision names that policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from traingate.facts import (
    ConversationFacts,
    MessageFact,
    consent_at,
    consent_held,
    deleted_by,
    flag_active,
    plan_at,
)
from traingate.policy.model import Basis, Policy
from traingate.policy.versions import PolicySet, policy_at

__all__ = ["Decision", "decide_message", "decide_report", "explain_conversation"]


@dataclass(frozen=True, slots=True)
class Decision:
    """Eligible under ``basis``, or not, because of ``reasons`` (rule ids of the policy
    ``policy_id`` version ``policy_version``, the one that decided)."""

    eligible: bool
    basis: str | None
    reasons: tuple[str, ...]
    policy_id: str | None = None
    policy_version: int | None = None

    @property
    def rule_ids(self) -> tuple[str, ...]:
        """The rules that decided: the basis when eligible, else the reasons for denial."""
        return (self.basis,) if self.basis is not None else self.reasons

    @property
    def primary_reason(self) -> str:
        """The one reason a denial is counted under in manifests."""
        return self.reasons[0] if self.reasons else "default_deny"


def _grant(policy: Policy, basis: Basis) -> Decision:
    return Decision(
        eligible=True,
        basis=basis.id,
        reasons=(basis.id,),
        policy_id=policy.id,
        policy_version=policy.version,
    )


def _deny(policy: Policy, reasons: list[str]) -> Decision:
    return Decision(
        eligible=False,
        basis=None,
        reasons=tuple(reasons or ["default_deny"]),
        policy_id=policy.id,
        policy_version=policy.version,
    )


def decide_message(
    *,
    policy: Policy | PolicySet,
    facts: ConversationFacts,
    message: MessageFact,
    purpose: str,
    as_of: int,
) -> Decision:
    """Decide one message (``message.at <= as_of``) of ``facts`` under the policy in force at
    its time: its exclusions, then bases of kind consent and flag (SPEC §1 rules 1-4, 6-8)."""
    return _decide_message(
        policy_at(policy, message.at), facts=facts, message=message, purpose=purpose, as_of=as_of
    )


def _decide_message(
    policy: Policy, *, facts: ConversationFacts, message: MessageFact, purpose: str, as_of: int
) -> Decision:
    policy.require_purpose(purpose)
    blocked = list(policy.excluded_by(item="message", incognito=facts.incognito))
    if deleted_by(facts.conversation_deleted, as_of):
        blocked.append("conversation_deleted")
    if deleted_by(facts.account_deleted, as_of):
        blocked.append("account_deleted")
    if blocked:
        return _deny(policy, blocked)
    plan = plan_at(facts.plans, message.at)
    if plan is None:
        return _deny(policy, ["unknown_account"])
    plan_class = policy.plan_class(plan.plan)
    reasons: list[str] = []
    for basis in policy.message_bases(purpose):
        if basis.kind == "flag":
            if any(flag_active(flag, as_of) for flag in facts.flags):
                return _grant(policy, basis)
            reasons.append("no_active_flag")
        elif basis.kind == "consent":
            subject = facts.account_id if basis.consent_scope == "account" else plan.organization_id
            ledger = facts.consent(basis.consent_scope or "account", subject)
            if basis.plan_class != plan_class:
                current = consent_at(ledger, message.at) if subject is not None else None
                if basis.consent_scope == "account" and current is not None and current.granted:
                    reasons.append("account_scope_consent_ignored")
                continue
            granted, held = consent_held(ledger, message.at, as_of)
            if granted and held:
                return _grant(policy, basis)
            reasons.append("consent_revoked" if granted else "no_consent")
    # account_scope_consent_ignored explains a denial; put the deciding reason first.
    reasons.sort(key=lambda reason: reason == "account_scope_consent_ignored")
    return _deny(policy, reasons)


def explain_conversation(
    *, policy: Policy | PolicySet, facts: ConversationFacts, purpose: str, as_of: int
) -> list[tuple[MessageFact, Decision]]:
    """Every message of the conversation that exists at as-of, in time order, with its decision."""
    messages = sorted((m for m in facts.messages if m.at <= as_of), key=lambda m: (m.at, m.seq))
    return [
        (m, decide_message(policy=policy, facts=facts, message=m, purpose=purpose, as_of=as_of))
        for m in messages
    ]


def decide_report(
    *,
    policy: Policy | PolicySet,
    submitted_at: int,
    purpose: str,
    as_of: int,
    incognito: bool = False,
) -> Decision:
    """Decide one feedback report (``submitted_at <= as_of``) under the policy in force at its
    submission: its exclusions (``incognito``: the snapshot's conversation was marked
    incognito), then the feedback basis (rule 5)."""
    deciding = policy_at(policy, submitted_at)
    deciding.require_purpose(purpose)
    excluded = deciding.excluded_by(item="feedback_report", incognito=incognito)
    if excluded:
        return _deny(deciding, list(excluded))
    basis = deciding.feedback_basis
    if basis is None or purpose not in basis.purposes:
        return _deny(deciding, ["default_deny"])
    expiry = deciding.feedback_expiry(submitted_at)
    if expiry is not None and as_of >= expiry:
        return _deny(deciding, ["feedback_expired"])
    return _grant(deciding, basis)
