"""Request and response bodies of the API, as pydantic models (they also make /docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from traingate._access.credentials import MAX_SESSION_TTL
from traingate._datasets import Format

__all__ = [
    "INGEST_UNPROCESSABLE",
    "ConsentRequest",
    "DatasetRequest",
    "ErrorBody",
    "FeedbackReceipt",
    "IngestRejectedBody",
    "IngestSummaryBody",
    "PurgeRequest",
    "SessionRequest",
    "error_responses",
]

Instant = Annotated[
    str,
    Field(
        description="RFC 3339 date-time, e.g. 2025-07-01T00:00:00Z, within SPEC §2's range"
        " [1970-01-01T00:00:00Z, 9000-01-01T00:00:00Z)",
        examples=["2025-07-01T00:00:00Z"],
        max_length=64,
        json_schema_extra={"format": "date-time"},
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Body):
    code: str = Field(min_length=1, description="A stable, machine-readable name of the problem.")
    message: str = Field(min_length=1, description="What went wrong, for a person.")


class Problem(_Body):
    field: str = Field(description="The parameter or body field, e.g. `query parameter 'as_of'`.")
    message: str


class ErrorBody(_Body):
    """Every error the API answers; a validation error (code `invalid_request`) also lists
    each problem."""

    error: ErrorDetail
    problems: list[Problem] | None = Field(
        default=None, description="Only for code `invalid_request`: each field that failed."
    )


class IngestErrorBody(BaseModel):
    line: int
    event_id: str | None
    error: str


class ReceiptBody(BaseModel):
    line: int
    event_id: str
    receipt: str


class IngestSummaryBody(_Body):
    """The summary of `traingate ingest` (SPEC §4)."""

    accepted: int
    duplicates: int
    rejected: int
    errors: list[IngestErrorBody]
    receipts: list[ReceiptBody] | None = Field(
        default=None, description="Only with ?receipts=true: the receipt of every report."
    )


class IngestRejectedBody(IngestSummaryBody):
    """Some events were rejected (each error names its line); the others were kept: the
    summary with the error (code `events_rejected`)."""

    error: ErrorDetail


# The one documented 422 of the routes that ingest (events, feedback): either the summary of
# an ingest that rejected some events, or the error body (a body that is not events, a query
# parameter that fails validation). Each forbids the other's fields, so exactly one matches.
INGEST_UNPROCESSABLE: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "Events were rejected (the summary, `events_rejected`), or the body or a"
        " parameter is not valid (the error body, `invalid_body` / `invalid_request`).",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/IngestRejectedBody"},
                        {"$ref": "#/components/schemas/ErrorBody"},
                    ]
                }
            }
        },
    }
}


class FeedbackReceipt(BaseModel):
    receipt: str = Field(description="The holder's only handle on the report: keep it.")
    report: dict[str, Any]


class SessionRequest(_Body):
    account_id: Annotated[str, Field(min_length=1, max_length=256)]
    ttl_seconds: Annotated[int, Field(ge=60, le=MAX_SESSION_TTL // 1_000_000)] | None = Field(
        default=None, description="How long the session lasts (default 24 hours)."
    )


class ConsentRequest(_Body):
    granted: Annotated[bool, Field(strict=True)] = Field(
        description="Whether the account's conversations may be used for model training."
    )


class PurgeRequest(_Body):
    as_of: Instant | None = Field(default=None, description="Purge as of this time [now].")


class DatasetRequest(_Body):
    purpose: Annotated[str, Field(min_length=1, max_length=64)]
    as_of: Instant | None = Field(default=None, description="Build as of this time [now].")
    format: Format = "parquet"  # traingate._datasets.FORMATS
    engine: Annotated[str, Field(min_length=1, max_length=32)] = "duckdb"
    shape: Literal["records", "chat", "kto", "openai"] = Field(
        default="records",
        description="The rows: records (the record fields), chat, kto or openai, made from "
        "the same de-identified records (docs/builds.md).",
    )
    since: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None,
        description="An incremental build: the id of an earlier build of the same purpose "
        "and policies to start from; the records are a full build's (docs/builds.md).",
    )


# -- response bodies: the keys each route answers, in its order (extra keys are refused, so a
# body that drifts from its model fails loudly). The objects nested in them are typed too where
# their shape is fixed (``_Nested``: strict, so a value is never coerced into another JSON
# value); those whose members vary (a basis's parameters, a manifest, audit details) stay open.

Json = dict[str, Any]

# Marks the schema of a nested body in the OpenAPI document: its values are reported from what
# the store holds, not checked against the policies, so ``openapi._add_enums`` gives its
# ``purpose``, ``plan``, ``setting`` and ``engine`` no enum (then drops the mark).
REPORTED = "x-traingate-reported"


class _Nested(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={REPORTED: True})


class PolicyIdentity(_Nested):
    """What names a policy (SPEC §4: id, version and hash)."""

    id: str
    version: int
    sha256: str


class PolicyRef(_Nested):
    """A policy named by its id and hash."""

    id: str
    sha256: str


class PurposeAnswerBody(_Nested):
    """SPEC §4: `conversations`, the account's conversations with a message eligible for the
    purpose as of T; `bases`, the bases those messages are eligible under (both sorted,
    without repeats); `used`, whether `conversations` is not empty."""

    used: bool
    bases: list[str]
    conversations: list[str]


class PlanChangeBody(_Nested):
    at: str
    plan: str
    plan_class: str | None
    organization_id: str | None


class SettingBody(_Nested):
    """A consent basis of the policy in force at as-of, for this account then."""

    basis: str
    policy: PolicyIdentity
    setting: str
    scope: str
    subject: str | None
    plan_class: str
    applies: bool
    granted: bool
    default: str
    since: str | None
    source: str | None
    covers_new_messages: bool
    exclude_modes: list[str]
    revocation: str
    coverage: str


class ConsentChangeBody(_Nested):
    at: str
    granted: bool
    source: str


class ConsentBody(_Nested):
    """A consent ledger as of the time: in force or not, since when, from which source."""

    scope: str
    subject: str
    setting: str
    granted: bool
    default: str
    since: str | None
    source: str | None
    history: list[ConsentChangeBody]


class BasisBody(_Nested):
    """A basis of the policy in force at as-of: whether it applies to the account, is in
    effect, is used; `parameters` are the basis's own (they differ by kind)."""

    id: str
    rule: str
    kind: str
    purposes: list[str]
    text: str
    parameters: Json
    applies: bool
    in_effect: bool
    used: bool


