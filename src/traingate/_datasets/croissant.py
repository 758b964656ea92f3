"""``croissant.json``: a build described in MLCommons Croissant 1.0 (JSON-LD), with the
Responsible AI fields that apply and the build's provenance. Pure: a manifest body in, a dict
out (docs/builds.md).

The data parts are one ``cr:FileSet`` (``data/*.parquet`` or ``data/*.jsonl``) and one
``cr:RecordSet`` whose fields are the columns of the build's shape (lists of structs as
``repeated`` fields with ``subField``). Provenance: the policy's id, version and sha256, and the
manifest's content hash (``content_sha256``: the manifest without its signature and without its
``documents``, which list this file's own hash), in ``version``, ``description`` and ``rai:``
text, and as ``sc:identifier`` property values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from traingate._datasets.describe import DEID_RULES, SHAPE_TEXT

__all__ = ["CONFORMS_TO", "croissant"]

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"

# The standard Croissant 1.0 @context (as the specification's example datasets give it).
_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
_ENCODING = {"parquet": "application/x-parquet", "jsonl": "application/jsonlines"}
_FILES = "data-files"
_ROWS = "rows"
_DATE = f"{_ROWS}/date"


def _data_type(kind: pa.DataType) -> str:
    if pa.types.is_boolean(kind):
        return "sc:Boolean"
    if pa.types.is_integer(kind):
        return "sc:Integer"
    return "sc:Text"


def _deep(kind: pa.DataType, path: tuple[str, ...]) -> bool:
    """A list of structs inside a list: deeper than Croissant 1.0 readers go."""
    return (
        isinstance(kind, pa.ListType) and isinstance(kind.value_type, pa.StructType) and bool(path)
    )


def _field(
    name: str, kind: pa.DataType, *, parent: str, path: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One column (or struct member: ``path`` is the members from the column down) as a
    Croissant field; a list is ``repeated``, a list of structs has ``subField``s."""
    ident = f"{parent}/{name}"
    item = kind.value_type if isinstance(kind, pa.ListType) else kind
    column = path[0] if path else name
    source: dict[str, Any] = {"fileSet": {"@id": _FILES}, "extract": {"column": column}}
    if path:
        source["transform"] = [{"jsonPath": member} for member in (*path[1:], name)]
    out: dict[str, Any] = {"@type": "cr:Field", "@id": ident, "name": ident}
    if isinstance(item, pa.StructType):
        inner = (*path, name)
        out["subField"] = [
            _field(m.name, m.type, parent=ident, path=inner)
            for m in item
            if not _deep(m.type, inner)
        ]
        left = [m.name for m in item if _deep(m.type, inner)]
        if left:
            # Croissant 1.0 readers (mlcroissant) read one level of repeated sub-fields: a list
            # of structs deeper (a record's attachments) is in the files, not described here.
            out["description"] = (
                f"Also holds {', '.join(left)} (a list of objects per item), not described "
                "as fields: see the dataset card."
            )
    else:
        # a record's date is a UTC date (SPEC §4), a string in the files
        out["dataType"] = "sc:Date" if ident == _DATE else _data_type(item)
        out["source"] = source
    if pa.types.is_list(kind):
        out["repeated"] = True
    return out


def croissant(body: Mapping[str, Any], *, schema: pa.Schema, content_sha256: str) -> dict[str, Any]:
    """The Croissant description of the build whose manifest body is ``body``."""
    policy = body["policy"]
    shape = body["shape"]
    encoding = body["record_format"]["encoding"]
    purpose, as_of = body["purpose"], body["as_of"]
    counts = body["counts"]
    provenance = (
        f"policy {policy['id']} version {policy['version']} (sha256 {policy['sha256']}); "
        f"manifest content sha256 {content_sha256}"
    )
    return {
        "@context": _CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": f"traingate-{purpose}-{shape['name']}",
        "description": (
            f"Every item that purpose {purpose} may use as of {as_of} under {provenance}, "
            f"de-identified, in the {shape['name']} shape: {SHAPE_TEXT[shape['name']]}"
        ),
        "version": "1.0.0",
        "datePublished": as_of[:10],
        "url": "manifest.json",
        "identifier": [
            {
                "@type": "sc:PropertyValue",
                "name": "manifest_content_sha256",
                "value": content_sha256,
            },
            {"@type": "sc:PropertyValue", "name": "policy_sha256", "value": policy["sha256"]},
        ],
        "rai:dataCollection": (
            "Conversations, messages and feedback reports recorded by a chat product and "
            "ingested as events; selected by traingate for the purpose under the policy in "
            f"force at each item's own time ({provenance}). Records: {counts['records']}, "
            f"messages: {counts['messages']}; the manifest lists every exclusion by reason."
        ),
        "rai:personalSensitiveInformation": (
            "The source data is personal (users' conversations). De-identified before it "
            "leaves: " + " ".join(DEID_RULES)
        ),
        "rai:dataPreprocessingProtocol": " ".join(DEID_RULES),
        "rai:dataUseCases": (
            f"Only the purpose {purpose}: the policy allowed these items for it and for no "
            "other use as of the build's date."
        ),
        "rai:dataLimitations": (
            "A snapshot as of one instant: later consent changes, deletions and expiries are "
            "not reflected; build again to honour them. Free text may still hold personal "
            "data other than e-mail addresses (names, phone numbers). "
            f"Rows left out by the shape: {shape['left_out']['records']}."
        ),
        "distribution": [
            {
                "@type": "cr:FileSet",
                "@id": _FILES,
                "name": _FILES,
                "description": "The data parts, as the manifest lists them with their sha256.",
                "encodingFormat": _ENCODING[encoding],
                "includes": f"data/*.{encoding}",
            }
        ],
        "recordSet": [
            {
                "@type": "cr:RecordSet",
                "@id": _ROWS,
                "name": _ROWS,
                "description": f"One row of the {shape['name']} shape.",
                "field": [_field(f.name, f.type, parent=_ROWS) for f in schema],
            }
        ],
    }
