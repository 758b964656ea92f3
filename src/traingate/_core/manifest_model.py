"""The dataset manifest (SPEC §4) as a typed model: every member ``_core/manifest.py`` and the
builder write, with its type, and nothing else.

``Manifest.read(data)`` checks a manifest's shape (a decoded ``manifest.json``); ``to_json()``
gives back the same JSON object, member for member (``shape``, ``since``, ``documents`` and
``signature`` only when the manifest has them). The signature is checked by
``manifest.signature_problem``, over the object itself.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Manifest"]


class _Member(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)


class PolicyIdentity(_Member):
    id: str
    version: int
    sha256: str


class PolicyRange(PolicyIdentity):
    """A policy that decided an item, with the time range it decides."""

    effective_from: str
    from_: str | None = Field(alias="from")
    until: str | None
    messages: int
    reports: int


class RecordFormat(_Member):
    name: str
    encoding: str


class LeftOut(_Member):
    records: int
    by_reason: dict[str, int]


class Shape(_Member):
    name: str
    rows: int
    messages: int
    left_out: LeftOut


class Pair(_Member):
    records: int
    messages: int


class Counts(_Member):
    records: int
    messages: int
    by_basis: dict[str, Pair]
    by_kind: dict[str, Pair]


class Decisions(_Member):
    considered: int
    included: int
    excluded: int
    by_reason: dict[str, int]


class Exclusions(_Member):
    messages: Decisions
    reports: Decisions


class FileMember(_Member):
    path: str
    rows: int
    sha256: str


class Since(_Member):
    """An incremental build's base, and how the build was made from it."""

    build_id: str
    manifest_sha256: str
    as_of: str
    decided: dict[str, int] | None
    full_rebuild: str | None


class Document(_Member):
    path: str
    sha256: str


class Signature(_Member):
    algorithm: str
    key_id: str
    value: str


class Manifest(_Member):
    format: str
    purpose: str
    as_of: str
    policy: PolicyIdentity
    policies: list[PolicyRange]
    engine: str
    record_format: RecordFormat
    shape: Shape | None = None
    counts: Counts
    exclusions: Exclusions
    files: list[FileMember]
    since: Since | None = None
    documents: list[Document] | None = None
    signature: Signature | None = None

    @classmethod
    def read(cls, data: Any) -> Manifest:
        """A decoded manifest, checked; raises pydantic's ValidationError naming the member."""
        return cls.model_validate(data)

    def to_json(self) -> dict[str, Any]:
        """The manifest as the JSON object it was read from (the members it has)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)