class PlanAtBody(_Nested):
    plan: str
    organization_id: str | None


class PolicyVersionBody(_Nested):
    id: str
    version: int


class PurposeUseBody(_Nested):
    """How one purpose judges one conversation's messages as of the time."""

    eligible_messages: int
    messages: int
    bases: list[str]
    reasons: list[str]
    plans: list[PlanAtBody]
    policies: list[PolicyVersionBody]
    first_eligible_at: str | None
    last_eligible_at: str | None
    expired_under: list[str]


class ConversationSummaryBody(_Nested):
    conversation_id: str
    title: str | None
    mode: str
    incognito: bool
    messages: int
    first_message_at: str | None
    deleted_at: str | None
    flagged: bool
    purposes: dict[str, PurposeUseBody]
    builds: dict[str, list[str]] = Field(description="Purpose -> the ids of builds holding it.")


class BuildHoldingBody(_Nested):
    """A build holding some of the account's conversations (`conversations`: how many)."""

    build_id: str
    built_at: str
    as_of: str
    conversations: int


class PrivacyAnswerBody(_Body):
    """The answer of `traingate privacy` (SPEC §4)."""

    account_id: str
    as_of: str
    known: bool
    purposes: dict[str, PurposeAnswerBody]
    policy: PolicyIdentity
    policies: list[PolicyIdentity]
    plan: str | None
    plan_class: str | None
    organization_id: str | None
    plan_history: list[PlanChangeBody]
    deleted_at: str | None
    settings: list[SettingBody]
    consent: ConsentBody
    organization_consent: ConsentBody | None
    consents: list[ConsentBody]
    bases: list[BasisBody]
    conversations: list[ConversationSummaryBody]
    builds: dict[str, list[BuildHoldingBody]]


class RuleBody(_Nested):
    """A rule that decided: its id, the SPEC rule and its text."""

    id: str
    rule: str
    text: str


