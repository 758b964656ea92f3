"""OpenLineage run events of a dataset build (docs/openlineage.md). Pure: values in, events out.

A build is one run of the job ``dataset_build.<purpose>``: START when it begins, then COMPLETE
or FAIL. Its inputs are the store (or the store and a lake, when the messages come from one),
named by OpenLineage's naming conventions and never with credentials:

- PostgreSQL: namespace ``postgres://{host}:{port}``, one dataset per table read,
  ``{database}.{schema}.{table}``;
- SQLite: the local file system, namespace ``file``, one dataset per file (the main file and the
  vault's), its fields ``{table}.{column}``;
- a Parquet lake: namespace ``file``, the lake's directory.

Its output is the dataset directory (namespace ``file``) with the schema of its records, the
lineage of each column (the de-identified ones marked ``masking``), and on COMPLETE the number
of records and files. The run carries ``traingate_build``, traingate's own facet: purpose,
as-of, the policy in force and its sha256, and on COMPLETE the counts and the manifest's sha256.

This module needs ``openlineage-python`` (the ``lineage`` extra): it is imported only when
OpenLineage is configured (``_datasets/openlineage_emit.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import attr
import pyarrow as pa
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    RunFacet,
    column_lineage_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    processing_engine_run,
    schema_dataset,
)

__all__ = [
    "FACET_NAME",
    "FACET_SCHEMA_URL",
    "JOB_NAMESPACE",
    "BuildFacts",
    "DatasetName",
    "Inputs",
    "TraingateBuildRunFacet",
    "complete_event",
    "fail_event",
    "lake_inputs",
    "postgres_inputs",
    "producer",
    "schema_fields",
    "sqlite_inputs",
    "start_event",
]

JOB_NAMESPACE = "traingate"  # the default; OPENLINEAGE_NAMESPACE names another
FACET_NAME = "traingate_build"
_FACET_FILE = "openlineage_facet.json"
_FACET_ID = json.loads(resources.files(__package__).joinpath(_FACET_FILE).read_text("utf-8"))["$id"]
FACET_SCHEMA_URL = f"{_FACET_ID}#/$defs/TraingateBuildRunFacet"

# The store's tables a build reads (logical names; the vault's is "reports").
MAIN_TABLES = (
    "messages",
    "conversations",
    "conversation_settings",
    "account_plans",
    "account_deletions",
    "consents",
    "conversation_deletions",
    "flags",
    "flag_clears",
)
VAULT_TABLE = "reports"


def producer(version: str) -> str:
    """The URI naming traingate as the producer of events and facets (no host of its own:
    a URN with the version)."""
    return f"urn:traingate:{version}"


@dataclass(frozen=True, slots=True)
class DatasetName:
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Inputs:
    """Where each table a build reads is, as an OpenLineage dataset, and how its columns are
    named there (``prefix`` + column)."""

    tables: Mapping[str, tuple[DatasetName, str]]

    def datasets(self) -> list[DatasetName]:
        seen: dict[DatasetName, None] = {}
        for dataset, _ in self.tables.values():
            seen.setdefault(dataset, None)
        return list(seen)

    def field(self, table: str, column: str) -> tuple[DatasetName, str]:
        dataset, prefix = self.tables[table]
        return dataset, f"{prefix}{column}"


def sqlite_inputs(*, main: str, vault: str) -> Inputs:
    """A SQLite store: its main file and its vault file (absolute paths), local files."""
    tables = {t: (DatasetName("file", main), f"{t}.") for t in MAIN_TABLES}
    tables[VAULT_TABLE] = (DatasetName("file", vault), f"{VAULT_TABLE}.")
    return Inputs(tables=tables)


def postgres_inputs(*, url: str, database: str, schema: str, vault_prefix: str) -> Inputs:
    """A PostgreSQL store: ``postgres://host:port`` (from ``url``, without user or password),
    one dataset per table."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    host = parsed.hostname or (query.get("host") or ["localhost"])[0]
    if host.startswith("/"):  # a Unix socket directory: the server is this machine
        host = "localhost"
    port = parsed.port or int((query.get("port") or ["5432"])[0])
    if ":" in host:  # an IPv6 address keeps its brackets in an authority
        host = f"[{host}]"
    namespace = f"postgres://{host}:{port}"
    db = database or unquote(parsed.path.lstrip("/"))
    tables = {t: (DatasetName(namespace, f"{db}.{schema}.{t}"), "") for t in MAIN_TABLES}
    tables[VAULT_TABLE] = (
        DatasetName(namespace, f"{db}.{schema}.{vault_prefix}{VAULT_TABLE}"),
        "",
    )
    return Inputs(tables=tables)


