"""What the privacy answer (``answer.py``) follows from, and what it says first: ``Facts``
(the report read for the purposes the question is about: the conversations used for them now,
the consent settings of the policy in force that apply to the account's plan and those that
cover the messages it sends from now on), and from them the tone, eyebrow and headline, and the
summary of what decides. Pure: no I/O, no request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from traingate._core.policy import ConsentBasis
from traingate._privacy import ConversationSummary, PrivacyReport, SettingState
from traingate._web.render import human_date
from traingate._web.words import plan_phrase, source_label, training_purposes

__all__ = ["Facts", "Tone", "headline_unused", "headline_used", "summary_of"]

Tone = Literal["yes", "no", "org"]


@dataclass(frozen=True, slots=True)
class Facts:
    """What the answer follows from: the report, read for the purposes the question is about."""

    report: PrivacyReport
    purposes: tuple[str, ...]
    used: tuple[ConversationSummary, ...]  # conversations used for those purposes now
    used_bases: frozenset[str]
    settings: tuple[SettingState, ...]  # consent bases granting those purposes, policy now
    applicable: tuple[SettingState, ...]  # ... that apply to the account's plan now
    on: tuple[SettingState, ...]  # ... that cover the messages it sends from now on
    own: SettingState | None  # the account's own setting, when it applies
    organization: SettingState | None  # its organization's, when that applies

    @classmethod
    def of(cls, report: PrivacyReport) -> Facts:
        purposes = training_purposes(report.policies)
        used = tuple(c for c in report.conversations if any(c.used_for(p) for p in purposes))
        settings = tuple(s for s in report.settings if set(s.basis.purposes) & set(purposes))
        applicable = tuple(s for s in settings if s.applies)
        deleted = report.deleted_at is not None
        return cls(
            report=report,
            purposes=purposes,
            used=used,
            used_bases=frozenset(b for c in used for p in purposes for b in _bases(c, p)),
            settings=settings,
            applicable=applicable,
            on=() if deleted else tuple(s for s in applicable if s.covers_new_messages),
            own=next((s for s in applicable if s.basis.consent_scope == "account"), None),
            organization=next((s for s in applicable if s.basis.consent_scope != "account"), None),
        )

    @property
    def by_organization(self) -> bool:
        """The account's plan lets only its organization decide."""
        return self.organization is not None and self.own is None

    def organization_bases(self) -> set[str]:
        return {
            b.id
            for p in self.report.policies.policies
            for b in p.bases
            if isinstance(b, ConsentBasis) and b.consent_scope != "account"
        }

    def except_feedback(self) -> str:
        feedback = self.report.policy.feedback_basis
        grants = feedback is not None and set(feedback.purposes) & set(self.purposes)
        return ", except feedback you send" if grants else ""


def _bases(conversation: ConversationSummary, purpose: str) -> tuple[str, ...]:
    use = conversation.uses.get(purpose)
    return () if use is None else use.bases


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


def _count(n: int) -> str:
    return f"{n} of your conversations" if n != 1 else "1 of your conversations"


def headline_used(facts: Facts) -> tuple[Tone, str, str]:
    """Tone, eyebrow and headline when conversations are used now."""
    used, purposes = facts.used, facts.purposes
    org_only = facts.by_organization and facts.used_bases <= facts.organization_bases()
    tone: Tone = "org" if org_only else "yes"
    if not facts.on:
        return (
            tone,
            "Some of your conversations are used",
            f"Yes. {_count(len(used))} {_are(len(used))} used to train our models. Messages "
            "you send from now on are not.",
        )
    starts = [s.consent.since for s in facts.on if s.consent is not None]
    start = max((t for t in starts if t is not None), default=None)
    earliest = min(
        c.uses[p].first_eligible_at or 0 for c in used for p in purposes if c.used_for(p)
    )
    if (
        start is not None
        and earliest >= start
        and facts.used_bases <= {s.basis.id for s in facts.on}
    ):
        headline = (
            f"Yes. Your conversations since {human_date(start)} are used to train our models."
        )
    else:
        headline = (
            f"Yes. {_count(len(used))} {_are(len(used))} used to train our models, and so are "
            "the messages you send from now on."
        )
    return tone, "Model training is on", headline


def headline_unused(facts: Facts) -> tuple[Tone, str, str]:
    """Tone, eyebrow and headline when nothing is used now (account neither deleted nor
    without plan)."""
    if facts.on:
        state = facts.on[0]
        since = None if state.consent is None else state.consent.since
        if state.basis.consent_scope == "account":
            headline = (
                f"Yes. Your conversations since {human_date(since)} are used to train our models."
                if since is not None
                else "Yes. Your conversations are used to train our models: the setting is on "
                "unless you turn it off."
            )
            return ("org" if facts.by_organization else "yes"), "Model training is on", headline
        headline = (
            f"Your organization opted in: your conversations since {human_date(since)} may be "
            "used to train our models."
            if since is not None
            else "Your organization's setting is on: your conversations may be used to train "
            "our models."
        )
        return "org", "Your organization's agreement decides", headline
    if facts.by_organization:
        return (
            "org",
            "Your organization's agreement decides",
            "Your organization has not opted in: your conversations are not used to train our "
            "models.",
        )
    return (
        "no",
        "Model training is off",
        f"No. Your conversations are not used to train our models{facts.except_feedback()}.",
    )


def summary_of(facts: Facts) -> str:
    """What decides: the plans of the used messages when the setting in force now does not
    cover them all; else the account's own setting, or its plan and organization."""
    report = facts.report
    if facts.used and not facts.used_bases <= {s.basis.id for s in facts.on}:
        then = dict.fromkeys(
            plan
            for c in facts.used
            for p in facts.purposes
            if c.used_for(p)
            for plan in c.uses[p].plans
        )
        return (
            "What decides is what held when each message was sent: "
            f"{plan_phrase(then) or 'the plan then'}. The reasons below name each "
            "conversation and the rule that lets it be used."
        )
    if facts.own is not None and facts.own.consent is not None:
        consent = facts.own.consent
        if consent.granted and consent.explicit:
            return (
                f"You opted in on {human_date(consent.since)} via {source_label(consent.source)}."
            )
        if consent.granted:
            return "Model training is on by default for your plan: you have not turned it off."
        off = f" since {human_date(consent.since)}" if consent.since is not None else ""
        return f"You have not opted in to model training{off}."
    plan = report.plan
    if plan is None:
        return ""
    summary = f"You are on {plan_phrase([(plan.plan, plan.organization_id)])}."
    organization = facts.organization
    if organization is not None and organization.consent is not None:
        org = organization.consent
        if org.granted and org.explicit:
            summary += (
                f" Your organization opted in on {human_date(org.since)} via "
                f"{source_label(org.source)}."
            )
        else:
            summary += (
                " Your organization's agreement decides whether its conversations are used for "
                "training."
            )
    elif not facts.applicable:
        summary += " No setting lets conversations on this plan train the models."
    return summary
