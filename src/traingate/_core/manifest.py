"""The dataset manifest (SPEC §4): what a build holds, why the rest stayed out, and a signature.

Pure: dicts in, dicts and bytes out. The signature is HMAC-SHA256 with the key file's signing
key over the canonical JSON of the manifest without its ``signature`` member (keys sorted, no
spaces, UTF-8), prefixed by a domain string so no other traingate MAC can pass for it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from traingate._core.policy import Policy, PolicySet
from traingate._core.policy.model import reasons
from traingate._core.timeutil import format_instant

__all__ = [
    "DOCUMENTS",
    "KINDS",
    "MANIFEST_FORMAT",
    "RECORD_FORMAT",
    "SIGNATURE_ALGORITHM",
    "FileEntry",
    "Tally",
    "canonical_bytes",
    "content_sha256",
    "counts_section",
    "decisions_section",
    "key_id",
    "manifest_body",
    "policies_section",
    "sign_manifest",
    "signature_problem",
]

MANIFEST_FORMAT = "traingate-manifest/1"
RECORD_FORMAT = "traingate-record/1"
SIGNATURE_ALGORITHM = "HMAC-SHA256"
KINDS = ("conversation", "feedback")
# The manifest's list of the documents beside the data (the dataset card, the Croissant file):
# each one's path and sha256. Not in ``files``, which lists the data parts (SPEC §4).
DOCUMENTS = "documents"
_DOMAIN = b"traingate/manifest/v1\x00"

# (kind, basis) -> (records, messages)
RecordCounts = Mapping[tuple[str, str], tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Tally:
    """Decisions counted: (basis, None) for included messages, (None, reason) for excluded
    ones, reason being the primary reason (``Decision.primary_reason``)."""

    counts: Mapping[tuple[str | None, str | None], int] = field(default_factory=dict)

    def __add__(self, other: Tally) -> Tally:
        total: Counter[tuple[str | None, str | None]] = Counter(self.counts)
        total.update(other.counts)
        return Tally(counts=dict(total))

    @property
    def considered(self) -> int:
        return sum(self.counts.values())

    def included_by_basis(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (basis, _), n in self.counts.items():
            if basis is not None:
                out[basis] += n
        return dict(sorted(out.items()))

    def excluded_by_reason(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (basis, reason), n in self.counts.items():
            if basis is None:
                out[reason or reasons().decision.no_basis] += n
        return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One data file as the manifest lists it (``path`` relative to the dataset directory)."""

    path: str
    rows: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "sha256": self.sha256}


def _pair(records: int, messages: int) -> dict[str, int]:
    return {"records": records, "messages": messages}


def counts_section(counts: RecordCounts, *, bases: Iterable[str]) -> dict[str, Any]:
    """``counts`` of a manifest: records and messages in total, by basis and by kind.
    Every basis in ``bases`` and every kind is listed, with zeros when nothing came of it."""
    by_basis: dict[str, list[int]] = {basis: [0, 0] for basis in bases}
    by_kind: dict[str, list[int]] = {kind: [0, 0] for kind in KINDS}
    for (kind, basis), (records, messages) in counts.items():
        for bucket in (by_basis.setdefault(basis, [0, 0]), by_kind.setdefault(kind, [0, 0])):
            bucket[0] += records
            bucket[1] += messages
    return {
        "records": sum(r for r, _ in counts.values()),
        "messages": sum(m for _, m in counts.values()),
        "by_basis": {b: _pair(*v) for b, v in sorted(by_basis.items())},
        "by_kind": {k: _pair(*v) for k, v in sorted(by_kind.items())},
    }


def decisions_section(tally: Tally) -> dict[str, Any]:
    """What was considered, included and excluded (by primary reason) of one kind of item."""
    included = sum(tally.included_by_basis().values())
    by_reason = tally.excluded_by_reason()
    return {
        "considered": tally.considered,
        "included": included,
        "excluded": sum(by_reason.values()),
        "by_reason": by_reason,
    }


