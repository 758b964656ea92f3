"""The reasons of the privacy answer (``answer.py``), each with the rule ids that decided and
their texts: a used conversation (its messages, when, on which plan, under which bases), a
consent setting on or off (what its coverage, revocation and excluded modes mean for the
account), the conversations not used grouped by the rule that denied them, what other purposes
use, retention and feedback; and the toggle of the account's own setting with its help text.
Pure: no I/O, no request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from traingate._core.policy import ConsentBasis, Policy, PolicySet
from traingate._privacy import ConversationSummary, PrivacyReport, SettingState
from traingate._web.render import human_date
from traingate._web.words import (
    RuleRef,
    deciding_refs,
    join_and,
    plan_phrase,
    purpose_phrase,
    retention_phrase,
    rule_refs,
)

__all__ = [
    "Reason",
    "Toggle",
    "feedback_reason",
    "not_used_reasons",
    "other_purpose_reasons",
    "retention_reason",
    "setting_reasons",
    "toggle_for",
    "used_reason",
]

_SHOWN = 3  # conversations named in one reason before "and N more"


@dataclass(frozen=True, slots=True)
class Reason:
    text: str
    rules: tuple[RuleRef, ...]


@dataclass(frozen=True, slots=True)
class Toggle:
    """The account's own setting (the account-scope consent basis that applies to it now)."""

    on: bool
    since: int | None
    help: str
    rules: tuple[RuleRef, ...]


def _names(conversations: Sequence[ConversationSummary]) -> str:
    named = [f"“{c.title or 'Untitled conversation'}”" for c in conversations[:_SHOWN]]
    more = len(conversations) - len(named)
    if more:
        named.append(f"{more} more")
    return join_and(named)


def used_reason(
    report: PrivacyReport, conversation: ConversationSummary, purposes: Sequence[str]
) -> Reason:
    uses = [conversation.uses[p] for p in purposes if conversation.used_for(p)]
    bases = [b for use in uses for b in use.bases]
    deciders = [d for use in uses for d in use.policies]
    plans = list(dict.fromkeys(plan for use in uses for plan in use.plans))
    eligible = max(use.eligible for use in uses)
    first = min(use.first_eligible_at for use in uses if use.first_eligible_at is not None)
    last = max(use.last_eligible_at for use in uses if use.last_eligible_at is not None)
    span = (
        human_date(first)
        if human_date(first) == human_date(last)
        else (f"{human_date(first)} to {human_date(last)}")
    )
    used_for = [p for p in purposes if conversation.used_for(p)]
    total = conversation.messages
    if eligible == total:
        which = "its message" if total == 1 else f"all {total} of its messages"
    else:
        which = f"{eligible} of its {total} messages"
    text = (
        f"“{conversation.title or 'Untitled conversation'}” ({conversation.conversation_id}): "
        f"{which}, sent {span} on {plan_phrase(plans) or 'a plan'}, "
        f"{'is' if eligible == 1 else 'are'} used for "
        f"{purpose_phrase(report.policies, used_for)} under "
        f"{join_and(list(dict.fromkeys(bases)))}."
    )
    return Reason(text, deciding_refs(report, bases, deciders))


def _revocation_text(basis: ConsentBasis, whose: str) -> str:
    if basis.forward_only:
        return (
            f"If {whose} setting is turned off, what it covered stays covered; only messages "
            "sent afterwards are left out."
        )
    return (
        f"If {whose} setting is turned off, every message it covered is left out of all "
        "datasets built afterwards, even if it is turned on again: a new grant covers new "
        "messages only."
    )


def _coverage_text(basis: ConsentBasis) -> str:
    if basis.by_conversation:
        return (
            "It covers new or resumed chats: a chat with a message sent while it is on is used "
            "whole, earlier messages included."
        )
    return "It covers each message sent while it is on."


def _modes_text(basis: ConsentBasis) -> str:
    if not basis.exclude_modes:
        return ""
    modes = join_and([m.replace("_", " ") for m in basis.exclude_modes])
    return f" Conversations in {modes} mode are never used by it."


def setting_reasons(report: PrivacyReport, state: SettingState) -> list[Reason]:
    basis, policy = state.basis, state.policy
    said = policy.vocabulary.consent
    whose = "your" if basis.consent_scope == "account" else "your organization's"
    consent = state.consent
    reasons = []
    if state.covers_new_messages:
        since = (
            f"since {human_date(consent.since)}"
            if consent is not None and consent.since is not None
            else "by default (it has not been turned off)"
        )
        reasons.append(
            Reason(
                f"Model training is on for {whose} conversations {since}: messages sent from "
                f"now on are used for {purpose_phrase(report.policies, basis.purposes)}, as "
                f"long as it stays on. {_coverage_text(basis)}{_modes_text(basis)}",
                rule_refs(policy, basis.id, said.mode if basis.exclude_modes else ""),
            )
        )
        revoke_ids = () if basis.forward_only else (said.revoked,)
        reasons.append(
            Reason(_revocation_text(basis, whose), rule_refs(policy, basis.id, *revoke_ids))
        )
        return reasons
    off = (
        f" since {human_date(consent.since)}"
        if consent is not None and consent.since is not None
        else ""
    )
    who = "your opt-in" if basis.consent_scope == "account" else "your organization's opt-in"
    reasons.append(
        Reason(
            f"Nothing is used unless a basis of the policy allows it, and without {who} none "
            "allows training on conversations you send from now on.",
            rule_refs(policy, policy.vocabulary.decision.no_basis, said.not_granted),
        )
    )
    if consent is not None and consent.ever_granted and not basis.forward_only:
        reasons.append(
            Reason(
                f"{whose.capitalize()} setting was turned off{off}. The messages the earlier "
                "opt-in covered are left out of every dataset built since then.",
                rule_refs(policy, said.revoked),
            )
        )
    return reasons


