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
from traingate.timeutil import add_calendar_years, parse_instant

__all__ = ["Basis", "Policy", "RuleText", "default_policy", "load_policy", "parse_policy"]

DEFAULT_POLICY_ID = "consumer-2024"
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
        if "default_deny" not in self.rules:
            raise ValueError("rules.default_deny is required")
        if sum(1 for b in self.bases if b.kind == "feedback") > 1:
            raise ValueError("at most one feedback basis")
        return self

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
        raise PolicyError(f"policy {self.id} has no rule {rule_id!r}")

    def require_purpose(self, purpose: str) -> None:
        if purpose not in self.purposes:
            raise PolicyError(
                f"unknown purpose {purpose!r}; expected one of {', '.join(self.purposes)}"
            )

    def message_bases(self, purpose: str) -> tuple[Basis, ...]:
        return tuple(b for b in self.bases if b.applies_to == "message" and purpose in b.purposes)

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
    if isinstance(raw.get("bases"), list):
        raw["bases"] = tuple(
            {**b, "purposes": tuple(b["purposes"])}
            if isinstance(b, dict) and isinstance(b.get("purposes"), list)
            else b
            for b in raw["bases"]
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


def default_policy() -> Policy:
    """The shipped policy ``consumer-2024``."""
    data = resources.files("traingate.policy").joinpath(f"{DEFAULT_POLICY_ID}.toml").read_bytes()
    return parse_policy(data, source=f"{DEFAULT_POLICY_ID}.toml (bundled)")
