"""Policy as data: the model and loader of policy files, and the scalar evaluator."""

from traingate.policy.evaluate import Decision, decide_message, decide_report, explain_conversation
from traingate.policy.model import (
    DEFAULT_POLICY_ID,
    Basis,
    Policy,
    default_policy,
    load_policy,
    parse_policy,
)

__all__ = [
    "DEFAULT_POLICY_ID",
    "Basis",
    "Decision",
    "Policy",
    "decide_message",
    "decide_report",
    "default_policy",
    "explain_conversation",
    "load_policy",
    "parse_policy",
]
