"""The policy as data: the SPEC §5 vocabulary as a typed model, the loader that validates a file
against it, and the policy's identity (id + sha256 of the file's bytes).

A policy file is compiled once into this model: each basis is a typed mechanism (``ConsentBasis``,
``FlagBasis``, ``FeedbackBasis``) with its parameters, retention rules are ``RetentionRule``, and
the reasons each mechanism can give come from ``vocabulary.toml`` (``Reasons``). Everything that
decides or explains reads this model; no id of a shipped policy is written in code.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from traingate._core.timeutil import Duration, format_instant, parse_instant
from traingate._errors import PolicyError

__all__ = [
    "MODES",
    "Basis",
    "ConsentBasis",
    "FeedbackBasis",
    "FlagBasis",
    "Policy",
    "Reasons",
    "RetentionRule",
    "RuleText",
    "bundled_policy",
    "bundled_policy_ids",
    "default_policy",
    "default_policy_id",
    "load_policy",
    "parse_policy",
    "reasons",
]

# SPEC §5: the conversation modes (an event vocabulary, like roles).
MODES: tuple[str, ...] = ("standard", "incognito", "temporary")
Mode = Literal["standard", "incognito", "temporary"]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
_DEFAULT_DELETED_AFTER = "P30D"


# -- the reasons of the vocabulary -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecisionReasons:
    no_basis: str
    plan_unknown: str
    conversation_gone: str
    account_gone: str
    content_expiry: str


@dataclass(frozen=True, slots=True)
class ConsentReasons:
    not_granted: str
    revoked: str
    scope_ignored: str
    mode: str


@dataclass(frozen=True, slots=True)
class FlagReasons:
    inactive: str
    mode: str


@dataclass(frozen=True, slots=True)
class FeedbackReasons:
    expiry: str
    comment_missing: str
    mode: str


@dataclass(frozen=True, slots=True)
class ShapeReasons:
    """Why a dataset shape has no row for an included record (not a policy decision)."""

    not_feedback: str
    rated_not_assistant: str
    no_assistant: str


@dataclass(frozen=True, slots=True)
class Reasons:
    """The reason id of every outcome of every mechanism (``vocabulary.toml``)."""

    decision: DecisionReasons
    consent: ConsentReasons
    flag: FlagReasons
    feedback: FeedbackReasons
    shape: ShapeReasons


@cache
def _vocabulary() -> dict[str, Any]:
    data = resources.files("traingate._core.policy").joinpath("vocabulary.toml").read_bytes()
    return tomllib.loads(data.decode("utf-8"))


@cache
def reasons() -> Reasons:
    """The reasons of the vocabulary (read once from ``vocabulary.toml``)."""
    raw = _vocabulary()["reasons"]
    return Reasons(
        decision=DecisionReasons(**raw["decision"]),
        consent=ConsentReasons(**raw["consent"]),
        flag=FlagReasons(**raw["flag"]),
        feedback=FeedbackReasons(**raw["feedback"]),
        shape=ShapeReasons(**raw["shape"]),
    )


def default_policy_id() -> str:
    """The policy in force when none is configured."""
    return str(_vocabulary()["default_policy"])


# -- the file's model ------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _duration(value: str | None) -> str | None:
    if value is not None:
        Duration.parse(value)  # ValueError names the form
    return value


class _BasisCommon(_Frozen):
    id: Name
    rule: str = Field(min_length=1)
    purposes: tuple[Name, ...] = Field(min_length=1)
    text: str = Field(min_length=1)
    exclude_modes: tuple[Mode, ...] = ()

    def excludes(self, mode: str) -> bool:
        return mode in self.exclude_modes


class ConsentBasis(_BasisCommon):
    """Messages covered by a consent setting (SPEC §1 rules 2-3, §5 basis ``consent``)."""

    kind: Literal["consent"]
    plan_class: Literal["consumer", "commercial"]
    consent_scope: Literal["account", "organization"]
    setting: Name
    default: Literal["denied", "granted"] = "denied"
    revocation: Literal["retroactive", "forward_only"] = "retroactive"
    coverage: Literal["message", "conversation"] = "message"

    @property
    def default_granted(self) -> bool:
        return self.default == "granted"

    @property
    def forward_only(self) -> bool:
        return self.revocation == "forward_only"

    @property
    def by_conversation(self) -> bool:
        return self.coverage == "conversation"

    def reason_ids(self, vocabulary: Reasons) -> tuple[str, ...]:
        r = vocabulary.consent
        ids = [r.not_granted]
        if not self.forward_only:
            ids.append(r.revoked)
        if self.consent_scope == "account":
            ids.append(r.scope_ignored)
        if self.exclude_modes:
            ids.append(r.mode)
        return tuple(ids)


class FlagBasis(_BasisCommon):
    """Messages of a flagged conversation (SPEC §1 rule 4, §5 basis ``flag``)."""

    kind: Literal["flag"]
    flag_policy: Name

    def reason_ids(self, vocabulary: Reasons) -> tuple[str, ...]:
        r = vocabulary.flag
        return (r.inactive, r.mode) if self.exclude_modes else (r.inactive,)


class FeedbackBasis(_BasisCommon):
    """Feedback reports (SPEC §1 rule 5, §5 basis ``feedback``). ``retention`` None: kept
    until its receipt holder deletes it."""

    kind: Literal["feedback"]
    retention: str | None = None
    requires_comment: bool = False

    _check_retention = field_validator("retention")(_duration)

    @property
    def retention_duration(self) -> Duration | None:
        return None if self.retention is None else Duration.parse(self.retention)

    def expiry(self, submitted_at: int) -> int | None:
        """The instant a report submitted at ``submitted_at`` stops serving (None: never)."""
        duration = self.retention_duration
        return None if duration is None else duration.add_to(submitted_at)

    def reason_ids(self, vocabulary: Reasons) -> tuple[str, ...]:
        r = vocabulary.feedback
        ids = []
        if self.retention is not None:
            ids.append(r.expiry)
        if self.requires_comment:
            ids.append(r.comment_missing)
        if self.exclude_modes:
            ids.append(r.mode)
        return tuple(ids)


Basis = Annotated[ConsentBasis | FlagBasis | FeedbackBasis, Field(discriminator="kind")]
MessageBasis = ConsentBasis | FlagBasis


class RetentionRule(_Frozen):
    """How long conversation content is kept (SPEC §5 ``[[retention]]``): ``keep`` for the
    messages ``when`` selects: ``always``, ``basis:<id>`` (covered by that basis as of T) or
    ``mode:<mode>``."""

    id: Name
    rule: str = Field(min_length=1)
    text: str = Field(min_length=1)
    keep: str
    when: str

    _check_keep = field_validator("keep")(_duration)

    @field_validator("when")
    @classmethod
    def _check_when(cls, value: str) -> str:
        kind, _, arg = value.partition(":")
        if value == "always" or (kind == "basis" and arg) or (kind == "mode" and arg in MODES):
            return value
        raise ValueError(
            f"{value!r} is not allowed; allowed: 'always', 'basis:<basis id>', "
            f"'mode:<mode>' with a mode of {', '.join(MODES)}"
        )

    @property
    def keep_duration(self) -> Duration:
        return Duration.parse(self.keep)

    @property
    def basis_id(self) -> str | None:
        kind, _, arg = self.when.partition(":")
        return arg if kind == "basis" else None

    @property
    def mode(self) -> str | None:
        kind, _, arg = self.when.partition(":")
        return arg if kind == "mode" else None


class RuleText(_Frozen):
    rule: str = Field(min_length=1)
    text: str = Field(min_length=1)


class Policy(_Frozen):
    """One versioned policy file, validated against the vocabulary. ``sha256`` is the hash of
    the file's exact bytes."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")]
    version: int = Field(ge=1)
    effective_from: str
    title: str = Field(min_length=1)
    deleted_after: str = _DEFAULT_DELETED_AFTER
    plans: dict[Name, Literal["consumer", "commercial"]] = Field(min_length=1)
    purposes: dict[Name, str] = Field(min_length=1)
    settings: dict[Name, str] = {}
    bases: tuple[Basis, ...] = Field(min_length=1)
    retention: tuple[RetentionRule, ...] = ()
    rules: dict[Name, RuleText]
    sha256: str = ""

    _check_deleted_after = field_validator("deleted_after")(_duration)

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        try:
            parse_instant(self.effective_from)
        except ValueError as exc:
            raise ValueError(f"effective_from: {exc}") from None
        seen: set[str] = set()
        for number, basis in enumerate(self.bases, start=1):
            if basis.id in seen:
                raise ValueError(f"bases[{number}].id: basis {basis.id!r} is defined twice")
            seen.add(basis.id)
            unknown = [p for p in basis.purposes if p not in self.purposes]
            if unknown:
                raise ValueError(
                    f"bases[{number}].purposes: {', '.join(map(repr, unknown))} is not a "
                    f"purpose of the file; allowed: {', '.join(self.purposes)}"
                )
            if isinstance(basis, ConsentBasis) and basis.setting not in self.settings:
                raise ValueError(
                    f"bases[{number}].setting: {basis.setting!r} is not declared in "
                    f"[settings]; declared: {', '.join(self.settings) or 'none'}"
                )
        if sum(1 for b in self.bases if isinstance(b, FeedbackBasis)) > 1:
            raise ValueError("bases: at most one basis of kind 'feedback'")
        for number, rule in enumerate(self.retention, start=1):
            if rule.id in seen:
                raise ValueError(f"retention[{number}].id: {rule.id!r} is already a basis id")
            seen.add(rule.id)
            target = rule.basis_id
            if target is not None and not any(
                b.id == target and not isinstance(b, FeedbackBasis) for b in self.bases
            ):
                allowed = [f"basis:{b.id}" for b in self.message_bases()]
                raise ValueError(
                    f"retention[{number}].when: {rule.when!r} names no message basis; "
                    f"allowed: always, {', '.join(allowed)}, mode:<mode>"
                )
        givers = self.reason_givers()
        clash = set(givers) & seen
        if clash:
            raise ValueError(f"rules: {sorted(clash)} are both a basis and a reason id")
        missing = [r for r in givers if r not in self.rules]
        if missing:
            raise ValueError(
                "rules: "
                + "; ".join(f"{r} (given by {givers[r]}) has no text" for r in missing)
                + "; add a [rules.<reason>] table with rule and text for each"
            )
        extra = [r for r in self.rules if r not in givers]
        if extra:
            raise ValueError(
                f"rules: {', '.join(extra)} is no reason this policy's mechanisms can give; "
                f"allowed: {', '.join(givers)}"
            )
        return self

    # -- identity ---------------------------------------------------------------------------

    @property
    def effective_at(self) -> int:
        """``effective_from`` as UTC microseconds."""
        return parse_instant(self.effective_from)

    @property
    def label(self) -> str:
        """``id`` and ``version``, as errors and texts name a policy: ``<id> v<version>``."""
        return f"{self.id} v{self.version}"

    def identity(self) -> dict[str, str | int]:
        """What names this policy in explanations and manifests."""
        return {"id": self.id, "version": self.version, "sha256": self.sha256}

    def effective(self, at: int) -> Policy:
        """This policy with its effective date set to ``at`` (configuration: the file, and so
        its hash, are unchanged)."""
        return self.model_copy(update={"effective_from": format_instant(at)})

    # -- the plan ---------------------------------------------------------------------------

    @property
    def vocabulary(self) -> Reasons:
        return reasons()

    def reason_ids(self) -> tuple[str, ...]:
        """Every reason this policy's mechanisms can give, once each, in a stable order."""
        return tuple(self.reason_givers())

    def reason_givers(self) -> dict[str, str]:
        """Every reason this policy's mechanisms can give, with what gives it."""
        r = reasons().decision
        out = dict.fromkeys(
            (r.no_basis, r.plan_unknown, r.conversation_gone, r.account_gone), "every decision"
        )
        if self.retention:
            out[r.content_expiry] = "the [[retention]] rules"
        for basis in self.bases:
            for reason in basis.reason_ids(reasons()):
                out.setdefault(reason, f"basis {basis.id!r} of kind {basis.kind!r}")
        return out

    @property
    def deleted_after_duration(self) -> Duration:
        return Duration.parse(self.deleted_after)

    def plan_class(self, plan: str) -> str | None:
        return self.plans.get(plan)

    def rule_text(self, rule_id: str) -> tuple[str, str]:
        """(rule, human text) of a basis, retention rule or reason id."""
        for basis in self.bases:
            if basis.id == rule_id:
                return basis.rule, basis.text
        for retention in self.retention:
            if retention.id == rule_id:
                return retention.rule, retention.text
        if rule_id in self.rules:
            rule = self.rules[rule_id]
            return rule.rule, rule.text
        raise PolicyError(f"policy {self.id} has no rule {rule_id!r}")

    def require_purpose(self, purpose: str) -> None:
        if purpose not in self.purposes:
            raise PolicyError(
                f"unknown purpose {purpose!r}; expected one of {', '.join(self.purposes)}"
            )

    def message_bases(self, purpose: str | None = None) -> tuple[MessageBasis, ...]:
        """The bases judging messages (granting ``purpose``, when given), in precedence."""
        return tuple(
            b
            for b in self.bases
            if not isinstance(b, FeedbackBasis) and (purpose is None or purpose in b.purposes)
        )

    @property
    def feedback_basis(self) -> FeedbackBasis | None:
        return next((b for b in self.bases if isinstance(b, FeedbackBasis)), None)

    def account_setting(self) -> str | None:
        """The setting an account changes for itself: that of the first account-scope consent
        basis (None: the policy has none; its accounts cannot opt in or out themselves)."""
        return next(
            (
                b.setting
                for b in self.bases
                if isinstance(b, ConsentBasis) and b.consent_scope == "account"
            ),
            None,
        )

    def basis(self, basis_id: str) -> ConsentBasis | FlagBasis | FeedbackBasis | None:
        return next((b for b in self.bases if b.id == basis_id), None)

    def feedback_expiry(self, submitted_at: int) -> int | None:
        """The instant a report submitted at ``submitted_at`` stops being usable (None:
        never)."""
        basis = self.feedback_basis
        return None if basis is None else basis.expiry(submitted_at)


