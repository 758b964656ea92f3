"""The generated side of the sample: accounts, plans, organizations and consent timelines.

Upstream data has no users, plans or consent, so these are generated, deterministically, from a
seed: every random choice comes from a ``random.Random`` seeded with a string naming the seed and
the subject (``"<seed>:account:acct-0007"``), so one subject's choices never shift another's.

Plans and consent settings come from a policy (``SamplePlans.of``), never from code: the mix
gives each plan a weight by its place among the policy's consumer or commercial plans, and the
scenario accounts move between plans by place too (the first consumer plan, the second, ...).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from traingate._core.policy import ConsentBasis, Policy, PolicySet, default_policy

__all__ = [
    "CONTENT_END",
    "END",
    "START",
    "Account",
    "ConsentChange",
    "Organization",
    "PlanPeriod",
    "Population",
    "SamplePlans",
    "generate_population",
    "seeded",
]

START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2025, 6, 30, 23, 59, 59, tzinfo=UTC)
CONTENT_END = datetime(2025, 5, 31, tzinfo=UTC)
"""No conversation, plan change or consent change starts after this; deletions come after."""

# Accounts per plan, by the plan's place among the policy's consumer (commercial) plans; plans
# beyond these get the last weight. Members per organization likewise, by commercial place.
_CONSUMER_WEIGHTS = (30, 16, 8)
_COMMERCIAL_WEIGHTS = (12, 8, 6)
_MEMBERS_PER_ORG = (3, 4, 1)
_ORG_SOURCE = "development_partner_program"

Scope = Literal["account", "organization"]


@dataclass(frozen=True, slots=True)
class SamplePlans:
    """What the sample takes from a policy: its consumer and commercial plans (in the file's
    order), the mix of accounts over them, and the consent setting of each scope."""

    consumer: tuple[str, ...]
    commercial: tuple[str, ...]
    account_setting: str
    organization_setting: str

    @classmethod
    def of(cls, policy: Policy | PolicySet | None = None) -> SamplePlans:
        """From ``policy`` (default: the default policy; a set: every plan of its policies,
        the settings of its latest policy that has a consent basis of each scope)."""
        policies = PolicySet.of(policy if policy is not None else default_policy())
        plans = policies.plans
        consumer = tuple(p for p, kind in plans.items() if kind == "consumer")
        commercial = tuple(p for p, kind in plans.items() if kind == "commercial")
        if not consumer:
            raise ValueError(f"policy {policies.label} has no consumer plan to sample")

        def setting(scope: str) -> str | None:
            for one in reversed(policies.policies):
                for basis in one.bases:
                    if isinstance(basis, ConsentBasis) and basis.consent_scope == scope:
                        return basis.setting
            return None

        declared = policies.settings
        account = setting("account") or (declared[0] if declared else None)
        if account is None:
            raise ValueError(f"policy {policies.label} declares no consent setting")
        return cls(consumer, commercial, account, setting("organization") or account)

    @property
    def mix(self) -> tuple[tuple[str, int], ...]:
        def weight(weights: tuple[int, ...], index: int) -> int:
            return weights[min(index, len(weights) - 1)]

        return tuple(
            (plan, weight(_CONSUMER_WEIGHTS, i)) for i, plan in enumerate(self.consumer)
        ) + tuple((plan, weight(_COMMERCIAL_WEIGHTS, i)) for i, plan in enumerate(self.commercial))

    def members_per_org(self, plan: str) -> int:
        index = self.commercial.index(plan)
        return _MEMBERS_PER_ORG[min(index, len(_MEMBERS_PER_ORG) - 1)]

    def consumer_at(self, index: int) -> str:
        return self.consumer[index % len(self.consumer)]

    def commercial_at(self, index: int) -> str | None:
        return self.commercial[index % len(self.commercial)] if self.commercial else None


def seeded(seed: int, *parts: object) -> random.Random:
    """A private ``random.Random`` for one subject (string seeds hash stably across runs)."""
    return random.Random(":".join(str(part) for part in (seed, *parts)))


def _days(rng: random.Random, low: float, high: float) -> timedelta:
    return timedelta(seconds=round(rng.uniform(low, high) * 86_400))


@dataclass(frozen=True, slots=True)
class Organization:
    organization_id: str
    plan: str


@dataclass(frozen=True, slots=True)
class PlanPeriod:
    """What one ``account.updated`` says, from ``start`` on."""

    start: datetime
    plan: str
    organization_id: str | None
    email: str


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    periods: tuple[PlanPeriod, ...]
    activity: float
    late_signup: bool = False
    """Its first conversation happens before its first ``account.updated`` (rule 7 demo)."""

    @property
    def created(self) -> datetime:
        return self.periods[0].start

    @property
    def email(self) -> str:
        return self.periods[0].email

    @property
    def initial_plan(self) -> str:
        return self.periods[0].plan


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One ``consent.updated`` of ``setting``."""

    at: datetime
    scope: Scope
    subject: str
    granted: bool
    source: str
    setting: str


