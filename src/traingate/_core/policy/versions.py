"""Policy versions: the policies in force, each from its effective date, as one ``PolicySet``.

Every item is decided under the policy in force at its own time: a message at its ``at``, a
feedback report at its submission. The policy in force at ``t`` is the one with the latest
effective date at or before ``t``; before the earliest effective date, the earliest policy.

Which policies are in force is configuration (``--policy`` / ``TRAINGATE_POLICY``): a
comma-separated list of bundled policy ids or policy file paths, each with an optional
``@RFC3339`` effective date that overrides the file's ``effective_from``::

    OLD,NEW@2026-01-01T00:00:00Z

The default is the policy ``vocabulary.toml`` names, alone. Pure but for ``load_policy_set``,
which reads files.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traingate._core.policy.model import (
    Policy,
    bundled_policy,
    bundled_policy_ids,
    default_policy_id,
    load_policy,
)
from traingate._core.timeutil import format_instant, parse_instant
from traingate._errors import PolicyError, TimestampError

__all__ = ["PolicyRef", "PolicySet", "load_policy_set", "parse_policy_spec", "policy_at"]

# What follows the last "@" of an entry is an effective date when it starts like one.
_DATE_LIKE = re.compile(r"\d{4}-")


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Policies ordered by effective date (strictly increasing), sharing plans and purposes."""

    policies: tuple[Policy, ...]
    # Each policy's effective instant, in order: parsed once, asked for every item decided.
    starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.policies:
            raise PolicyError("a policy set needs at least one policy")
        object.__setattr__(self, "starts", tuple(p.effective_at for p in self.policies))
        for before, after in zip(self.policies, self.policies[1:], strict=False):
            if after.effective_at <= before.effective_at:
                raise PolicyError(
                    f"policies {before.label} and {after.label} are in force from "
                    f"{before.effective_from} and {after.effective_from}: effective dates "
                    "must be given in increasing order, and differ"
                )
        labels = [(p.id, p.version) for p in self.policies]
        if len(set(labels)) != len(labels):
            raise PolicyError("a policy set names the same policy id and version twice")
        first = self.policies[0]
        for policy in self.policies[1:]:
            for plan, kind in policy.plans.items():
                other = next((p for p in self.policies if p.plans.get(plan, kind) != kind), None)
                if other is not None:
                    raise PolicyError(
                        f"policies {policy.label} and {other.label} disagree on plan {plan!r} "
                        f"({kind} and {other.plans[plan]}): a plan has one class"
                    )
            if set(policy.purposes) != set(first.purposes):
                raise PolicyError(
                    f"policy {policy.label} defines other purposes than {first.label}: the "
                    "policies in force must agree on purposes"
                )

    @classmethod
    def of(cls, policies: Policy | PolicySet | Iterable[Policy]) -> PolicySet:
        """A set from one policy, a set, or policies in any order (sorted by effective date)."""
        if isinstance(policies, PolicySet):
            return policies
        if isinstance(policies, Policy):
            return cls((policies,))
        return cls(tuple(sorted(policies, key=lambda p: p.effective_at)))

    # -- which policy decides ----------------------------------------------------------------

    def index_at(self, t: int) -> int:
        """The position of the policy in force at ``t`` (0 before the earliest date)."""
        return max(bisect.bisect_right(self.starts, t) - 1, 0)

    def in_force(self, t: int) -> Policy:
        """The policy in force at ``t``: the latest effective at or before ``t``, else the
        earliest."""
        return self.policies[self.index_at(t)]

    def until(self, index: int) -> int | None:
        """The instant the policy at ``index`` stops being in force (None: the latest)."""
        return self.policies[index + 1].effective_at if index + 1 < len(self.policies) else None

    def named(self, policy_id: str, version: int | None = None) -> Policy:
        """The policy of the set with ``policy_id`` (and ``version``, when given)."""
        for policy in self.policies:
            if policy.id == policy_id and version in (None, policy.version):
                return policy
        raise PolicyError(f"no policy {policy_id!r} is in force; in force: {self.label}")

    @property
    def label(self) -> str:
        return ", ".join(f"{p.label} from {p.effective_from}" for p in self.policies)

    # -- what the policies share ---------------------------------------------------------------

    @property
    def plans(self) -> dict[str, str]:
        """Every plan any policy of the set declares, with its class (events naming another
        plan are rejected)."""
        out: dict[str, str] = {}
        for policy in self.policies:
            out.update(policy.plans)
        return out

    @property
    def settings(self) -> tuple[str, ...]:
        """Every consent setting any policy of the set declares (a ``consent.updated`` naming
        another is rejected)."""
        return tuple(dict.fromkeys(s for p in self.policies for s in p.settings))

    @property
    def purposes(self) -> dict[str, str]:
        return dict(self.policies[-1].purposes)

    def require_purpose(self, purpose: str) -> None:
        self.policies[0].require_purpose(purpose)

    def basis_order(self) -> tuple[str, ...]:
        """Every basis id of the set in one precedence: the latest policy's order, then bases
        only earlier policies have (latest first). Records of one conversation are in this
        order."""
        order: list[str] = []
        for policy in reversed(self.policies):
            order.extend(b.id for b in policy.bases if b.id not in order)
        return tuple(order)

    def ranges(self) -> list[dict[str, Any]]:
        """Each policy with the time range it decides: ``from`` is None for the earliest (it
        decides every earlier item too), ``until`` None for the latest."""
        return [
            {
                **policy.identity(),
                "effective_from": policy.effective_from,
                "from": None if index == 0 else policy.effective_from,
                "until": None if (end := self.until(index)) is None else format_instant(end),
            }
            for index, policy in enumerate(self.policies)
        ]


