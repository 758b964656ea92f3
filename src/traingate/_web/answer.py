"""The privacy center's answer: a ``PrivacyReport`` (``traingate._privacy``, the same answer as
``traingate privacy`` and ``GET /v1/accounts/{id}/privacy``) turned into a headline and reasons.
Pure: no I/O, no request.

Nothing here knows what a basis means. The headline follows from the answer: the conversations
used for the purposes that consent bases grant ("model training" in every shipped policy), and
whether a consent basis of the policy in force covers the messages the account sends from now
on. Every reason names the rule ids that decided, with their texts from the policy that decided
(the policy in force at the messages' time, or now); ids and texts come from the policy.

The answer's parts: the policy's words and rule ids in ``words.py``, each reason and the toggle
in ``reasons.py``, the facts, headline and summary in ``headline.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from traingate._core.policy import Policy, PolicySet
from traingate._privacy import PrivacyReport
from traingate._web.headline import Facts, Tone, headline_unused, headline_used, summary_of
from traingate._web.reasons import (
    Reason,
    Toggle,
    feedback_reason,
    not_used_reasons,
    other_purpose_reasons,
    retention_reason,
    setting_reasons,
    toggle_for,
    used_reason,
)
from traingate._web.render import human_date
from traingate._web.words import RuleRef, deciding_refs, rule_refs

__all__ = ["Answer", "PurposeRow", "answer_for"]


@dataclass(frozen=True, slots=True)
class PurposeRow:
    """One purpose of the answer, for the table of what is used."""

    purpose: str
    text: str
    conversations: tuple[str, ...]
    bases: tuple[RuleRef, ...]
    builds: tuple[dict[str, object], ...]


@dataclass(frozen=True, slots=True)
class Answer:
    tone: Tone
    eyebrow: str
    headline: str
    summary: str
    reasons: tuple[Reason, ...]
    can_toggle: bool  # the account's own setting decides (an account-scope basis applies)
    training_on: bool
    toggle: Toggle | None = None
    used: tuple[str, ...] = ()  # conversations used for the training purposes now
    purposes: tuple[PurposeRow, ...] = ()

    @property
    def rules(self) -> tuple[RuleRef, ...]:
        """Every rule the reasons name, once, in order."""
        seen: dict[str, RuleRef] = {}
        for reason in self.reasons:
            for ref in reason.rules:
                seen.setdefault(ref.id, ref)
        if self.toggle is not None:
            for ref in self.toggle.rules:
                seen.setdefault(ref.id, ref)
        return tuple(seen.values())


def _purpose_rows(report: PrivacyReport) -> tuple[PurposeRow, ...]:
    rows = []
    for purpose, answer in report.purposes.items():
        deciders = [
            d for c in report.conversations if purpose in c.uses for d in c.uses[purpose].policies
        ]
        rows.append(
            PurposeRow(
                purpose=purpose,
                text=report.policies.purposes.get(purpose, purpose),
                conversations=answer.conversations,
                bases=deciding_refs(report, answer.bases, deciders),
                builds=tuple(report.builds.get(purpose, ())),
            )
        )
    return tuple(rows)


def _reasons(facts: Facts) -> list[Reason]:
    report, now = facts.report, facts.report.policy
    said = now.vocabulary
    reasons = [used_reason(report, c, facts.purposes) for c in facts.used]
    for state in facts.applicable:
        reasons.extend(setting_reasons(report, state))
    ignored = [s for s in facts.settings if not s.applies and s.basis.consent_scope == "account"]
    if ignored and facts.organization is not None:
        reasons.append(
            Reason(
                "On your plan your own training setting has no effect: your organization's "
                "agreement decides.",
                rule_refs(now, said.consent.scope_ignored),
            )
        )
    if not facts.applicable:
        reasons.append(
            Reason(
                "No basis of the policy lets conversations on your plan train the models: "
                "nothing is used unless a basis allows it.",
                rule_refs(now, said.decision.no_basis),
            )
        )
    used_ids = [c.conversation_id for c in facts.used]
    reasons.extend(not_used_reasons(report, facts.purposes, used_ids))
    reasons.extend(other_purpose_reasons(report, facts.purposes))
    reasons.append(
        Reason(
            "Deleting a conversation removes it from every dataset built after the deletion.",
            rule_refs(now, said.decision.conversation_gone),
        )
    )
    for extra in (retention_reason(now), feedback_reason(now, deleted=False)):
        if extra is not None:
            reasons.append(extra)
    return reasons


def _closed(report: PrivacyReport) -> Answer | None:
    """The answer of a deleted account, or of one without a plan, when nothing is used."""
    now = report.policy
    said = now.vocabulary
    if report.deleted_at is not None:
        reasons = [
            Reason(
                "From the deletion on, no conversation of the account serves any purpose.",
                rule_refs(now, said.decision.account_gone),
            )
        ]
        feedback = feedback_reason(now, deleted=True)
        return Answer(
            tone="no",
            eyebrow="Account deleted",
            headline="No. Your account was deleted; none of its conversations is used.",
            summary=f"The account was deleted on {human_date(report.deleted_at)}.",
            reasons=tuple(reasons + ([feedback] if feedback is not None else [])),
            can_toggle=False,
            training_on=False,
            purposes=_purpose_rows(report),
        )
    if report.plan is None:
        return Answer(
            tone="no",
            eyebrow="No plan on record",
            headline="No. Nothing of this account is used.",
            summary="We have no plan on record for this account.",
            reasons=(
                Reason(
                    "A message is used only when the account's plan at its time is known.",
                    rule_refs(now, said.decision.plan_unknown),
                ),
            ),
            can_toggle=False,
            training_on=False,
            purposes=_purpose_rows(report),
        )
    return None


def answer_for(report: PrivacyReport, policy: Policy | PolicySet | None = None) -> Answer:
    """The headline and the reasons, with rule ids, for the report (``policy`` is accepted for
    older callers; the report carries the policies it used)."""
    del policy
    facts = Facts.of(report)
    if not facts.used:
        closed = _closed(report)
        if closed is not None:
            return closed
    tone, eyebrow, headline = headline_used(facts) if facts.used else headline_unused(facts)
    toggle = toggle_for(facts.own, deleted=report.deleted_at is not None)
    return Answer(
        tone=tone,
        eyebrow=eyebrow,
        headline=headline,
        summary=summary_of(facts),
        reasons=tuple(dict.fromkeys(_reasons(facts))),
        can_toggle=toggle is not None,
        training_on=bool(facts.on),
        toggle=toggle,
        used=tuple(c.conversation_id for c in facts.used),
        purposes=_purpose_rows(report),
    )