# -- loading -----------------------------------------------------------------------------------


def _where(loc: tuple[int | str, ...], raw: Mapping[str, Any]) -> str:
    """A pydantic error location as the file's key: ``bases[2].revocation``."""
    out = ""
    node: Any = raw
    for part in loc:
        if isinstance(part, int):
            out += f"[{part + 1}]" if out in ("bases", "retention") else f"[{part}]"
            node = node[part] if isinstance(node, list | tuple) and part < len(node) else None
            continue
        if isinstance(node, dict) and part not in node and part in ("consent", "flag", "feedback"):
            continue  # the discriminated union's tag, not a key of the file
        out += f".{part}" if out else part
        node = node.get(part) if isinstance(node, dict) else None
    return out or "policy"


_MECHANISMS: dict[str, type[BaseModel]] = {
    "consent": ConsentBasis,
    "flag": FlagBasis,
    "feedback": FeedbackBasis,
}


def _allowed_keys(loc: tuple[int | str, ...], raw: Mapping[str, Any]) -> str:
    """The keys allowed where an unknown key was found."""
    parent = loc[:-1]
    model: type[BaseModel] = Policy
    if parent[:1] == ("bases",) and len(parent) >= 3 and isinstance(parent[2], str):
        model = _MECHANISMS[parent[2]]
    elif parent[:1] == ("bases",):
        kind = None
        if isinstance(raw.get("bases"), list | tuple) and len(parent) > 1:
            index = parent[1]
            if isinstance(index, int) and index < len(raw["bases"]):
                entry = raw["bases"][index]
                kind = entry.get("kind") if isinstance(entry, dict) else None
        model = _MECHANISMS.get(str(kind), ConsentBasis)
    elif parent[:1] == ("retention",):
        model = RetentionRule
    elif parent[:1] == ("rules",):
        model = RuleText
    keys = [name for name in model.model_fields if name != "sha256"]
    return ", ".join(keys)


