"""Request and response bodies of the API, as pydantic models (they also make /docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from traingate.auth import MAX_SESSION_TTL

__all__ = [
    "ConsentRequest",
    "DatasetRequest",
    "ErrorBody",
    "FeedbackReceipt",
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


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable, machine-readable name of the problem.")
    message: str = Field(description="What went wrong, for a person.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class IngestErrorBody(BaseModel):
    line: int
    event_id: str | None
    error: str


class ReceiptBody(BaseModel):
    line: int
    event_id: str
    receipt: str


class IngestSummaryBody(BaseModel):
    """The summary of `traingate ingest` (SPEC §4); on 422 it also carries `error`."""

    accepted: int
    duplicates: int
    rejected: int
    errors: list[IngestErrorBody]
    receipts: list[ReceiptBody] | None = Field(
        default=None, description="Only with ?receipts=true: the receipt of every report."
    )
    error: ErrorDetail | None = None


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
    format: Literal["parquet", "jsonl"] = "parquet"
    engine: Annotated[str, Field(min_length=1, max_length=32)] = "duckdb"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses an operation may return."""
    return {status: {"model": ErrorBody} for status in statuses}
