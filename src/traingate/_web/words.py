"""The policy's words on the privacy center: its rules by id (``RuleRef``: the id, its SPEC rule
and its text, from the policy that decided), the purposes the privacy question is about, and
the phrases the answer is written with (consent sources, retention, purposes, plans, lists).
Pure: no I/O, no request. The answer (``answer.py``, ``reasons.py``, ``headline.py``) and the
user's pages (``user.py``) read them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from traingate._core.policy import ConsentBasis, Policy, PolicySet
from traingate._core.timeutil import Duration
from traingate._privacy import PrivacyReport
from traingate._web.render import human_duration

__all__ = [
    "RuleRef",
    "deciding_refs",
    "join_and",
    "plan_phrase",
    "policy_rules",
    "purpose_phrase",
    "retention_phrase",
    "rule_refs",
    "source_label",
    "training_purposes",
]


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


def purpose_phrase(policies: PolicySet, purposes: Iterable[str]) -> str:
    """The purposes' texts as a phrase: "training the generative models"."""
    texts = []
    for purpose in purposes:
        text = policies.purposes.get(purpose, purpose).strip().rstrip(".")
        texts.append(text[:1].lower() + text[1:])
    return join_and(texts)


def join_and(items: Sequence[str]) -> str:
    """``["a", "b", "c"]`` as "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def deciding_refs(
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


def plan_phrase(plans: Iterable[tuple[str, str | None]]) -> str:
    parts = []
    for plan, organization in plans:
        name = plan.replace("_", " ").title()
        parts.append(
            f"the {name} plan of organization {organization}"
            if organization
            else f"the {name} plan"
        )
    return join_and(parts)
