"""When a basis covers a message, as a set of as-of instants; and when a message's content
expires (SPEC §1 rules 2-4, §5). Pure.

A message's coverage by a message basis is a union of half-open intervals ``[start, end)`` of
as-of instants T (every start at or after the message's own time): the message is covered as
of T exactly when T lies in one of them. Decisions ask it at the build's as-of; retention rules
``basis:<id>`` ask it at every instant, which is why it is a set and not a yes or no. Deletions
and retention are not part of coverage (a retention rule judges coverage "before deletions and
retention"); the evaluator applies them.

- consent, ``coverage = message``: the message's plan at its own time is of the basis's
  ``plan_class``, its conversation's mode is not excluded, and consent (or the ``default``)
  holds at its own time; from then until the subject's first denial after it
  (``revocation = retroactive``) or for ever (``forward_only``).
- consent, ``coverage = conversation``: the message's own plan is of the class and its mode is
  not excluded; covered from the time any message of its conversation is covered as above (and
  not before its own time), while that one stays covered.
- flag: the plan at the message's time is known and the mode not excluded; while a flag of
  ``flag_policy`` of its conversation is raised and not cleared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from traingate._core.facts import (
    ConsentChange,
    ConversationFacts,
    MessageFact,
    consent_granted,
    first_denial_after,
    plan_at,
)
from traingate._core.policy.model import ConsentBasis, FlagBasis, MessageBasis, Policy
from traingate._core.timeutil import FAR_FUTURE

__all__ = ["Interval", "content_expiry", "coverage", "covered", "own_consent"]

Interval = tuple[int, int]


def covered(intervals: Iterable[Interval], t: int) -> bool:
    """Whether ``t`` lies in one of the intervals."""
    return any(start <= t < end for start, end in intervals)


def _ledger(
    policy: Policy, basis: ConsentBasis, facts: ConversationFacts, message: MessageFact
) -> tuple[ConsentChange, ...] | None:
    """The consent ledger deciding the message under the basis: of the subject its plan at its
    own time names (None: the plan is unknown or of another class)."""
    plan = plan_at(facts.plans, message.at)
    if plan is None or policy.plan_class(plan.plan) != basis.plan_class:
        return None
    subject = facts.account_id if basis.consent_scope == "account" else plan.organization_id
    return facts.consent(basis.consent_scope, subject, basis.setting)


def own_consent(
    policy: Policy, basis: ConsentBasis, facts: ConversationFacts, message: MessageFact
) -> bool | None:
    """Whether the basis's consent holds at the message's own time for the subject its plan
    then names (None: the plan is unknown or of another class)."""
    ledger = _ledger(policy, basis, facts, message)
    if ledger is None:
        return None
    return consent_granted(ledger, message.at, default=basis.default_granted)


def _message_cover(
    policy: Policy, basis: ConsentBasis, facts: ConversationFacts, message: MessageFact
) -> Interval | None:
    """Coverage of one message judged at its own time (``coverage = message``)."""
    ledger = None if basis.excludes(facts.mode) else _ledger(policy, basis, facts, message)
    if ledger is None or not consent_granted(ledger, message.at, default=basis.default_granted):
        return None
    end = None if basis.forward_only else first_denial_after(ledger, message.at)
    return (message.at, FAR_FUTURE if end is None else end)


def coverage(
    policy: Policy, basis: MessageBasis, facts: ConversationFacts, message: MessageFact
) -> tuple[Interval, ...]:
    """The as-of instants at which ``basis`` (of ``policy``) covers ``message``."""
    plan = plan_at(facts.plans, message.at)
    if plan is None or basis.excludes(facts.mode):
        return ()
    if isinstance(basis, FlagBasis):
        out = []
        for flag in facts.flags:
            if flag.policy != basis.flag_policy:
                continue
            start = max(flag.at, message.at)
            end = min(flag.cleared_at, default=FAR_FUTURE)
            if start < end:
                out.append((start, end))
        return tuple(out)
    if not basis.by_conversation:
        own = _message_cover(policy, basis, facts, message)
        return () if own is None else (own,)
    if policy.plan_class(plan.plan) != basis.plan_class:
        return ()
    out = []
    for other in facts.messages:
        cover = _message_cover(policy, basis, facts, other)
        if cover is not None and max(cover[0], message.at) < cover[1]:
            out.append((max(cover[0], message.at), cover[1]))
    return tuple(out)


def content_expiry(
    policy: Policy, facts: ConversationFacts, message: MessageFact
) -> tuple[int, str] | None:
    """When the message's content expires under ``policy``'s retention rules, and the rule
    whose keep ran out (None: never). As of T the rules that apply give r(T), the longest
    keep; the content expires at the first T at or after its time with T >= its time + r(T)
    (SPEC §5), and stays expired."""
    rules: list[tuple[int, str, Sequence[Interval]]] = []  # (deadline, rule id, when it applies)
    everywhere = ((message.at, FAR_FUTURE),)
    for rule in policy.retention:
        if rule.basis_id is not None:
            basis = policy.basis(rule.basis_id)
            assert isinstance(basis, ConsentBasis | FlagBasis)  # the model checked it
            applies: Sequence[Interval] = coverage(policy, basis, facts, message)
        elif rule.mode is not None:
            applies = everywhere if facts.mode == rule.mode else ()
        else:
            applies = everywhere
        if applies:
            rules.append((rule.keep_duration.add_to(message.at), rule.id, applies))
    if not rules:
        return None
    changes = {message.at}
    for _, _, intervals in rules:
        for start, end in intervals:
            changes.update((start, end))
    candidates = set(changes)
    for deadline, _, _ in rules:
        candidates.update(max(change, deadline) for change in changes)
    for t in sorted(c for c in candidates if c < FAR_FUTURE):
        active = [(deadline, rule_id) for deadline, rule_id, iv in rules if covered(iv, t)]
        if active and t >= max(active)[0]:
            return t, max(active)[1]
    return None
