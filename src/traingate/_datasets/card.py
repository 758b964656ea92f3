"""``README.md``: a build's dataset card. Hugging Face YAML metadata (``configs`` /
``data_files``, ``dataset_info`` with the features and ``num_examples``, ``size_categories``)
then prose: purpose, as-of, policy, counts, exclusions by reason, the de-identification, how to
verify. Pure: a manifest body in, text out (docs/builds.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from traingate._datasets.describe import DEID_RULES, SHAPE_TEXT

__all__ = ["card_text", "features_yaml", "size_category", "yaml_lines"]

_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
          (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"),
          (1_000_000_000, "100M<n<1B"))  # fmt: skip


_DATE = "date"  # SPEC §4: the record's UTC date


def size_category(rows: int) -> str:
    """The Hugging Face ``size_categories`` value of ``rows`` examples."""
    for bound, name in _SIZES:
        if rows < bound:
            return name
    return "1B<n<10B"


def _dtype(kind: pa.DataType) -> str:
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_int64(kind):
        return "int64"
    if pa.types.is_string(kind):
        return "string"
    raise ValueError(f"no Hugging Face dtype for {kind}")


def _feature(name: str, kind: pa.DataType) -> dict[str, Any]:
    if isinstance(kind, pa.ListType):
        item = kind.value_type
        if isinstance(item, pa.StructType):
            return {"name": name, "list": [_feature(f.name, f.type) for f in item]}
        return {"name": name, "list": _dtype(item)}
    return {"name": name, "dtype": _dtype(kind)}


def features_yaml(schema: pa.Schema) -> list[dict[str, Any]]:
    """``dataset_info.features`` of rows of ``schema``, as ``datasets`` writes them. A record's
    ``date`` (a UTC date, ``YYYY-MM-DD`` text in the files) is declared ``date32``: readers of
    JSON Lines take such text for a timestamp, which would come out as ``YYYY-MM-DD 00:00:00``
    text; as a date it reads the same from Parquet and JSON Lines."""
    return [
        {"name": f.name, "dtype": "date32"} if f.name == _DATE else _feature(f.name, f.type)
        for f in schema
    ]


def _scalar(value: Any) -> str:
    # JSON strings, numbers and booleans are YAML too (double-quoted, escapes alike)
    return json.dumps(value, ensure_ascii=False)


def yaml_lines(value: Any, indent: int = 0) -> list[str]:
    """Block YAML of nested dicts and lists of JSON scalars (strings always quoted)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines.append(f"{pad}{key}:")
                lines += yaml_lines(item, indent + (2 if isinstance(item, Mapping) else 0))
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    else:
        for item in value:
            if isinstance(item, Mapping | list) and item:
                inner = yaml_lines(item, indent + 2)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines += inner[1:]
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines


def _metadata(body: Mapping[str, Any], schema: pa.Schema, num_bytes: int) -> dict[str, Any]:
    encoding = body["record_format"]["encoding"]
    rows = int(body["shape"]["rows"])
    return {
        "pretty_name": f"traingate {body['purpose']} ({body['shape']['name']})",
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": "train", "path": f"data/part-*.{encoding}"}],
            }
        ],
        "dataset_info": {
            "config_name": "default",
            "features": features_yaml(schema),
            "splits": [{"name": "train", "num_bytes": num_bytes, "num_examples": rows}],
        },
        "size_categories": [size_category(rows)],
        "tags": ["traingate", body["shape"]["name"]],
    }


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _reasons(section: Mapping[str, Any], *, verb: str = "excluded") -> list[str]:
    by_reason = section.get("by_reason") or {}
    if not by_reason:
        return [f"None {verb}."]
    return _table(("reason", verb), [(f"`{r}`", n) for r, n in sorted(by_reason.items())])


def card_text(
    body: Mapping[str, Any], *, schema: pa.Schema, content_sha256: str, num_bytes: int
) -> str:
    """The dataset card of the build whose manifest body is ``body`` (``num_bytes``: the size
    of its data files, the split's ``num_bytes``)."""
    policy, shape, counts = body["policy"], body["shape"], body["counts"]
    exclusions = body["exclusions"]
    purpose, as_of = body["purpose"], body["as_of"]
    lines = ["---", *yaml_lines(_metadata(body, schema, num_bytes)), "---", ""]
    lines += [
        f"# traingate dataset: `{purpose}` as of {as_of}",
        "",
        "## Purpose",
        "",
        f"Every item that the purpose `{purpose}` may use as of {as_of}, each decided by the "
        "policy in force at its own time, de-identified. Use it for that purpose only.",
        "",
        f"- Policy in force at as-of: `{policy['id']}` version {policy['version']}, "
        f"sha256 `{policy['sha256']}`",
        *(
            f"- Policy that decided items: `{p['id']}` sha256 `{p['sha256']}` "
            f"({p.get('messages', 0)} messages, {p.get('reports', 0)} reports)"
            for p in body.get("policies", [])
        ),
        f"- Manifest content sha256: `{content_sha256}` (the canonical JSON of manifest.json "
        "without `signature`, `documents` and `engine`)",
        "",
        "## Shape and files",
        "",
        f"Shape `{shape['name']}`: {SHAPE_TEXT[shape['name']]}",
        "",
        *_table(
            ("file", "rows", "sha256"),
            [(f"`{f['path']}`", f["rows"], f"`{f['sha256']}`") for f in body["files"]],
        ),
        "",
        "## Counts",
        "",
        f"{counts['records']} records holding {counts['messages']} messages; the "
        f"`{shape['name']}` shape made {shape['rows']} rows holding {shape['messages']} "
        "messages of them.",
        "",
        *_table(
            ("basis", "records", "messages"),
            [(f"`{b}`", v["records"], v["messages"]) for b, v in counts["by_basis"].items()],
        ),
        "",
        *_table(
            ("kind", "records", "messages"),
            [(k, v["records"], v["messages"]) for k, v in counts["by_kind"].items()],
        ),
        "",
        "Records the shape has no row for:",
        "",
        *_reasons(shape["left_out"], verb="left out"),
        "",
        "## Exclusions",
        "",
    ]
    for name in ("messages", "reports"):
        section = exclusions[name]
        lines += [
            f"{name.capitalize()}: {section['considered']} considered, {section['included']} "
            f"included, {section['excluded']} excluded.",
            "",
            *_reasons(section),
            "",
        ]
    lines += ["## De-identification", "", *(f"- {rule}" for rule in DEID_RULES), ""]
    lines += [
        "## How to verify",
        "",
        "`traingate dataset verify DIR`, with the key file of the store that built it, checks "
        "the manifest's signature, every data file's sha256 and rows, the sha256 of this card "
        "and of croissant.json (the manifest lists them under `documents`), that nothing else "
        "is in the directory, the counts, the shape's rows and the exclusion arithmetic.",
        "",
    ]
    return "\n".join(lines)
