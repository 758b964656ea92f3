"""The privacy center's words: a ``PrivacyReport`` (``traingate._privacy``, the same answer as
``traingate privacy`` and ``GET /v1/accounts/{id}/privacy``) turned into a headline and reasons.
Pure: no I/O, no request.

Nothing here knows what a basis means. The headline follows from the answer: the conversations
used for the purposes that consent bases grant ("model training" in every shipped policy), and
whether a consent basis of the policy in force covers the messages the account sends from now
on. Every reason names the rule ids that decided, with their texts from the policy that decided
(the policy in force at the messages' time, or now); ids and texts come from the policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from traingate._core.policy import ConsentBasis, Policy, PolicySet
from traingate._core.timeutil import Duration
from traingate._privacy import ConversationSummary, PrivacyReport, SettingState
from traingate._web.render import human_date, human_duration

__all__ = [
    "Answer",
    "PurposeRow",
    "Reason",
    "RuleRef",
    "Toggle",
    "answer_for",
    "policy_rules",
    "retention_phrase",
    "rule_refs",
    "source_label",
    "training_purposes",
]

Tone = Literal["yes", "no", "org"]

_SOURCES = {
    "privacy_settings": "your privacy settings",
    "trusted_tester_program": "the Trusted Tester program",
    "development_partner_program": "the Development Partner program",
}
_SHOWN = 3  # conversations named in one reason before "and N more"


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
class Toggle:
    """The account's own setting (the account-scope consent basis that applies to it now)."""

    on: bool
    since: int | None
    help: str
    rules: tuple[RuleRef, ...]


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


# -- the policy's words ----------------------------------------------------------------------


def source_label(source: str | None) -> str:
    if not source:
        return "an unknown source"
    return _SOURCES.get(source, source.replace("_", " "))


def retention_phrase(duration: str | None) -> str:
    """``P10Y`` as "for up to 10 years"; None (no limit) as "until you delete it"."""
    if duration is None:
        return "until you delete it"
    return f"for up to {human_duration(Duration.parse(duration))}"


def policy_rules(policy: Policy | PolicySet) -> dict[str, RuleRef]:
    """Every basis, retention rule and reason of the policy (of every policy of a set, the
    latest's text winning), by id."""
    out: dict[str, RuleRef] = {}
    for one in PolicySet.of(policy).policies:
        refs = [RuleRef(id=b.id, spec=b.rule, text=b.text) for b in one.bases]
        refs += [RuleRef(id=r.id, spec=r.rule, text=r.text) for r in one.retention]
        refs += [RuleRef(id=k, spec=r.rule, text=r.text) for k, r in one.rules.items()]
        out.update((ref.id, ref) for ref in refs)
    return out


def rule_refs(policy: Policy | PolicySet, *ids: str) -> tuple[RuleRef, ...]:
    """The rules of ``ids`` that the policy has (a custom policy may name fewer)."""
    known = policy_rules(policy)
    return tuple(known[rule_id] for rule_id in dict.fromkeys(ids) if rule_id in known)


def training_purposes(policies: PolicySet) -> tuple[str, ...]:
    """The purposes the question is about: those a consent basis grants (SPEC §5: model
    training); every purpose when no policy has a consent basis."""
    granted = {
        purpose
        for policy in policies.policies
        for basis in policy.bases
        if isinstance(basis, ConsentBasis)
        for purpose in basis.purposes
    }
    chosen = tuple(p for p in policies.purposes if p in granted)
    return chosen or tuple(policies.purposes)


def _purpose_phrase(policies: PolicySet, purposes: Iterable[str]) -> str:
    """The purposes' texts as a phrase: "training the generative models"."""
    texts = []
    for purpose in purposes:
        text = policies.purposes.get(purpose, purpose).strip().rstrip(".")
        texts.append(text[:1].lower() + text[1:])
    return _join(texts)


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _deciding_refs(
    report: PrivacyReport, ids: Iterable[str], deciders: Iterable[tuple[str, int]]
) -> tuple[RuleRef, ...]:
    """The refs of ``ids`` with the texts of the policies that decided (else of the set)."""
    policies = [report.policies.named(pid, version) for pid, version in deciders]
    out = []
    for rule_id in dict.fromkeys(ids):
        for policy in [*policies, *reversed(report.policies.policies)]:
            found = rule_refs(policy, rule_id)
            if found:
                out.append(found[0])
                break
    return tuple(out)


def _names(conversations: Sequence[ConversationSummary]) -> str:
    named = [f"“{c.title or 'Untitled conversation'}”" for c in conversations[:_SHOWN]]
    more = len(conversations) - len(named)
    if more:
        named.append(f"{more} more")
    return _join(named)


def _count(n: int) -> str:
    return f"{n} of your conversations" if n != 1 else "1 of your conversations"