def policies_section(
    policies: PolicySet, *, messages: Mapping[int, int], reports: Mapping[int, int]
) -> list[dict[str, Any]]:
    """Every policy of the set that decided an item (``messages`` and ``reports``: how many
    each decided, by position in the set), with its identity, effective date and the time
    range it decides (``from`` null for the earliest, ``until`` null for the latest)."""
    return [
        {**entry, "messages": messages.get(i, 0), "reports": reports.get(i, 0)}
        for i, entry in enumerate(policies.ranges())
        if messages.get(i, 0) or reports.get(i, 0)
    ]


def manifest_body(
    *,
    purpose: str,
    as_of: int,
    policy: Policy,
    engine: str,
    record_format: str,
    counts: RecordCounts,
    bases: Sequence[str],
    messages: Tally,
    reports: Tally,
    files: Sequence[FileEntry],
    policies: Sequence[Mapping[str, Any]] = (),
    shape: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest before signing. ``policy`` is the policy in force at as-of; ``policies``
    every policy that decided an item (``policies_section``); ``shape`` what the build's shape
    made of its records (``ShapeTally.section``)."""
    return {
        "format": MANIFEST_FORMAT,
        "purpose": purpose,
        "as_of": format_instant(as_of),
        "policy": {"id": policy.id, "version": policy.version, "sha256": policy.sha256},
        "policies": [dict(entry) for entry in policies],
        "engine": engine,
        "record_format": {"name": RECORD_FORMAT, "encoding": record_format},
        **({} if shape is None else {"shape": dict(shape)}),
        "counts": counts_section(counts, bases=bases),
        "exclusions": {
            "messages": decisions_section(messages),
            "reports": decisions_section(reports),
        },
        "files": [entry.to_dict() for entry in files],
    }


def content_sha256(body: Mapping[str, Any]) -> str:
    """The sha256 of the manifest's content: its canonical JSON without ``signature``,
    ``documents`` and ``engine``. The dataset card and the Croissant file name it (they cannot
    name the manifest's own hash, which lists theirs). Without the engine, which decides
    nothing (every engine writes the same bytes), so the same data has the same documents."""
    content = {k: v for k, v in body.items() if k not in ("signature", DOCUMENTS, "engine")}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_bytes(body: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: the manifest without ``signature``, canonical JSON."""
    unsigned = {key: value for key, value in body.items() if key != "signature"}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _DOMAIN + text.encode("utf-8")


def key_id(signing_key: bytes) -> str:
    """A short public name of the signing key (a MAC of a constant: reveals nothing of it)."""
    return hmac.new(signing_key, b"traingate/key-id", hashlib.sha256).hexdigest()[:16]


def sign_manifest(body: Mapping[str, Any], *, signing_key: bytes) -> dict[str, Any]:
    """The manifest with its ``signature``."""
    value = hmac.new(signing_key, canonical_bytes(body), hashlib.sha256).hexdigest()
    return {
        **body,
        "signature": {
            "algorithm": SIGNATURE_ALGORITHM,
            "key_id": key_id(signing_key),
            "value": value,
        },
    }


def signature_problem(manifest: Mapping[str, Any], *, signing_key: bytes) -> str | None:
    """None when the signature holds; else what is wrong, in words."""
    signature = manifest.get("signature")
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        return "the manifest has no signature"
    if signature.get("algorithm") != SIGNATURE_ALGORITHM:
        return f"unknown signature algorithm {signature.get('algorithm')!r}"
    if signature.get("key_id") != key_id(signing_key):
        return (
            "the manifest was signed with another signing key (key_id "
            f"{signature.get('key_id')!r}, this key file has {key_id(signing_key)!r})"
        )
    expected = hmac.new(signing_key, canonical_bytes(manifest), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature["value"]):
        return "the manifest's signature does not match its content: the manifest was changed"
    return None
