"""The privacy center's words: a ``PrivacyReport`` (``traingate.privacy``, the same data as
``GET /v1/accounts/{id}/privacy``) turned into a headline and reasons, each reason naming the
policy's rule ids. Pure: no I/O, no request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from traingate.policy import Policy
from traingate.privacy import ConsentState, PrivacyReport
from traingate.web.render import human_date

__all__ = ["Answer", "Reason", "RuleRef", "answer_for", "policy_rules", "rule_refs", "source_label"]

Tone = Literal["yes", "no", "org"]

_SOURCES = {
    "privacy_settings": "your privacy settings",
    "trusted_tester_program": "the Trusted Tester program",
    "development_partner_program": "the Development Partner program",
}


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A rule id of the policy, with its SPEC rule and its text (what the CLI prints)."""

    id: str
    spec: str
    text: str


@dataclass(frozen=True, slots=True)
class Reason:
    text: str
    rules: tuple[RuleRef, ...]


@dataclass(frozen=True, slots=True)
class Answer:
    tone: Tone
    eyebrow: str
    headline: str
    summary: str
    reasons: tuple[Reason, ...]
    can_toggle: bool  # the account's own training setting decides (consumer, not deleted)
    training_on: bool

    @property
    def rules(self) -> tuple[RuleRef, ...]:
        """Every rule the reasons name, once, in order."""
        seen: dict[str, RuleRef] = {}
        for reason in self.reasons:
            for ref in reason.rules:
                seen.setdefault(ref.id, ref)
        return tuple(seen.values())


def source_label(source: str | None) -> str:
    if not source:
        return "an unknown source"
    return _SOURCES.get(source, source.replace("_", " "))


def policy_rules(policy: Policy) -> dict[str, RuleRef]:
    """Every basis and denial rule of the policy, by id."""
    refs = [RuleRef(id=b.id, spec=b.rule, text=b.text) for b in policy.bases]
    refs += [RuleRef(id=k, spec=r.rule, text=r.text) for k, r in policy.rules.items()]
    return {ref.id: ref for ref in refs}


def rule_refs(policy: Policy, *ids: str) -> tuple[RuleRef, ...]:
    """The rules of ``ids`` that the policy has (a custom policy may name fewer)."""
    known = policy_rules(policy)
    return tuple(known[rule_id] for rule_id in ids if rule_id in known)


def _feedback_reason(policy: Policy, *, deleted: bool = False) -> Reason:
    basis = policy.feedback_basis
    years = basis.retention_years if basis is not None else 0
    text = (
        "Feedback you send is the exception: when you rate a response with a thumbs up or "
        f"down, a copy of that whole conversation is kept apart from your account for up to "
        f"{years} years and may be used for training. You can delete each report you hold a "
        "receipt for, below."
    )
    if deleted:
        text = (
            "Feedback reports you sent before are kept apart from the account until they "
            "expire or you delete them with their receipts."
        )
    return Reason(text, rule_refs(policy, "feedback"))


def _revoked(consent: ConsentState) -> bool:
    return any(change.granted for change in consent.history)


def _consumer(report: PrivacyReport, policy: Policy, flagged: bool) -> Answer:
    consent = report.consent
    reasons: list[Reason] = []
    if consent.granted:
        since = human_date(consent.since)
        answer = Answer(
            tone="yes",
            eyebrow="Model training is on",
            headline=f"Yes. Your conversations since {since} are used to train our models.",
            summary=f"You opted in on {since} via {source_label(consent.source)}.",
            reasons=(),
            can_toggle=True,
            training_on=True,
        )
        reasons += [
            Reason(
                f"Messages you send while model training is on — from {since} on — may be "
                "used to train the generative models, as long as it stays on.",
                rule_refs(policy, "opt_in"),
            ),
            Reason(
                f"Conversations from before {since} are not used.",
                rule_refs(policy, "no_consent"),
            ),
            Reason(
                "If you turn it off, every message it covered is left out of all datasets "
                "built afterwards, even if you turn it on again: a new opt-in covers new "
                "messages only.",
                rule_refs(policy, "consent_revoked"),
            ),
        ]
    else:
        off = f" since {human_date(consent.since)}" if consent.since is not None else ""
        answer = Answer(
            tone="no",
            eyebrow="Model training is off",
            headline="No. Your conversations are not used to train our models, "
            "except feedback you send.",
            summary=f"You have not opted in to model training{off}.",
            reasons=(),
            can_toggle=True,
            training_on=False,
        )
        reasons.append(
            Reason(
                "Nothing is used unless a basis of the policy allows it, and without your "
                "opt-in none allows training on your conversations.",
                rule_refs(policy, "default_deny", "no_consent"),
            )
        )
        if _revoked(consent):
            reasons.append(
                Reason(
                    f"You turned model training off{off}. The conversations your earlier "
                    "opt-in covered are left out of every dataset built since then.",
                    rule_refs(policy, "consent_revoked"),
                )
            )
    reasons.append(
        Reason(
            "Deleting a conversation removes it from every dataset built after the deletion.",
            rule_refs(policy, "conversation_deleted"),
        )
    )
    reasons.append(_feedback_reason(policy))
    if flagged:
        reasons.append(_flag_reason(policy))
    return _with(answer, reasons)


