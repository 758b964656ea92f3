"""``policy diff``: which records of a build would enter or leave if policies B replaced A.

For each purpose, every item a build as of T would consider is decided twice: once under A and
once under B (each a policy, or policies with effective dates: ``PolicySet``). Messages are
decided in bulk by a build engine (``keep_decisions``); for the conversations where a message's
basis differs, the scalar evaluator then gives the full reasons on each side. Feedback reports
are decided by ``decide_report``, as builds do. Nothing is written.

A record is one conversation and basis, or one feedback report (its id is the dataset's
``record_id``). It *enters* when B makes it exist and A does not, *leaves* in the opposite case,
and *changes* when it exists under both but holds other messages. Each changed item is listed
with its decision under A and under B: the policy that decided, the basis, and the rule ids.
Feedback items name no message, conversation or time: a report stays de-linked here too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from traingate._core.facts import MessageFact
from traingate._core.policy import Decision, PolicySet, decide_report, explain_conversation
from traingate._core.timeutil import format_instant
from traingate._datasets.engines.base import BuildRequest, Engine
from traingate._datasets.records import conversation_record_id, feedback_record_id
from traingate._keys import KeyRing
from traingate._store.export import open_reader
from traingate._store.store import Store
from traingate._vault.vault import Vault

__all__ = ["ItemChange", "PolicyDiff", "PurposeDiff", "RecordChange", "diff_policies"]

Change = Literal["enter", "leave", "change"]


def _side(decision: Decision) -> dict[str, Any]:
    return {
        "policy": {"id": decision.policy_id, "version": decision.policy_version},
        "eligible": decision.eligible,
        "basis": decision.basis,
        "rules": list(decision.rule_ids),
    }


@dataclass(frozen=True, slots=True)
class ItemChange:
    """One message or report whose record differs: ``change`` is relative to the record it is
    listed under (``enter``: it is in that record under B only; ``leave``: under A only)."""

    change: Literal["enter", "leave"]
    a: Decision
    b: Decision
    message: MessageFact | None = None  # None for a feedback report

    def to_dict(self) -> dict[str, Any]:
        where: dict[str, Any] = (
            {"item": "message", "message_id": self.message.message_id}
            | {"at": format_instant(self.message.at)}
            if self.message is not None
            else {"item": "report"}
        )
        return {**where, "change": self.change, "a": _side(self.a), "b": _side(self.b)}


@dataclass(frozen=True, slots=True)
class RecordChange:
    record_id: str
    kind: Literal["conversation", "feedback"]
    basis: str
    change: Change
    items: tuple[ItemChange, ...]
    conversation_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        head: dict[str, Any] = {"record_id": self.record_id, "kind": self.kind}
        if self.conversation_id is not None:
            head["conversation_id"] = self.conversation_id
        return {
            **head,
            "basis": self.basis,
            "change": self.change,
            "items": [item.to_dict() for item in self.items],
        }


@dataclass(frozen=True, slots=True)
class PurposeDiff:
    purpose: str
    records: tuple[RecordChange, ...]

    def counts(self) -> dict[str, dict[str, int]]:
        records: Counter[str] = Counter(r.change for r in self.records)
        items: dict[str, Counter[str]] = {"conversation": Counter(), "feedback": Counter()}
        for record in self.records:
            items[record.kind].update(item.change for item in record.items)
        changes = ("enter", "leave", "change")
        return {
            "records": {c: records[c] for c in changes},
            "messages": {c: items["conversation"][c] for c in ("enter", "leave")},
            "reports": {c: items["feedback"][c] for c in ("enter", "leave")},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose,
            "counts": self.counts(),
            "records": [record.to_dict() for record in self.records],
        }


@dataclass(frozen=True, slots=True)
class PolicyDiff:
    a: PolicySet
    b: PolicySet
    as_of: int
    purposes: tuple[PurposeDiff, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.ranges(),
            "b": self.b.ranges(),
            "as_of": format_instant(self.as_of),
            "purposes": [p.to_dict() for p in self.purposes],
        }

    def summary(self) -> dict[str, Any]:
        """What the audit log keeps of a diff: the policies, as-of and counts only."""
        return {
            "a": [f"{p.id}@{p.effective_from}" for p in self.a.policies],
            "b": [f"{p.id}@{p.effective_from}" for p in self.b.policies],
            "as_of": format_instant(self.as_of),
            "counts": {p.purpose: p.counts() for p in self.purposes},
        }


def _decisions(
    *, store: Store, engine: Engine, policies: PolicySet, purpose: str, as_of: int
) -> dict[tuple[str, int], str | None]:
    """(conversation id, message seq) -> basis, for every message a build would consider."""
    request = BuildRequest(policy=policies, purpose=purpose, as_of=as_of, keep_decisions=True)
    out: dict[tuple[str, int], str | None] = {}
    with open_reader(store.db) as source:
        for batch in engine.run(request=request, source=source, store=store):
            if batch.decisions is None:
                continue
            for row in batch.decisions.to_pylist():
                out[(str(row["conversation_id"]), int(row["seq"]))] = row["basis"]
    return out


def _conversation_changes(
    *,
    store: Store,
    signing_key: bytes,
    a: PolicySet,
    b: PolicySet,
    purpose: str,
    as_of: int,
    under_a: dict[tuple[str, int], str | None],
    under_b: dict[tuple[str, int], str | None],
) -> Iterator[RecordChange]:
    exists_a = {(cid, basis) for (cid, _), basis in under_a.items() if basis is not None}
    exists_b = {(cid, basis) for (cid, _), basis in under_b.items() if basis is not None}
    keys = under_a.keys() | under_b.keys()
    changed = sorted({key[0] for key in keys if under_a.get(key) != under_b.get(key)})
    order = {basis: i for i, basis in enumerate((*b.basis_order(), *a.basis_order()))}
    for conversation_id in changed:
        facts = store.conversation_facts(conversation_id)
        side_a = explain_conversation(policy=a, facts=facts, purpose=purpose, as_of=as_of)
        side_b = dict(
            (m.seq, d)
            for m, d in explain_conversation(policy=b, facts=facts, purpose=purpose, as_of=as_of)
        )
        records: dict[str, list[ItemChange]] = {}
        for message, decision_a in side_a:
            decision_b = side_b.get(message.seq)
            if decision_b is None or decision_a.basis == decision_b.basis:
                continue
            if decision_a.basis is not None:
                records.setdefault(decision_a.basis, []).append(
                    ItemChange("leave", decision_a, decision_b, message)
                )
            if decision_b.basis is not None:
                records.setdefault(decision_b.basis, []).append(
                    ItemChange("enter", decision_a, decision_b, message)
                )
        for basis in sorted(records, key=lambda x: order.get(x, len(order))):
            key = (conversation_id, basis)
            yield RecordChange(
                record_id=conversation_record_id(signing_key, conversation_id, basis),
                kind="conversation",
                basis=basis,
                change=_change(key in exists_a, key in exists_b),
                items=tuple(records[basis]),
                conversation_id=conversation_id,
            )


def _change(in_a: bool, in_b: bool) -> Change:
    if in_a and in_b:
        return "change"
    return "leave" if in_a else "enter"


def _grants_feedback(policies: PolicySet, purpose: str) -> bool:
    return any(
        (basis := p.feedback_basis) is not None and purpose in basis.purposes
        for p in policies.policies
    )


def _report_changes(
    *, vault: Vault, signing_key: bytes, a: PolicySet, b: PolicySet, purpose: str, as_of: int
) -> list[RecordChange]:
    if not (_grants_feedback(a, purpose) or _grants_feedback(b, purpose)):
        return []  # no report is considered for this purpose on either side
    found = []
    for report in vault.reports(as_of=as_of):
        decided = [
            decide_report(
                policy=side,
                submitted_at=report.submitted_at,
                purpose=purpose,
                as_of=as_of,
                mode=report.snapshot.mode,
                comment=report.snapshot.comment,
            )
            for side in (a, b)
        ]
        decision_a, decision_b = decided
        if decision_a.basis == decision_b.basis:
            continue
        items: list[ItemChange] = []
        if decision_a.basis is not None:
            items.append(ItemChange("leave", decision_a, decision_b))
        if decision_b.basis is not None:
            items.append(ItemChange("enter", decision_a, decision_b))
        found.append(
            RecordChange(
                record_id=feedback_record_id(signing_key, report.record_key),
                kind="feedback",
                basis=str(decision_b.basis or decision_a.basis),
                change=_change(decision_a.eligible, decision_b.eligible),
                items=tuple(items),
            )
        )
    return sorted(found, key=lambda r: r.record_id)


def diff_policies(
    *,
    store: Store,
    vault: Vault,
    keys: KeyRing,
    engine: Engine,
    a: PolicySet,
    b: PolicySet,
    purposes: Sequence[str],
    as_of: int,
) -> PolicyDiff:
    """Every record of a build as of ``as_of`` for each of ``purposes`` that would enter, leave
    or change if ``b`` replaced ``a``, with each changed item's decision on both sides."""
    for purpose in purposes:
        a.require_purpose(purpose)
        b.require_purpose(purpose)
    out = []
    for purpose in purposes:
        under = [
            _decisions(store=store, engine=engine, policies=side, purpose=purpose, as_of=as_of)
            for side in (a, b)
        ]
        conversations = _conversation_changes(
            store=store,
            signing_key=keys.signing_key,
            a=a,
            b=b,
            purpose=purpose,
            as_of=as_of,
            under_a=under[0],
            under_b=under[1],
        )
        reports = _report_changes(
            vault=vault, signing_key=keys.signing_key, a=a, b=b, purpose=purpose, as_of=as_of
        )
        out.append(PurposeDiff(purpose=purpose, records=(*conversations, *reports)))
    return PolicyDiff(a=a, b=b, as_of=as_of, purposes=tuple(out))