def lake_inputs(store: Inputs, *, lake: str) -> Inputs:
    """The store's tables, but the messages from the lake at the directory ``lake``."""
    return Inputs(tables={**store.tables, "messages": (DatasetName("file", lake), "")})


@attr.define
class TraingateBuildRunFacet(RunFacet):
    """traingate's own run facet (schema: ``_datasets/openlineage_facet.json``)."""

    purpose: str
    as_of: str
    policy_id: str
    policy_sha256: str
    engine: str
    format: str
    shape: str | None = attr.field(default=None)
    build_id: str | None = attr.field(default=None)
    counts: dict[str, Any] | None = attr.field(default=None)
    manifest_sha256: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA_URL


@dataclass(frozen=True, slots=True)
class BuildFacts:
    """What is known of a build when it starts."""

    run_id: str
    job_namespace: str
    purpose: str
    as_of: str  # RFC 3339
    policy_id: str
    policy_sha256: str
    engine: str
    format: str
    out: str  # the dataset directory, absolute
    inputs: Inputs
    version: str  # traingate's
    client_version: str  # openlineage-python's


# -- column lineage ------------------------------------------------------------------------------
# (table, column, type, subtype, masking, description) for every output column a shape can have.
_Source = tuple[str, str, str, str, bool, str]
_REDACT = "e-mail addresses replaced by [email]"
_SNAPSHOT = "from the report's encrypted snapshot (vault), decrypted"
_MESSAGES: tuple[_Source, ...] = (
    ("messages", "role", "DIRECT", "IDENTITY", False, "the message's role"),
    ("messages", "content", "DIRECT", "TRANSFORMATION", True, _REDACT),
    (
        "messages",
        "attachments",
        "DIRECT",
        "TRANSFORMATION",
        True,
        "integration attachments omitted (source kept, name and content null); " + _REDACT,
    ),
    ("reports", "ciphertext", "DIRECT", "TRANSFORMATION", True, f"{_SNAPSHOT}; {_REDACT}"),
)
_RATING: tuple[_Source, ...] = (
    ("reports", "ciphertext", "DIRECT", "TRANSFORMATION", False, f"the rating, {_SNAPSHOT}"),
)
_LINEAGE: dict[str, tuple[_Source, ...]] = {
    "record_id": (
        (
            "conversations",
            "conversation_id",
            "DIRECT",
            "TRANSFORMATION",
            True,
            "HMAC-SHA256 under the signing key of the conversation id and basis",
        ),
        (
            "reports",
            "report_id",
            "DIRECT",
            "TRANSFORMATION",
            True,
            "HMAC-SHA256 under the signing key of the report's record key",
        ),
    ),
    "basis": (
        ("consents", "granted", "INDIRECT", "CONDITIONAL", False, "the basis that covers it"),
        ("account_plans", "plan", "INDIRECT", "CONDITIONAL", False, "the basis that covers it"),
        ("flags", "policy", "INDIRECT", "CONDITIONAL", False, "the basis that covers it"),
    ),
    "date": (
        (
            "messages",
            "at",
            "DIRECT",
            "TRANSFORMATION",
            True,
            "UTC date of the first message: the time of day removed",
        ),
        ("reports", "ciphertext", "DIRECT", "TRANSFORMATION", True, f"UTC date, {_SNAPSHOT}"),
    ),
    "messages": _MESSAGES,
    "prompt": _MESSAGES,
    "completion": _MESSAGES,
    "custom_style": (
        ("conversation_settings", "fields", "DIRECT", "TRANSFORMATION", True, _REDACT),
        ("reports", "ciphertext", "DIRECT", "TRANSFORMATION", True, f"{_SNAPSHOT}; {_REDACT}"),
    ),
    "preferences": (
        ("conversation_settings", "fields", "DIRECT", "TRANSFORMATION", True, _REDACT),
        ("reports", "ciphertext", "DIRECT", "TRANSFORMATION", True, f"{_SNAPSHOT}; {_REDACT}"),
    ),
    "rating": _RATING,
    "label": _RATING,
    "comment": (
        ("reports", "ciphertext", "DIRECT", "TRANSFORMATION", True, f"{_SNAPSHOT}; {_REDACT}"),
    ),
    "categories": (
        ("reports", "ciphertext", "DIRECT", "TRANSFORMATION", True, f"{_SNAPSHOT}; {_REDACT}"),
    ),
    "rated_message_index": (
        ("reports", "ciphertext", "DIRECT", "TRANSFORMATION", False, _SNAPSHOT),
    ),
}
# What decides which items enter at all: the policy's questions, as of the build's as-of.
_FILTER: tuple[tuple[str, str], ...] = (
    ("consents", "granted"),
    ("account_plans", "plan"),
    ("account_deletions", "at"),
    ("conversation_deletions", "at"),
    ("conversations", "incognito"),
    ("flags", "policy"),
    ("flag_clears", "at"),
    ("messages", "at"),
)