def _flag_reason(policy: Policy) -> Reason:
    return Reason(
        "A conversation flagged for a possible usage-policy violation may be reviewed and "
        "used to train internal safety classifiers (never the generative models) while the "
        "flag stands.",
        rule_refs(policy, "usage_policy_flag"),
    )


def _commercial(report: PrivacyReport, policy: Policy, flagged: bool) -> Answer:
    org = report.organization_consent
    plan = report.plan.plan if report.plan is not None else "commercial"
    org_id = report.plan.organization_id if report.plan is not None else None
    who = f"the {plan.title()} plan of organization {org_id}" if org_id else f"the {plan} plan"
    reasons: list[Reason] = []
    if org is not None and org.granted:
        since = human_date(org.since)
        answer = Answer(
            tone="org",
            eyebrow="Your organization's agreement decides",
            headline=f"Your organization opted in: your conversations since {since} may be "
            "used to train our models.",
            summary=f"You are on {who}. Your organization opted in on {since} via "
            f"{source_label(org.source)}.",
            reasons=(),
            can_toggle=False,
            training_on=True,
        )
        reasons.append(
            Reason(
                f"Your organization's model-training agreement covers messages from {since} "
                "on, as long as it stays in force.",
                rule_refs(policy, "organization_opt_in"),
            )
        )
    else:
        answer = Answer(
            tone="org",
            eyebrow="Your organization's agreement decides",
            headline="Your organization has not opted in: your conversations are not used to "
            "train our models.",
            summary=f"You are on {who}. Your organization's agreement decides whether its "
            "conversations are used for training.",
            reasons=(),
            can_toggle=False,
            training_on=False,
        )
        reasons.append(
            Reason(
                "Your organization has not opted in to model training.",
                rule_refs(policy, "default_deny", "no_consent"),
            )
        )
    reasons.append(
        Reason(
            "On a commercial plan your own training setting has no effect: your organization's "
            "agreement decides.",
            rule_refs(policy, "account_scope_consent_ignored"),
        )
    )
    reasons.append(_feedback_reason(policy))
    if flagged:
        reasons.append(_flag_reason(policy))
    return _with(answer, reasons)


def _with(answer: Answer, reasons: list[Reason]) -> Answer:
    return Answer(
        tone=answer.tone,
        eyebrow=answer.eyebrow,
        headline=answer.headline,
        summary=answer.summary,
        reasons=tuple(reasons),
        can_toggle=answer.can_toggle,
        training_on=answer.training_on,
    )


def answer_for(report: PrivacyReport, policy: Policy) -> Answer:
    """The headline and the reasons, with rule ids, for ``report.answer``."""
    flagged = any(c.flagged and c.deleted_at is None for c in report.conversations)
    if report.answer == "account_deleted":
        return Answer(
            tone="no",
            eyebrow="Account deleted",
            headline="No. Your account was deleted; none of its conversations is used.",
            summary=f"The account was deleted on {human_date(report.deleted_at)}.",
            reasons=(
                Reason(
                    "From the deletion on, no conversation of the account serves any purpose.",
                    rule_refs(policy, "account_deleted"),
                ),
                _feedback_reason(policy, deleted=True),
            ),
            can_toggle=False,
            training_on=False,
        )
    if report.answer == "unknown_account":
        return Answer(
            tone="no",
            eyebrow="No plan on record",
            headline="No. Nothing of this account is used.",
            summary="We have no plan on record for this account.",
            reasons=(
                Reason(
                    "A message is used only when the account's plan at its time is known.",
                    rule_refs(policy, "unknown_account"),
                ),
            ),
            can_toggle=False,
            training_on=False,
        )
    if report.plan_class == "commercial":
        return _commercial(report, policy, flagged)
    return _consumer(report, policy, flagged)