class MessageExplanationBody(_Nested):
    message_id: str
    role: str
    at: str
    eligible: bool
    basis: str | None
    reasons: list[str]
    rules: list[RuleBody]
    policy: PolicyIdentity


class ExplanationBody(_Body):
    """Why each message may or may not serve the purpose as of the time."""

    conversation_id: str
    purpose: str
    as_of: str
    policy: PolicyRef
    messages: list[MessageExplanationBody]


class ConversationBody(_Body):
    """A conversation's messages and settings as of a time."""

    conversation_id: str
    account_id: str
    as_of: str
    title: Any
    custom_style: Any
    preferences: Any
    deleted_at: str | None
    messages: list[Json]


class ConversationDeletedBody(_Body):
    conversation_id: str
    deleted: bool
    deleted_at: str


class AuditHeadBody(_Nested):
    seq: int
    hash: str


class AuditProblemBody(_Nested):
    """What is wrong with the chain, and where (`kind`: `edited`, `deleted`, `inserted`,
    `reordered`, `truncated`, `head`)."""

    seq: int
    kind: str
    message: str


class PendingCountsBody(_Nested):
    """One day's counts not sealed into the chain yet: beside `day`, `actor` and `action`,
    one integer per name counted."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, int] = Field(init=False)

    day: str
    actor: str
    action: str


class AuditVerifyBody(_Body):
    """The summary of `traingate audit verify`; `warning` only for an empty log with no
    signed head."""

    ok: bool
    entries: int
    head: AuditHeadBody | None
    first_at: str | None
    last_at: str | None
    actions: dict[str, int]
    problems: list[AuditProblemBody]
    pending: list[PendingCountsBody]
    warning: str | None = None


class AuditEntryBody(_Nested):
    """One entry as `traingate audit export` writes it (`details`: the action's own)."""

    seq: int
    at: str
    actor: str
    action: str
    details: Any
    prev_hash: str
    hash: str


class AuditEntriesBody(_Body):
    entries: list[AuditEntryBody]
    next_after: int | None


class ProgressBody(_Nested):
    """Messages done of the total (null: not known), and the fraction done."""

    messages_done: int | None
    messages_total: int | None
    fraction: float | None


class RunnerBody(_Nested):
    """The process running the job."""

    host: str
    pid: int


class JobBody(_Nested):
    """A build job: its status, progress, and the signed manifest of a finished one."""

    job_id: str
    build_id: str | None
    status: str
    purpose: str
    as_of: str
    format: str
    shape: str
    since: str | None
    engine: str
    path: str
    requested_by: str
    runner: RunnerBody
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: ProgressBody
    error: str | None
    manifest: Json | None


class RecordedBuildBody(_Nested):
    """A completed build as lineage records it."""

    build_id: str
    built_at: str
    purpose: str
    as_of: str
    policy: PolicyRef
    engine: str
    format: str
    path: str
    manifest_sha256: str
    records: int
    messages: int


class CompletedBuildBody(RecordedBuildBody):
    """A completed build from lineage, with its manifest (null: its directory is gone)."""

    status: str
    progress: ProgressBody
    manifest: Json | None


class BuildsBody(_Body):
    jobs: list[JobBody]
    builds: list[RecordedBuildBody]


class BuildBody(RootModel[JobBody | CompletedBuildBody]):
    """A build job's status (a job id), or a completed build from lineage (a build id)."""


class PurgeBody(_Body):
    """What one purge deleted."""

    as_of: str
    expired_reports: int
    conversations_purged: int
    messages_purged: int
    accounts_purged: int
    messages_expired: int


class FeedbackBody(_Body):
    report: Json
    snapshot: Json


class FeedbackDeletedBody(_Body):
    deleted: bool
    report_id: str


class SessionBody(_Body):
    session: str
    session_id: str
    account_id: str
    created_at: str
    expires_at: str
    login_path: str


class RevokedBody(_Body):
    revoked: bool


class PrincipalBody(_Body):
    """Who the caller is."""

    kind: str
    role: str | None
    name: str | None
    account_id: str | None
    expires_at: str | None


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses an operation may return."""
    return {status: {"model": ErrorBody} for status in statuses}