def _input_field(inputs: Inputs, source: _Source) -> column_lineage_dataset.InputField:
    table, column, kind, subtype, masking, description = source
    dataset, field = inputs.field(table, column)
    return column_lineage_dataset.InputField(
        namespace=dataset.namespace,
        name=dataset.name,
        field=field,
        transformations=[
            column_lineage_dataset.Transformation(
                type=kind, subtype=subtype, description=description, masking=masking
            )
        ],
    )


def column_lineage(
    columns: Sequence[str], *, inputs: Inputs, produced_by: str
) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    """The lineage of each output column traingate knows (a column it does not know is left
    out rather than guessed), and the policy's filter over the whole dataset."""
    fields = {
        name: column_lineage_dataset.Fields(
            inputFields=[_input_field(inputs, source) for source in _LINEAGE[name]]
        )
        for name in columns
        if name in _LINEAGE
    }
    dataset = [
        _input_field(
            inputs,
            (table, column, "INDIRECT", "FILTER", False, "the policy decides which items enter"),
        )
        for table, column in _FILTER
    ]
    return column_lineage_dataset.ColumnLineageDatasetFacet(
        fields=fields, dataset=dataset, producer=produced_by
    )


# -- schema --------------------------------------------------------------------------------------


def _type_name(dtype: pa.DataType) -> str:
    if pa.types.is_struct(dtype):
        return "struct"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return "list"
    return str(dtype)


def _field(field: pa.Field[Any]) -> schema_dataset.SchemaDatasetFacetFields:
    dtype = field.type
    nested: list[schema_dataset.SchemaDatasetFacetFields] = []
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        element = dtype.value_type
        if pa.types.is_struct(element):
            nested = [_field(element.field(i)) for i in range(element.num_fields)]
        else:
            nested = [_field(pa.field("element", element))]
    elif pa.types.is_struct(dtype):
        nested = [_field(dtype.field(i)) for i in range(dtype.num_fields)]
    return schema_dataset.SchemaDatasetFacetFields(
        name=field.name, type=_type_name(dtype), fields=nested
    )


