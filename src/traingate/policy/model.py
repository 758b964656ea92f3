"""The policy as data: its model, its loader and its identity (id + sha256 of the file's bytes)."""

from __future__ import annotations

import hashlib
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from traingate.errors import PolicyError
from traingate.timeutil import add_calendar_years, format_instant, parse_instant

__all__ = [
    "DEFAULT_POLICY_ID",
    "Basis",
    "Exclusion",
    "Policy",
    "RuleText",
    "bundled_policy",
    "bundled_policy_ids",
    "default_policy",
    "load_policy",
    "parse_policy",
]

DEFAULT_POLICY_ID = "consumer-2024"
Item = Literal["message", "feedback_report"]
_DURATION = re.compile(r"P(\d+)Y")
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Basis(_Frozen):
    """A legal basis: the mechanism (``kind``) and what it grants."""

    id: Name
    rule: str
    kind: Literal["consent", "flag", "feedback"]
    applies_to: Literal["message", "feedback_report"]
    purposes: tuple[Name, ...] = Field(min_length=1)
    text: str = Field(min_length=1)
    plan_class: Literal["consumer", "commercial"] | None = None
    consent_scope: Literal["account", "organization"] | None = None
    setting: Literal["model_training"] | None = None
    flag_policy: Literal["usage_policy"] | None = None
    retention: str | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> Basis:
        needs: dict[str, tuple[str, ...]] = {
            "consent": ("plan_class", "consent_scope", "setting"),
            "flag": ("flag_policy",),
            "feedback": ("retention",),
        }
        missing = [name for name in needs[self.kind] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"basis {self.id!r} of kind {self.kind!r} needs {', '.join(missing)}")
        expected = "feedback_report" if self.kind == "feedback" else "message"
        if self.applies_to != expected:
            raise ValueError(f"basis {self.id!r} of kind {self.kind!r} applies to {expected}")
        if self.retention is not None and not _DURATION.fullmatch(self.retention):
            raise ValueError(f"basis {self.id!r}: retention must look like P10Y (whole years)")
        return self

    @property
    def retention_years(self) -> int:
        match = _DURATION.fullmatch(self.retention or "")
        if match is None:
            raise PolicyError(f"basis {self.id!r} has no retention")
        return int(match.group(1))


class Exclusion(_Frozen):
    """An exclusion: items it matches serve no purpose, whatever a basis would grant. ``kind``
    names the mechanism the evaluators implement (``incognito``: the conversation was marked
    incognito by its first event); ``id`` is the reason a denial names."""

    id: Name
    rule: str
    kind: Literal["incognito"]
    applies_to: tuple[Item, ...] = Field(min_length=1)
    text: str = Field(min_length=1)


class RuleText(_Frozen):
    rule: str
    text: str = Field(min_length=1)