def _plan_phrase(plans: Iterable[tuple[str, str | None]]) -> str:
    parts = []
    for plan, organization in plans:
        name = plan.replace("_", " ").title()
        parts.append(
            f"the {name} plan of organization {organization}"
            if organization
            else f"the {name} plan"
        )
    return _join(parts)


# -- the answer ---------------------------------------------------------------------------------


def _used_reason(
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
        f"{which}, sent {span} on {_plan_phrase(plans) or 'a plan'}, "
        f"{'is' if eligible == 1 else 'are'} used for "
        f"{_purpose_phrase(report.policies, used_for)} under "
        f"{_join(list(dict.fromkeys(bases)))}."
    )
    return Reason(text, _deciding_refs(report, bases, deciders))


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
    modes = _join([m.replace("_", " ") for m in basis.exclude_modes])
    return f" Conversations in {modes} mode are never used by it."


def _setting_reasons(report: PrivacyReport, state: SettingState) -> list[Reason]:
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
                f"now on are used for {_purpose_phrase(report.policies, basis.purposes)}, as "
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


def _feedback_reason(policy: Policy, *, deleted: bool) -> Reason | None:
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
        f"{_purpose_phrase(PolicySet.of(policy), basis.purposes)}."
    )
    if basis.requires_comment:
        text += " Only a report with a comment is used."
        ids.append(said.comment_missing)
    if basis.exclude_modes:
        text += f" Reports on {_join(list(basis.exclude_modes))} conversations are never used."
        ids.append(said.mode)
    text += " You can delete each report you hold a receipt for, below."
    return Reason(text, rule_refs(policy, *ids))


def _not_used_reasons(
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
        refs = _deciding_refs(report, [rule_id], deciders[rule_id])
        if not refs:
            continue
        verb = "is" if len(members) == 1 else "are"
        out.append(Reason(f"{_names(members)} {verb} not used: {refs[0].text}", refs))
    return out


def _other_purpose_reasons(report: PrivacyReport, purposes: Sequence[str]) -> list[Reason]:
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
                f"{_purpose_phrase(report.policies, used_for)} under {basis}.",
                _deciding_refs(report, [basis], deciders),
            )
        )
    return out


def _retention_reason(policy: Policy) -> Reason | None:
    if not policy.retention:
        return None
    texts = " ".join(rule.text for rule in policy.retention)
    return Reason(
        f"How long conversation content is kept: {texts} Once its time has run out a message "
        "serves no purpose, whether or not it has been deleted yet.",
        rule_refs(policy, *(rule.id for rule in policy.retention)),
    )


def _toggle(state: SettingState | None, *, deleted: bool) -> Toggle | None:
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
                bases=_deciding_refs(report, answer.bases, deciders),
                builds=tuple(report.builds.get(purpose, ())),
            )
        )
    return tuple(rows)


@dataclass(frozen=True, slots=True)
class _Facts:
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
    def of(cls, report: PrivacyReport) -> _Facts:
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


def _headline_used(facts: _Facts) -> tuple[Tone, str, str]:
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


def _headline_unused(facts: _Facts) -> tuple[Tone, str, str]:
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


def _summary(facts: _Facts) -> str:
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
            f"{_plan_phrase(then) or 'the plan then'}. The reasons below name each "
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
    summary = f"You are on {_plan_phrase([(plan.plan, plan.organization_id)])}."
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


def _reasons(facts: _Facts) -> list[Reason]:
    report, now = facts.report, facts.report.policy
    said = now.vocabulary
    reasons = [_used_reason(report, c, facts.purposes) for c in facts.used]
    for state in facts.applicable:
        reasons.extend(_setting_reasons(report, state))
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
    reasons.extend(_not_used_reasons(report, facts.purposes, used_ids))
    reasons.extend(_other_purpose_reasons(report, facts.purposes))
    reasons.append(
        Reason(
            "Deleting a conversation removes it from every dataset built after the deletion.",
            rule_refs(now, said.decision.conversation_gone),
        )
    )
    for extra in (_retention_reason(now), _feedback_reason(now, deleted=False)):
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
        feedback = _feedback_reason(now, deleted=True)
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
    facts = _Facts.of(report)
    if not facts.used:
        closed = _closed(report)
        if closed is not None:
            return closed
    tone, eyebrow, headline = _headline_used(facts) if facts.used else _headline_unused(facts)
    toggle = _toggle(facts.own, deleted=report.deleted_at is not None)
    return Answer(
        tone=tone,
        eyebrow=eyebrow,
        headline=headline,
        summary=_summary(facts),
        reasons=tuple(dict.fromkeys(_reasons(facts))),
        can_toggle=toggle is not None,
        training_on=bool(facts.on),
        toggle=toggle,
        used=tuple(c.conversation_id for c in facts.used),
        purposes=_purpose_rows(report),
    )
