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
# body that drifts from its model fails loudly); nested objects the CLI prints alike stay open.

Json = dict[str, Any]


class PrivacyAnswerBody(_Body):
    """The answer of `traingate privacy` (SPEC §4)."""

    account_id: str
    as_of: str
    known: bool
    purposes: dict[str, Json]
    policy: Any
    policies: list[Any]
    plan: str | None
    plan_class: str | None
    organization_id: str | None
    plan_history: list[Json]
    deleted_at: str | None
    settings: list[Json]
    consent: Json
    organization_consent: Json | None
    consents: list[Json]
    bases: list[Json]
    conversations: list[Json]
    builds: dict[str, list[Any]]


class ExplanationBody(_Body):
    """Why each message may or may not serve the purpose as of the time."""

    conversation_id: str
    purpose: str
    as_of: str
    policy: Json
    messages: list[Json]


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


class AuditVerifyBody(_Body):
    """The summary of `traingate audit verify`; `warning` only for an empty log with no
    signed head."""

    ok: bool
    entries: int
    head: Json | None
    first_at: str | None
    last_at: str | None
    actions: dict[str, int]
    problems: list[Json]
    pending: list[Json]
    warning: str | None = None


class AuditEntriesBody(_Body):
    entries: list[Json]
    next_after: int | None


class BuildsBody(_Body):
    jobs: list[Json]
    builds: list[Json]


class BuildBody(RootModel[Json]):
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