@dataclass(frozen=True, slots=True)
class Population:
    accounts: tuple[Account, ...]
    organizations: tuple[Organization, ...]
    consent: tuple[ConsentChange, ...]
    plans: SamplePlans


def _organizations(
    plans: list[str], sample: SamplePlans
) -> tuple[list[str | None], tuple[Organization, ...]]:
    """Give every commercial account an organization, filling each org before the next."""
    organizations: list[Organization] = []
    open_org: dict[str, tuple[str, int]] = {}
    assigned: list[str | None] = []
    for plan in plans:
        if plan in sample.consumer:
            assigned.append(None)
            continue
        size = sample.members_per_org(plan)
        org_id, members = open_org.get(plan, ("", size))
        if members >= size:
            org_id, members = f"org-{len(organizations) + 1:03d}", 0
            organizations.append(Organization(organization_id=org_id, plan=plan))
        open_org[plan] = (org_id, members + 1)
        assigned.append(org_id)
    return assigned, tuple(organizations)


def _first(plans: list[str], plan: str, *, skip: int = 0) -> int:
    return [index for index, name in enumerate(plans) if name == plan][skip]


def _org_of(organizations: tuple[Organization, ...], plan: str) -> str:
    return next(org.organization_id for org in organizations if org.plan == plan)


def _changers(plans: list[str], sample: SamplePlans) -> dict[int, tuple[str, str | None]]:
    """Scenario accounts that change plans (index into ``plans`` -> the plan they move to, and
    the one they come back to, if any): a consumer account joins an organization and comes
    back, another moves to an organization for good, a commercial account leaves for a consumer
    plan, another commercial account spends a while on a consumer plan."""
    first, second, third = (sample.consumer_at(i) for i in range(3))
    team, enterprise = sample.commercial_at(0), sample.commercial_at(1)
    if team is None or enterprise is None:
        return {}
    return {
        _first(plans, second): (team, second),
        _first(plans, first): (enterprise, None),
        _first(plans, team): (third, None),
        _first(plans, enterprise): (second, enterprise),
    }


