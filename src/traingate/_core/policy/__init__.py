"""Policy as data: the model and loader of policy files, policy versions, and the scalar
evaluator."""

from traingate._core.policy.evaluate import (
    Decision,
    decide_message,
    decide_report,
    explain_conversation,
)
from traingate._core.policy.model import (
    MODES,
    Basis,
    ConsentBasis,
    FeedbackBasis,
    FlagBasis,
    Policy,
    RetentionRule,
    bundled_policy,
    bundled_policy_ids,
    default_policy,
    default_policy_id,
    load_policy,
    parse_policy,
)
from traingate._core.policy.versions import (
    PolicyRef,
    PolicySet,
    load_policy_set,
    parse_policy_spec,
    policy_at,
)

__all__ = [
    "MODES",
    "Basis",
    "ConsentBasis",
    "Decision",
    "FeedbackBasis",
    "FlagBasis",
    "Policy",
    "PolicyRef",
    "PolicySet",
    "RetentionRule",
    "bundled_policy",
    "bundled_policy_ids",
    "decide_message",
    "decide_report",
    "default_policy",
    "default_policy_id",
    "explain_conversation",
    "load_policy",
    "load_policy_set",
    "parse_policy",
    "parse_policy_spec",
    "policy_at",
]
