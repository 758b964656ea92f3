"""Loading validates a policy file against the SPEC §5 vocabulary: each kind of mistake is
refused with a PolicyError naming the file, the key and what is allowed there (one test per
kind). Every shipped policy loads, and its mechanisms' reasons all have their text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import PURPOSES
from traingate._core.policy import bundled_policy, bundled_policy_ids, load_policy
from traingate._errors import PolicyError

SOURCE = Path(__file__).resolve().parent.parent / "src" / "traingate" / "_core" / "policy"


def _edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur once in the base file"
    return text.replace(old, new)


def _refused(tmp_path: Path, text: str, *needles: str) -> str:
    """Load ``text`` from a file; assert it is refused naming the file and every needle."""
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    message = str(raised.value)
    assert message.startswith(f"policy file {path}: "), message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


@pytest.fixture
def base() -> str:
    """consumer-2025 (every section: settings, bases of each kind, retention, rules), as text."""
    return (SOURCE / "consumer-2025.toml").read_text()


@pytest.mark.parametrize("policy_id", bundled_policy_ids())
def test_every_shipped_policy_loads_with_a_text_for_every_reason(policy_id: str) -> None:
    policy = bundled_policy(policy_id)
    assert set(policy.rules) == set(policy.reason_ids())
    assert sorted(policy.purposes) == sorted(PURPOSES), (
        "every shipped policy has the six purposes of SPEC §1"
    )
    assert policy.feedback_basis is not None and policy.basis("usage_policy_flag") is not None


def test_the_unchanged_file_loads(tmp_path: Path, base: str) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(base)
    assert load_policy(path).id == "consumer-2025"


def test_an_unknown_top_level_key(tmp_path: Path, base: str) -> None:
    text = _edit(base, "version = 2\n", 'version = 2\ncolour = "blue"\n')
    message = _refused(tmp_path, text, "colour: unknown key", "allowed keys here:")
    allowed = message.split("allowed keys here:", 1)[1]
    for key in ("id", "plans", "purposes", "settings", "bases", "retention", "rules"):
        assert re.search(rf"\b{key}\b", allowed), key


def test_an_unknown_key_in_a_basis(tmp_path: Path, base: str) -> None:
    text = _edit(base, 'coverage = "conversation"\n', 'coverage = "conversation"\nmood = "ok"\n')
    _refused(
        tmp_path,
        text,
        "bases[2].mood: unknown key",
        "allowed keys here:",
        "default",
        "revocation",
        "coverage",
        "exclude_modes",
    )


def test_an_unknown_mechanism(tmp_path: Path, base: str) -> None:
    text = _edit(base, 'kind = "flag"', 'kind = "contract"')
    _refused(
        tmp_path, text, "bases[1].kind", "'contract' is no mechanism", "consent, flag, feedback"
    )


def test_a_mechanism_missing(tmp_path: Path, base: str) -> None:
    text = _edit(base, 'kind = "flag"\n', "")
    _refused(tmp_path, text, "bases[1]", "kind is missing", "consent, flag, feedback")


def test_a_value_outside_the_vocabulary(tmp_path: Path, base: str) -> None:
    text = _edit(
        base,
        'revocation = "retroactive"\ncoverage = "conversation"',
        'revocation = "sometimes"\ncoverage = "conversation"',
    )
    _refused(
        tmp_path,
        text,
        "bases[2].revocation",
        "'sometimes' is not allowed",
        "'retroactive'",
        "'forward_only'",
    )


def test_a_mode_outside_the_vocabulary(tmp_path: Path, base: str) -> None:
    text = _edit(
        base,
        'exclude_modes = ["incognito"]\nflag_policy',
        'exclude_modes = ["private"]\nflag_policy',
    )
    _refused(
        tmp_path,
        text,
        "bases[1].exclude_modes",
        "'private' is not allowed",
        "'incognito'",
        "'temporary'",
    )


@pytest.mark.parametrize("duration", ["P1W", "P0Y", "P5", "5Y", "P1.5Y", "P1D1Y", "P", "p5y"])
def test_a_duration_outside_the_vocabulary(tmp_path: Path, base: str, duration: str) -> None:
    text = _edit(base, '\nretention = "P5Y"\n', f'\nretention = "{duration}"\n')
    _refused(
        tmp_path, text, "bases[4].retention", f"{duration!r} is not a duration", "P10Y", "P30D"
    )


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('keep = "P30D"', 'keep = "30 days"', "retention[1].keep"),
        ('title = "Consumer', 'deleted_after = "P0D"\ntitle = "Consumer', "deleted_after"),
    ],
)
def test_a_duration_elsewhere(tmp_path: Path, base: str, old: str, new: str, key: str) -> None:
    _refused(tmp_path, _edit(base, old, new), key, "is not a duration", "P30D")


def test_a_reason_without_text(tmp_path: Path, base: str) -> None:
    start = base.index("[rules.consent_revoked]")
    end = base.index("[rules.", start + 1)
    text = base[:start] + base[end:]
    _refused(
        tmp_path,
        text,
        "rules: consent_revoked (given by basis 'opt_in' of kind 'consent') has no text",
        "[rules.<reason>]",
    )


def test_a_reason_without_text_when_a_parameter_adds_it(tmp_path: Path, base: str) -> None:
    """requires_comment makes feedback_without_comment a reason the file must explain."""
    text = _edit(base, '\nretention = "P5Y"\n', '\nretention = "P5Y"\nrequires_comment = true\n')
    _refused(tmp_path, text, "rules:", "feedback_without_comment (given by basis", "has no text")


def test_a_text_for_no_reason(tmp_path: Path, base: str) -> None:
    text = base + '\n[rules.too_late]\nrule = "R9"\ntext = "Not a reason of any mechanism."\n'
    _refused(tmp_path, text, "rules:", "too_late is no reason", "allowed:", "no_consent")


def test_a_reason_text_a_parameter_removes(tmp_path: Path, base: str) -> None:
    """Without retention a feedback basis never expires: feedback_expired is then no reason."""
    text = _edit(base, '\nretention = "P5Y"\n', "\n")
    _refused(tmp_path, text, "rules:", "feedback_expired is no reason", "allowed:")


def test_a_retention_on_a_mechanism_that_has_none(tmp_path: Path, base: str) -> None:
    text = _edit(
        base,
        'coverage = "conversation"\n',
        'coverage = "conversation"\nretention = "P5Y"\n',
    )
    _refused(
        tmp_path,
        text,
        "bases[2].retention: only a basis of kind 'feedback' has a retention",
        "[[retention]] rule",
        'when = "basis:',
    )


def test_a_retention_rule_naming_no_basis(tmp_path: Path, base: str) -> None:
    text = _edit(base, 'when = "basis:opt_in"', 'when = "basis:unknown"')
    _refused(
        tmp_path,
        text,
        "retention[2].when: 'basis:unknown' names no message basis",
        "always",
        "basis:opt_in",
        "basis:usage_policy_flag",
        "mode:<mode>",
    )


def test_a_retention_rule_naming_the_feedback_basis(tmp_path: Path, base: str) -> None:
    text = _edit(base, 'when = "basis:opt_in"', 'when = "basis:feedback"')
    _refused(tmp_path, text, "names no message basis", "basis:opt_in")


@pytest.mark.parametrize("when", ["sometimes", "mode:private", "basis:", "mode:"])
def test_a_retention_when_outside_the_vocabulary(tmp_path: Path, base: str, when: str) -> None:
    text = _edit(base, 'when = "always"', f'when = "{when}"')
    _refused(
        tmp_path,
        text,
        "retention[1].when",
        f"{when!r} is not allowed",
        "'always', 'basis:<basis id>', 'mode:<mode>'",
        "standard, incognito, temporary",
    )


def test_a_setting_not_declared(tmp_path: Path, base: str) -> None:
    start = base.index("[settings]\n")
    end = base.index("\n\n", start)
    text = base[:start] + '[settings]\nchat_history = "Keeps chats."' + base[end:]
    _refused(
        tmp_path,
        text,
        "bases[2].setting: 'model_training' is not declared in [settings]",
        "declared: chat_history",
    )


def test_a_purpose_not_declared(tmp_path: Path, base: str) -> None:
    text = _edit(
        base,
        'purposes = ["safety_review", "safety_model_training"]',
        'purposes = ["safety_review", "marketing"]',
    )
    _refused(
        tmp_path,
        text,
        "bases",
        "bases[1].purposes: 'marketing' is not a purpose of the file",
        "allowed: model_training",
    )


def test_a_plan_class_outside_the_vocabulary(tmp_path: Path, base: str) -> None:
    text = _edit(base, 'max = "consumer"', 'max = "premium"')
    _refused(tmp_path, text, "plans.max", "'premium' is not allowed", "'consumer'", "'commercial'")


def test_a_second_feedback_basis(tmp_path: Path, base: str) -> None:
    start = base.index('[[bases]]\nid = "feedback"')
    end = base.index("\n\n", start)
    copy = base[start:end].replace('id = "feedback"', 'id = "more_feedback"')
    text = base[:end] + "\n\n" + copy + base[end:]
    _refused(tmp_path, text, "bases", "at most one basis of kind 'feedback'")


def test_not_toml(tmp_path: Path, base: str) -> None:
    _refused(tmp_path, base + "\n[rules\n", "not valid TOML")