def feedback_reason(policy: Policy, *, deleted: bool) -> Reason | None:
    basis = policy.feedback_basis
    if basis is None:
        return None
    if deleted:
        return Reason(
            "Feedback reports you sent before are kept apart from the account until they "
            "expire or you delete them with their receipts.",
            rule_refs(policy, basis.id),
        )
    said = policy.vocabulary.feedback
    ids = [basis.id]
    text = (
        "Feedback you send is the exception: when you rate a response with a thumbs up or "
        "down, a copy of that whole conversation is kept apart from your account "
        f"{retention_phrase(basis.retention)} and may be used for "
        f"{purpose_phrase(PolicySet.of(policy), basis.purposes)}."
    )
    if basis.requires_comment:
        text += " Only a report with a comment is used."
        ids.append(said.comment_missing)
    if basis.exclude_modes:
        text += f" Reports on {join_and(list(basis.exclude_modes))} conversations are never used."
        ids.append(said.mode)
    text += " You can delete each report you hold a receipt for, below."
    return Reason(text, rule_refs(policy, *ids))


def not_used_reasons(
    report: PrivacyReport, purposes: Sequence[str], used: Sequence[str]
) -> list[Reason]:
    """The conversations not used for ``purposes``, grouped by the rules that denied them."""
    groups: dict[str, list[ConversationSummary]] = {}
    deciders: dict[str, list[tuple[str, int]]] = {}
    for conversation in report.conversations:
        if conversation.conversation_id in used or not conversation.messages:
            continue
        for purpose in purposes:
            use = conversation.uses.get(purpose)
            if use is None:
                continue
            for rule_id in (*use.reasons, *use.expired_under):
                members = groups.setdefault(rule_id, [])
                if conversation not in members:
                    members.append(conversation)
                deciders.setdefault(rule_id, []).extend(use.policies)
    out = []
    for rule_id, members in groups.items():
        refs = deciding_refs(report, [rule_id], deciders[rule_id])
        if not refs:
            continue
        verb = "is" if len(members) == 1 else "are"
        out.append(Reason(f"{_names(members)} {verb} not used: {refs[0].text}", refs))
    return out


def other_purpose_reasons(report: PrivacyReport, purposes: Sequence[str]) -> list[Reason]:
    """What other purposes use, basis by basis."""
    by_basis: dict[str, tuple[list[str], list[ConversationSummary], list[tuple[str, int]]]] = {}
    for purpose in report.policies.purposes:
        if purpose in purposes:
            continue
        for conversation in report.conversations:
            use = conversation.uses.get(purpose)
            if use is None or not use.used:
                continue
            for basis in use.bases:
                entry = by_basis.setdefault(basis, ([], [], []))
                if purpose not in entry[0]:
                    entry[0].append(purpose)
                if conversation not in entry[1]:
                    entry[1].append(conversation)
                entry[2].extend(use.policies)
    out = []
    for basis, (used_for, members, deciders) in by_basis.items():
        verb = "is" if len(members) == 1 else "are"
        out.append(
            Reason(
                f"{_names(members)} {verb} used for "
                f"{purpose_phrase(report.policies, used_for)} under {basis}.",
                deciding_refs(report, [basis], deciders),
            )
        )
    return out


def retention_reason(policy: Policy) -> Reason | None:
    if not policy.retention:
        return None
    texts = " ".join(rule.text for rule in policy.retention)
    return Reason(
        f"How long conversation content is kept: {texts} Once its time has run out a message "
        "serves no purpose, whether or not it has been deleted yet.",
        rule_refs(policy, *(rule.id for rule in policy.retention)),
    )


def toggle_for(state: SettingState | None, *, deleted: bool) -> Toggle | None:
    if state is None or deleted:
        return None
    basis, policy = state.basis, state.policy
    on = state.granted
    consent = state.consent
    if on:
        help_text = (
            f"On{' since ' + human_date(consent.since) if consent and consent.since else ''}"
            f"{'' if consent and consent.explicit else ' (the default)'}. "
            f"{_revocation_text(basis, 'this')}"
        )
        ids = [basis.id] if basis.forward_only else [policy.vocabulary.consent.revoked, basis.id]
    else:
        help_text = (
            "Off. Turning it on covers new or resumed chats: a chat with a message sent while "
            "it is on is used whole, earlier messages included."
            if basis.by_conversation
            else "Off. Turning it on covers the messages you send from then on, never earlier ones."
        )
        ids = [basis.id]
    return Toggle(
        on=on,
        since=None if consent is None else consent.since,
        help=help_text + _modes_text(basis),
        rules=rule_refs(policy, *ids),
    )