_KINDS = "allowed: consent, flag, feedback"


def _message(error: Mapping[str, Any], raw: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden" and loc[:1] == ("bases",) and loc[-1] == "retention":
        return (
            f"{_where(loc, raw)}: only a basis of kind 'feedback' has a retention; to keep the "
            "content this basis covers for a time, add a [[retention]] rule with "
            'when = "basis:<this basis\'s id>" and keep = <duration>'
        )
    if kind == "extra_forbidden":
        return f"{_where(loc, raw)}: unknown key; allowed keys here: {_allowed_keys(loc, raw)}"
    if kind == "union_tag_invalid":
        kind_given = error["input"].get("kind")
        return f"{_where(loc, raw)}.kind: {kind_given!r} is no mechanism; {_KINDS}"
    if kind == "union_tag_not_found":
        return f"{_where(loc, raw)}: kind is missing; {_KINDS}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        message = (
            f"{error['input']!r} is not allowed; {message.replace('Input should be', 'allowed:')}"
        )
    if kind == "missing":
        message = "required key is missing"
    if kind == "bool_type":
        message = f"{error['input']!r} is not allowed; allowed: true or false"
    if not loc:  # the whole file's checks name their key themselves
        return message
    return f"{_where(loc, raw)}: {message}"


def parse_policy(data: bytes, *, source: str) -> Policy:
    """Validate policy file bytes (TOML). Raises PolicyError naming the file, the key and what
    is allowed there."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"policy file {source}: not valid TOML: {exc}") from None
    if "sha256" in raw:
        raise PolicyError(f"policy file {source}: sha256: unknown key (it is computed)")
    raw["sha256"] = hashlib.sha256(data).hexdigest()
    for table in ("bases", "retention"):
        if isinstance(raw.get(table), list):
            raw[table] = tuple(
                {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
                if isinstance(entry, dict)
                else entry
                for entry in raw[table]
            )
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(f"policy file {source}: {_message(exc.errors()[0], raw)}") from None


def load_policy(path: Path) -> Policy:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"policy file {path} cannot be read: {exc}") from None
    return parse_policy(data, source=str(path))


def bundled_policy_ids() -> tuple[str, ...]:
    """The ids of the policies shipped with traingate (``policy/<id>.toml``), sorted."""
    files = resources.files("traingate._core.policy").iterdir()
    return tuple(
        sorted(
            f.name.removesuffix(".toml")
            for f in files
            if f.name.endswith(".toml") and f.name != "vocabulary.toml"
        )
    )


def bundled_policy(policy_id: str) -> Policy:
    """A policy shipped with traingate, by id. Raises PolicyError for an unknown id."""
    if policy_id not in bundled_policy_ids():
        raise PolicyError(
            f"no bundled policy {policy_id!r}; bundled: {', '.join(bundled_policy_ids())}"
        )
    data = resources.files("traingate._core.policy").joinpath(f"{policy_id}.toml").read_bytes()
    return parse_policy(data, source=f"{policy_id}.toml (bundled)")


def default_policy() -> Policy:
    """The policy in force when none is configured (``vocabulary.toml``)."""
    return bundled_policy(default_policy_id())