def _accounts(
    seed: int, sample: SamplePlans
) -> tuple[tuple[Account, ...], tuple[Organization, ...], int]:
    plans = [plan for plan, count in sample.mix for _ in range(count)]
    seeded(seed, "plans").shuffle(plans)
    org_ids, organizations = _organizations(plans, sample)
    # Scenario accounts (indexes into ``plans``): plan changes, an e-mail change, a late signup,
    # and a consent grant and denial at the same instant.
    changers = _changers(plans, sample)
    email_change = _first(plans, sample.consumer_at(1), skip=1)
    late = _first(plans, sample.consumer_at(0), skip=1)
    same_instant = _first(plans, sample.consumer_at(2))
    accounts: list[Account] = []
    for index, (plan, org_id) in enumerate(zip(plans, org_ids, strict=True)):
        account_id = f"acct-{index + 1:04d}"
        rng = seeded(seed, "account", account_id)
        email = f"user{index + 1:04d}@example.com"
        created = START + _days(rng, 0, 240)
        periods = [PlanPeriod(start=created, plan=plan, organization_id=org_id, email=email)]
        first_change = created + _days(rng, 60, 150)
        if index in changers:
            middle, back = changers[index]
            middle_org = _org_of(organizations, middle) if middle in sample.commercial else None
            periods.append(PlanPeriod(first_change, middle, middle_org, email))
            if back is not None:
                periods.append(PlanPeriod(first_change + _days(rng, 45, 100), back, org_id, email))
        elif index == email_change:
            new_email = f"user{index + 1:04d}.new@example.com"
            periods.append(PlanPeriod(first_change, plan, org_id, new_email))
        accounts.append(
            Account(
                account_id=account_id,
                periods=tuple(periods),
                activity=rng.lognormvariate(0.0, 0.8),
                late_signup=index == late,
            )
        )
    return tuple(accounts), organizations, same_instant


def _account_consent(
    seed: int, account: Account, sample: SamplePlans, *, same_instant: bool
) -> list[ConsentChange]:
    rng = seeded(seed, "consent", account.account_id)

    def change(at: datetime, granted: bool, source: str) -> ConsentChange:
        return ConsentChange(
            at, "account", account.account_id, granted, source, sample.account_setting
        )

    grant_at = account.created + _days(rng, 0, 180)
    if same_instant:
        return [
            change(grant_at, True, "privacy_settings"),
            change(grant_at, False, "privacy_settings"),
        ]
    if account.late_signup:
        return []
    roll = rng.random()
    if account.initial_plan in sample.commercial:
        # Account-scope consent of a commercial account: recorded, but has no effect (rule 3).
        return [change(grant_at, True, "privacy_settings")] if roll < 0.3 else []
    source = "privacy_settings" if rng.random() < 0.7 else "trusted_tester_program"
    if roll < 0.30:
        return []
    if roll < 0.40:
        return [change(grant_at, False, "privacy_settings")]
    changes = [change(grant_at, True, source)]
    if roll >= 0.65:
        revoke_at = grant_at + _days(rng, 20, 60)
        changes.append(change(revoke_at, False, source))
        if roll >= 0.82:
            changes.append(change(revoke_at + _days(rng, 10, 30), True, "privacy_settings"))
    return changes


def _org_consent(
    seed: int, index: int, org: Organization, sample: SamplePlans
) -> list[ConsentChange]:
    rng = seeded(seed, "consent", org.organization_id)

    def change(at: datetime, granted: bool) -> ConsentChange:
        return ConsentChange(
            at,
            "organization",
            org.organization_id,
            granted,
            _ORG_SOURCE,
            sample.organization_setting,
        )

    grant_at = START + _days(rng, 10, 300)
    # In turn: an organization that keeps its grant, one that revokes it, one that never grants.
    if index % 3 == 0:
        return [change(grant_at, True)]
    if index % 3 == 1:
        return [change(grant_at, True), change(grant_at + _days(rng, 30, 150), False)]
    return []


def generate_population(*, seed: int, plans: SamplePlans | None = None) -> Population:
    """Accounts (every plan of ``plans``, default: the default policy's), organizations and
    consent timelines for ``seed``."""
    sample = plans or SamplePlans.of()
    accounts, organizations, same_instant = _accounts(seed, sample)
    consent: list[ConsentChange] = []
    for index, account in enumerate(accounts):
        consent.extend(_account_consent(seed, account, sample, same_instant=index == same_instant))
    for index, org in enumerate(organizations):
        consent.extend(_org_consent(seed, index, org, sample))
    if max(change.at for change in consent) > CONTENT_END:
        raise AssertionError("consent timeline runs past CONTENT_END")
    return Population(
        accounts=accounts, organizations=organizations, consent=tuple(consent), plans=sample
    )