def policy_at(policy: Policy | PolicySet, t: int) -> Policy:
    """The policy deciding an item of time ``t``: ``policy`` itself, or the one of the set in
    force at ``t``."""
    return policy.in_force(t) if isinstance(policy, PolicySet) else policy


@dataclass(frozen=True, slots=True)
class PolicyRef:
    """One entry of the setting: a bundled id or a file path, and an optional effective date."""

    name: str
    effective: int | None = None

    @property
    def bundled(self) -> bool:
        return self.name in bundled_policy_ids()


def parse_policy_spec(text: str) -> tuple[PolicyRef, ...]:
    """The entries of a ``--policy`` value. Raises PolicyError naming a malformed entry."""
    refs: list[PolicyRef] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            raise PolicyError(f"policy setting {text!r}: an entry is empty")
        name, at, date = entry.rpartition("@")
        if not at or not _DATE_LIKE.match(date):
            refs.append(PolicyRef(name=entry))
            continue
        try:
            effective = parse_instant(date)
        except TimestampError as exc:
            raise PolicyError(f"policy setting entry {entry!r}: effective date: {exc}") from None
        if not name:
            raise PolicyError(f"policy setting entry {entry!r} names no policy")
        refs.append(PolicyRef(name=name, effective=effective))
    return tuple(refs)


def load_policy_set(spec: str | None) -> PolicySet:
    """The policies a setting names (default: the default policy alone), each with its effective
    date (the override, else the file's). Entries may come in any order."""
    refs = parse_policy_spec(spec) if spec and spec.strip() else (PolicyRef(default_policy_id()),)
    policies = []
    for ref in refs:
        if not ref.bundled and not Path(ref.name).exists():
            hint = (
                " (an effective date follows @ as an RFC 3339 instant, e.g. "
                f"{bundled_policy_ids()[-1]}@2026-01-01T00:00:00Z)"
                if "@" in ref.name
                else ""
            )
            raise PolicyError(
                f"policy {ref.name!r} is neither a bundled policy "
                f"({', '.join(bundled_policy_ids())}) nor an existing file{hint}"
            )
        policy = bundled_policy(ref.name) if ref.bundled else load_policy(Path(ref.name))
        policies.append(policy if ref.effective is None else policy.effective(ref.effective))
    return PolicySet.of(policies)