class Policy(_Frozen):
    """One versioned policy file, validated. ``sha256`` is the hash of the file's exact bytes."""

    id: Name | Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")]
    version: int = Field(ge=1)
    effective_from: str
    title: str
    plans: dict[Name, Literal["consumer", "commercial"]] = Field(min_length=1)
    purposes: dict[Name, str] = Field(min_length=1)
    bases: tuple[Basis, ...] = Field(min_length=1)
    rules: dict[Name, RuleText]
    exclusions: tuple[Exclusion, ...] = ()
    sha256: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        try:
            parse_instant(self.effective_from)
        except ValueError as exc:
            raise ValueError(f"effective_from: {exc}") from None
        seen: set[str] = set()
        for basis in self.bases:
            if basis.id in seen:
                raise ValueError(f"basis {basis.id!r} is defined twice")
            seen.add(basis.id)
            unknown = [p for p in basis.purposes if p not in self.purposes]
            if unknown:
                raise ValueError(f"basis {basis.id!r} grants unknown purposes {unknown}")
        clash = seen & set(self.rules)
        if clash:
            raise ValueError(f"{sorted(clash)} are both a basis and a rule id")
        for exclusion in self.exclusions:
            if exclusion.id in seen or exclusion.id in self.rules:
                raise ValueError(f"exclusion {exclusion.id!r} reuses a basis, rule or exclusion id")
            seen.add(exclusion.id)
        if "default_deny" not in self.rules:
            raise ValueError("rules.default_deny is required")
        if sum(1 for b in self.bases if b.kind == "feedback") > 1:
            raise ValueError("at most one feedback basis")
        return self

    @property
    def effective_at(self) -> int:
        """``effective_from`` as UTC microseconds."""
        return parse_instant(self.effective_from)

    @property
    def label(self) -> str:
        """``id`` and ``version``, as errors and texts name a policy: ``consumer-2024 v1``."""
        return f"{self.id} v{self.version}"

    def identity(self) -> dict[str, str | int]:
        """What names this policy in explanations and manifests."""
        return {"id": self.id, "version": self.version, "sha256": self.sha256}

    def effective(self, at: int) -> Policy:
        """This policy with its effective date set to ``at`` (configuration: the file, and so
        its hash, are unchanged)."""
        return self.model_copy(update={"effective_from": format_instant(at)})

    def plan_class(self, plan: str) -> str | None:
        return self.plans.get(plan)

    def rule_text(self, rule_id: str) -> tuple[str, str]:
        """(SPEC rule, human text) of a basis or denial rule id."""
        for basis in self.bases:
            if basis.id == rule_id:
                return basis.rule, basis.text
        if rule_id in self.rules:
            rule = self.rules[rule_id]
            return rule.rule, rule.text
        for exclusion in self.exclusions:
            if exclusion.id == rule_id:
                return exclusion.rule, exclusion.text
        raise PolicyError(f"policy {self.id} has no rule {rule_id!r}")

    def require_purpose(self, purpose: str) -> None:
        if purpose not in self.purposes:
            raise PolicyError(
                f"unknown purpose {purpose!r}; expected one of {', '.join(self.purposes)}"
            )

    def message_bases(self, purpose: str) -> tuple[Basis, ...]:
        return tuple(b for b in self.bases if b.applies_to == "message" and purpose in b.purposes)

    def excluded_by(self, *, item: Item, incognito: bool) -> tuple[str, ...]:
        """The ids of the exclusions that match an item (``incognito``: whether its
        conversation was marked incognito), in the policy's order."""
        matched = {"incognito": incognito}
        return tuple(e.id for e in self.exclusions if item in e.applies_to and matched[e.kind])

    def excludes_incognito(self, item: Item) -> bool:
        return any(e.kind == "incognito" and item in e.applies_to for e in self.exclusions)

    @property
    def feedback_basis(self) -> Basis | None:
        return next((b for b in self.bases if b.kind == "feedback"), None)

    def feedback_expiry(self, submitted_at: int) -> int | None:
        """The instant a report submitted at ``submitted_at`` stops being usable."""
        basis = self.feedback_basis
        if basis is None:
            return None
        return add_calendar_years(submitted_at, basis.retention_years)


def parse_policy(data: bytes, *, source: str) -> Policy:
    """Validate policy file bytes (TOML). Raises PolicyError naming the file and the problem."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"policy file {source}: not valid TOML: {exc}") from None
    raw["sha256"] = hashlib.sha256(data).hexdigest()
    for table, inner in (("bases", "purposes"), ("exclusions", "applies_to")):
        if isinstance(raw.get(table), list):
            raw[table] = tuple(
                {**entry, inner: tuple(entry[inner])}
                if isinstance(entry, dict) and isinstance(entry.get(inner), list)
                else entry
                for entry in raw[table]
            )
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "policy"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise PolicyError(f"policy file {source}: {where}: {message}") from None


def load_policy(path: Path) -> Policy:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"policy file {path} cannot be read: {exc}") from None
    return parse_policy(data, source=str(path))


def bundled_policy_ids() -> tuple[str, ...]:
    """The ids of the policies shipped with traingate (``policy/<id>.toml``), sorted."""
    files = resources.files("traingate.policy").iterdir()
    return tuple(sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml")))


def bundled_policy(policy_id: str) -> Policy:
    """A policy shipped with traingate, by id. Raises PolicyError for an unknown id."""
    if policy_id not in bundled_policy_ids():
        raise PolicyError(
            f"no bundled policy {policy_id!r}; bundled: {', '.join(bundled_policy_ids())}"
        )
    data = resources.files("traingate.policy").joinpath(f"{policy_id}.toml").read_bytes()
    return parse_policy(data, source=f"{policy_id}.toml (bundled)")


def default_policy() -> Policy:
    """The shipped policy ``consumer-2024``."""
    return bundled_policy(DEFAULT_POLICY_ID)