def schema_fields(schema: pa.Schema) -> list[schema_dataset.SchemaDatasetFacetFields]:
    """The schema facet's fields of an Arrow schema, nested types with their fields."""
    return [_field(field) for field in schema]


# -- events --------------------------------------------------------------------------------------


def _job(facts: BuildFacts) -> Job:
    return Job(
        namespace=facts.job_namespace,
        name=f"dataset_build.{facts.purpose}",
        facets={
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH",
                integration="TRAINGATE",
                jobType="DATASET_BUILD",
                producer=producer(facts.version),
            )
        },
    )


def _run_facets(facts: BuildFacts, **extra: Any) -> dict[str, RunFacet]:
    made_by = producer(facts.version)
    return {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=facts.version,
            name="traingate",
            openlineageAdapterVersion=facts.client_version,
            producer=made_by,
        ),
        FACET_NAME: TraingateBuildRunFacet(
            purpose=facts.purpose,
            as_of=facts.as_of,
            policy_id=facts.policy_id,
            policy_sha256=facts.policy_sha256,
            engine=facts.engine,
            format=facts.format,
            producer=made_by,
            **extra,
        ),
    }


def _inputs(facts: BuildFacts) -> list[InputDataset]:
    return [InputDataset(namespace=d.namespace, name=d.name) for d in facts.inputs.datasets()]


def start_event(facts: BuildFacts, *, at: str) -> RunEvent:
    """START: the run, its job, its inputs and the directory it is to write."""
    return RunEvent(
        eventType=RunState.START,
        eventTime=at,
        run=Run(runId=facts.run_id, facets=_run_facets(facts)),
        job=_job(facts),
        inputs=_inputs(facts),
        outputs=[OutputDataset(namespace="file", name=facts.out)],
        producer=producer(facts.version),
    )


def complete_event(
    facts: BuildFacts,
    *,
    at: str,
    build_id: str,
    manifest: Mapping[str, Any],
    manifest_sha256: str,
    schema: pa.Schema,
) -> RunEvent:
    """COMPLETE: the output with its schema, column lineage and statistics; the run with the
    counts and the manifest's sha256."""
    made_by = producer(facts.version)
    files = manifest.get("files", [])
    shape = manifest.get("shape")
    shape_name = shape.get("name") if isinstance(shape, Mapping) else None
    rows = shape.get("rows") if isinstance(shape, Mapping) else None
    output = OutputDataset(
        namespace="file",
        name=facts.out,
        facets={
            "schema": schema_dataset.SchemaDatasetFacet(
                fields=schema_fields(schema), producer=made_by
            ),
            "columnLineage": column_lineage(schema.names, inputs=facts.inputs, produced_by=made_by),
        },
        outputFacets={
            "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=int(manifest["counts"]["records"] if rows is None else rows),
                fileCount=len(files),
                producer=made_by,
            )
        },
    )
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=at,
        run=Run(
            runId=facts.run_id,
            facets=_run_facets(
                facts,
                shape=shape_name,
                build_id=build_id,
                counts=dict(manifest["counts"]),
                manifest_sha256=manifest_sha256,
            ),
        ),
        job=_job(facts),
        inputs=_inputs(facts),
        outputs=[output],
        producer=made_by,
    )


def fail_event(facts: BuildFacts, *, at: str, message: str) -> RunEvent:
    """FAIL: the run with the error the user was given."""
    facets = _run_facets(facts)
    facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
        message=message, programmingLanguage="python", producer=producer(facts.version)
    )
    return RunEvent(
        eventType=RunState.FAIL,
        eventTime=at,
        run=Run(runId=facts.run_id, facets=facets),
        job=_job(facts),
        inputs=_inputs(facts),
        outputs=[OutputDataset(namespace="file", name=facts.out)],
        producer=producer(facts.version),
    )
