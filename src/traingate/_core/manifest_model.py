"""The dataset manifest (SPEC §4) as a typed model: every member ``_core/manifest.py`` and the
builder write, with its type, and nothing else.

The one typed boundary of a manifest: the builder writes ``manifest.json`` through it
(``parse`` then ``to_bytes``: a member it does not know cannot be written), and
``dataset verify`` parses ``manifest.json`` with it before checking anything else.

``Manifest.parse(data)`` checks a manifest's shape (a decoded ``manifest.json``) and raises
ManifestError naming every member that is wrong (``Manifest.read``: the same, pydantic's
ValidationError); ``to_json()`` gives back the same JSON object, member for member and in the
order the builder writes them (``shape``, ``since``, ``signature`` and ``documents`` only when
the manifest has them); ``to_bytes()`` the bytes of ``manifest.json``. The signature is checked
by ``manifest.signature_problem``, over the object itself (canonical JSON: the order does not
matter to it).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from traingate._errors import ManifestError

__all__ = ["Manifest"]

# At most this many problems named (a manifest of 10,000 files without rows is one mistake).
_MOST = 20
# What pydantic's error types want, in JSON's words.
_WANTED = {
    "dict_type": "a JSON object",
    "model_type": "a JSON object",
    "list_type": "a JSON array",
    "int_type": "an integer",
    "string_type": "a string",
}


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
    signature: Signature | None = None
    documents: list[Document] | None = None

    @classmethod
    def read(cls, data: Any) -> Manifest:
        """A decoded manifest, checked; raises pydantic's ValidationError naming the member."""
        return cls.model_validate(data)

    @classmethod
    def parse(cls, data: Any) -> Manifest:
        """A decoded manifest, checked; raises ManifestError naming every member that is
        missing, of another type or unknown (``counts.records: must be an integer, not
        '9'``)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors()
            problems = [_problem(error) for error in errors[:_MOST]]
            if len(errors) > _MOST:
                problems.append(f"and {len(errors) - _MOST} more")
            raise ManifestError(problems) from None

    def to_json(self) -> dict[str, Any]:
        """The manifest as the JSON object it was read from (the members it has)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def to_bytes(self) -> bytes:
        """The bytes of ``manifest.json``: the JSON object indented by two, UTF-8, a newline."""
        return (json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _place(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a member of the manifest: ``files[0].sha256``."""
    place = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return place.removeprefix(".") or "the manifest"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(error: Any) -> str:
    """One pydantic error as a sentence naming the member."""
    place, kind = _place(tuple(error["loc"])), error["type"]
    if kind == "missing":
        return f"{place}: missing"
    if kind == "extra_forbidden":
        return f"{place}: unknown member"
    wanted = _WANTED.get(kind)
    if wanted is None:
        message = str(error["msg"])
        return f"{place}: {message[:1].lower()}{message[1:]}, not {_shown(error['input'])}"
    return f"{place}: must be {wanted}, not {_shown(error['input'])}"
