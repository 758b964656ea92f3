"""``tg.privacy``: why each message of a conversation may serve a purpose, a conversation as
its account sees it, an account's answer to "is my data used for training?", and the
console's search (docs/privacy.md, docs/web.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from traingate._core.policy import Decision, Policy, explain_conversation
from traingate._core.timeutil import format_instant, now_micros
from traingate._facade.area import Area

if TYPE_CHECKING:
    from traingate._privacy import ConversationView, PrivacyReport

__all__ = ["Explanation", "MessageExplanation", "Privacy"]


@dataclass(frozen=True, slots=True)
class MessageExplanation:
    message_id: str
    at: int
    role: str
    decision: Decision
    policy: Policy  # the policy in force at the message's time, which decided it


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why each message of one conversation may or may not serve a purpose as of a time.
    ``policy`` is the policy in force at as-of; each message names the one that decided it."""

    conversation_id: str
    purpose: str
    as_of: int
    policy: Policy
    messages: tuple[MessageExplanation, ...]

    def to_dict(self) -> dict[str, Any]:
        def rules(m: MessageExplanation) -> list[dict[str, str]]:
            out = []
            for rule_id in m.decision.rule_ids:
                spec_rule, text = m.policy.rule_text(rule_id)
                out.append({"id": rule_id, "rule": spec_rule, "text": text})
            return out

        return {
            "conversation_id": self.conversation_id,
            "purpose": self.purpose,
            "as_of": format_instant(self.as_of),
            "policy": {"id": self.policy.id, "sha256": self.policy.sha256},
            "messages": [
                {
                    "message_id": m.message_id,
                    "role": m.role,
                    "at": format_instant(m.at),
                    "eligible": m.decision.eligible,
                    "basis": m.decision.basis,
                    "reasons": list(m.decision.reasons) if not m.decision.eligible else [],
                    "rules": rules(m),
                    "policy": m.policy.identity(),
                }
                for m in self.messages
            ],
        }


class Privacy(Area):
    def explain(
        self, *, conversation_id: str, purpose: str, as_of: int | None = None
    ) -> Explanation:
        """Each message of a conversation under bases 2-4, with the rules that decided, each
        under the policy in force at its time."""
        policies = self._tg.policies
        policies.require_purpose(purpose)
        when = now_micros() if as_of is None else as_of
        facts = self._tg.store.conversation_facts(conversation_id)
        decided = explain_conversation(policy=policies, facts=facts, purpose=purpose, as_of=when)
        return Explanation(
            conversation_id=conversation_id,
            purpose=purpose,
            as_of=when,
            policy=policies.in_force(when),
            messages=tuple(
                MessageExplanation(
                    message_id=m.message_id,
                    at=m.at,
                    role=m.role,
                    decision=d,
                    policy=policies.in_force(m.at),
                )
                for m, d in decided
            ),
        )

    def conversation(self, *, conversation_id: str, as_of: int | None = None) -> ConversationView:
        """A conversation's messages and settings as of a time (default: now)."""
        from traingate._privacy import conversation_view  # imports pyarrow (lineage): lazily

        when = now_micros() if as_of is None else as_of
        return conversation_view(store=self._tg.store, conversation_id=conversation_id, as_of=when)

    def answer(self, *, account_id: str, as_of: int | None = None) -> PrivacyReport:
        """The account's answer to "Is my data used for model training?", with evidence
        (the builds holding its data: completed lineage; a pending build is not read)."""
        from traingate._privacy import account_privacy  # imports pyarrow (lineage): lazily

        tg = self._tg
        when = now_micros() if as_of is None else as_of
        return account_privacy(
            store=tg.store, policy=tg.policies, keys=tg.keys, account_id=account_id, as_of=when
        )

    def find_conversations(self, text: str, *, limit: int = 50) -> list[dict[str, str]]:
        """Conversations whose id starts with ``text`` or whose account is ``text`` (the
        console's search), by id, at most ``limit``: id, account and mode each."""
        text = text.strip()
        if not text:
            return []
        return [
            {"conversation_id": conv, "account_id": account, "mode": mode}
            for conv, account, mode in self._tg.store.find_conversations(text, limit=limit)
        ]

    def conversation_owner(self, conversation_id: str) -> str:
        """The account that first named the conversation. Raises NotFoundError."""
        return self._tg.store.conversation_owner(conversation_id)
