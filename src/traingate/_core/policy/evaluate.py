"""The scalar evaluator: one item, one purpose, one as-of, with its reasons.

This is the evaluator that explains. The bulk evaluator (``traingate._datasets``) reads the same
policy and must agree with this one on every item; property tests hold them equal.

Each function takes one policy or a ``PolicySet``; with a set, an item is decided under the
policy in force at its time (a message at its ``at``, a report at its submission), and the
decision names that policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from traingate._core.facts import (
    ConversationFacts,
    MessageFact,
    consent_at,
    deleted_by,
    plan_at,
)
from traingate._core.policy.coverage import content_expiry, coverage, covered, own_consent
from traingate._core.policy.model import FlagBasis, Policy
from traingate._core.policy.versions import PolicySet, policy_at

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
        return self.reasons[0]


def _grant(policy: Policy, basis_id: str) -> Decision:
    return Decision(
        eligible=True,
        basis=basis_id,
        reasons=(basis_id,),
        policy_id=policy.id,
        policy_version=policy.version,
    )


def _deny(policy: Policy, reasons: list[str]) -> Decision:
    return Decision(
        eligible=False,
        basis=None,
        reasons=tuple(reasons or [policy.vocabulary.decision.no_basis]),
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
    said = policy.vocabulary
    blocked = []
    if deleted_by(facts.conversation_deleted, as_of):
        blocked.append(said.decision.conversation_gone)
    if deleted_by(facts.account_deleted, as_of):
        blocked.append(said.decision.account_gone)
    expiry = content_expiry(policy, facts, message)
    if expiry is not None and expiry[0] <= as_of:
        blocked.append(said.decision.content_expiry)
    if blocked:
        return _deny(policy, blocked)
    plan = plan_at(facts.plans, message.at)
    if plan is None:
        return _deny(policy, [said.decision.plan_unknown])
    reasons: list[str] = []
    late: list[str] = []  # reasons that explain a denial but never decide it
    for basis in policy.message_bases(purpose):
        if isinstance(basis, FlagBasis):
            if basis.excludes(facts.mode):
                reasons.append(said.flag.mode)
            elif covered(coverage(policy, basis, facts, message), as_of):
                return _grant(policy, basis.id)
            else:
                reasons.append(said.flag.inactive)
            continue
        own = own_consent(policy, basis, facts, message)
        if own is None:  # another plan class
            explicit = consent_at(
                facts.consent("account", facts.account_id, basis.setting), message.at
            )
            if basis.consent_scope == "account" and explicit is not None and explicit.granted:
                late.append(said.consent.scope_ignored)
            continue
        if basis.excludes(facts.mode):
            reasons.append(said.consent.mode)
        elif covered(coverage(policy, basis, facts, message), as_of):
            return _grant(policy, basis.id)
        else:
            reasons.append(said.consent.revoked if own else said.consent.not_granted)
    return _deny(policy, list(dict.fromkeys(reasons + late)))


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
    mode: str = "standard",
    comment: str | None = None,
) -> Decision:
    """Decide one feedback report (``submitted_at <= as_of``) under the policy in force at its
    submission (SPEC §1 rule 5, §5 basis ``feedback``): ``mode`` is its conversation's mode,
    ``comment`` the report's comment (judged before redaction: blank is blank either way)."""
    deciding = policy_at(policy, submitted_at)
    deciding.require_purpose(purpose)
    said = deciding.vocabulary.feedback
    basis = deciding.feedback_basis
    if basis is None or purpose not in basis.purposes:
        return _deny(deciding, [])
    if basis.excludes(mode):
        return _deny(deciding, [said.mode])
    if basis.requires_comment and not (comment or "").strip():
        return _deny(deciding, [said.comment_missing])
    expiry = basis.expiry(submitted_at)
    if expiry is not None and as_of >= expiry:
        return _deny(deciding, [said.expiry])
    return _grant(deciding, basis.id)
