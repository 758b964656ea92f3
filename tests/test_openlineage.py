"""OpenLineage run events of dataset builds (docs/openlineage.md), written by the client's own
file transport: they validate against the OpenLineage 2-0-2 JSON schema (vendored, offline:
tests/openlineage_schemas/README.md) and traingate's facet against its shipped schema; they name
the policy and its hash; a failed build emits FAIL and its error still reaches the caller
unchanged; a transport that fails never fails a build; unconfigured, nothing is sent or imported.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import Events
from traingate._core.timeutil import parse_instant
from traingate._datasets.openlineage import FACET_NAME, postgres_inputs, sqlite_inputs
from traingate._datasets.openlineage_emit import configured, output_schema
from traingate._datasets.records import RECORD_SCHEMA
from traingate._errors import TraingateError
from traingate._facade import Traingate
from traingate._sample.importer import sample_events_path
from traingate._settings import Settings

SCHEMAS = Path(__file__).parent / "openlineage_schemas"
FACET_SCHEMA = (
    Path(__file__).parents[1] / "src" / "traingate" / "_datasets" / "openlineage_facet.json"
)
AS_OF = parse_instant("2025-07-01T00:00:00Z")
MASKING_TYPES = {
    "DIRECT": {"IDENTITY", "TRANSFORMATION", "AGGREGATION"},
    "INDIRECT": {"JOIN", "GROUP_BY", "FILTER", "SORT", "WINDOW", "CONDITIONAL"},
}


def _validators() -> tuple[Any, Any, Any, Any]:
    """The core schema, traingate's facet schema, and the vendored facet schemas (README)."""
    core = json.loads((SCHEMAS / "OpenLineage.json").read_text("utf-8"))
    facet = json.loads(FACET_SCHEMA.read_text("utf-8"))
    job_type = json.loads((SCHEMAS / "facets" / "JobTypeJobFacet-2-0-4.json").read_text("utf-8"))
    columns = json.loads(
        (SCHEMAS / "facets" / "ColumnLineageDatasetFacet-1-1-0.json").read_text("utf-8")
    )
    registry = jsonschema_rs.Registry([(s["$id"], s) for s in (core, facet, job_type, columns)])

    def validator(schema: dict[str, Any]) -> Any:
        return jsonschema_rs.Draft202012Validator(schema, validate_formats=True, registry=registry)

    return validator(core), validator(facet), validator(job_type), validator(columns)


EVENT, OWN_FACET, JOB_TYPE, COLUMN_LINEAGE = _validators()


def _problems(event: dict[str, Any]) -> list[str]:
    """Every way ``event`` breaks the core schema or a vendored facet schema."""
    checks = [
        (EVENT, event),
        (OWN_FACET, {FACET_NAME: event["run"]["facets"][FACET_NAME]}),
        (JOB_TYPE, {"jobType": event["job"]["facets"]["jobType"]}),
    ]
    for output in event.get("outputs", []):
        if "columnLineage" in output.get("facets", {}):
            checks.append((COLUMN_LINEAGE, {"columnLineage": output["facets"]["columnLineage"]}))
    return [f"{e.instance_path}: {e.message}" for v, doc in checks for e in v.iter_errors(doc)]


def _unconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OpenLineage variable of the machine running the tests applies."""
    for key in [k for k in os.environ if k.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def _no_outside_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    _unconfigured(monkeypatch)


def _file_transport(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    _unconfigured(monkeypatch)
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(path))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


# -- a real build of the bundled sample ----------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Traingate, Path]]:
    """The bundled sample in a SQLite store, once for the module."""
    root = tmp_path_factory.mktemp("openlineage")
    settings = Settings(
        db_url=f"sqlite:///{root / 'data' / 'traingate.sqlite'}", key_file=root / "keys.json"
    )
    with Traingate.open(settings) as tg:
        with gzip.open(sample_events_path(), "rt", encoding="utf-8") as lines:
            assert tg.events.ingest(lines).rejected == 0
        yield tg, root


@pytest.fixture(scope="module")
def built(sample: tuple[Traingate, Path]) -> tuple[Any, list[dict[str, Any]]]:
    tg, root = sample
    log = root / "events.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        _file_transport(mp, log)
        result = tg.datasets.build(purpose="model_training", out=root / "built", as_of=AS_OF)
    return result, _events(log)


def test_a_build_emits_start_then_complete_of_one_run(
    built: tuple[Any, list[dict[str, Any]]],
) -> None:
    _, events = built
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert len({e["run"]["runId"] for e in events}) == 1
    assert {e["job"]["name"] for e in events} == {"dataset_build.model_training"}
    for event in events:
        assert _problems(event) == []


def test_the_schema_check_catches_a_broken_event(built: tuple[Any, list[dict[str, Any]]]) -> None:
    """The validators above are not vacuous: a facet without its _producer, a run without id
    and an unknown event type are each refused."""
    _, events = built
    broken = json.loads(json.dumps(events[1]))
    del broken["outputs"][0]["facets"]["columnLineage"]["_producer"]
    assert _problems(broken)
    broken = json.loads(json.dumps(events[1]))
    del broken["run"]["runId"]
    assert _problems(broken)
    broken = json.loads(json.dumps(events[1]))
    broken["eventType"] = "DONE"
    assert _problems(broken)
    broken = json.loads(json.dumps(events[1]))
    broken["run"]["facets"][FACET_NAME]["policy_sha256"] = "not-a-hash"
    assert _problems(broken)
    broken = json.loads(json.dumps(events[1]))
    del broken["job"]["facets"]["jobType"]["integration"]
    assert _problems(broken)
    broken = json.loads(json.dumps(events[1]))
    field = broken["outputs"][0]["facets"]["columnLineage"]["fields"]["messages"]
    field["inputFields"][0]["transformations"][0]["masking"] = "yes"
    assert _problems(broken)


def test_the_facet_names_the_policy_its_hash_counts_and_manifest(
    built: tuple[Any, list[dict[str, Any]]],
) -> None:
    result, (start, complete) = built
    manifest = result.manifest
    data = (result.path / "manifest.json").read_bytes()
    for event in (start, complete):
        facet = event["run"]["facets"][FACET_NAME]
        assert facet["policy_id"] == manifest["policy"]["id"]
        assert facet["policy_sha256"] == manifest["policy"]["sha256"]
        assert facet["purpose"] == "model_training"
        assert facet["as_of"] == manifest["as_of"]
        assert facet["_schemaURL"].endswith("#/$defs/TraingateBuildRunFacet")
    facet = complete["run"]["facets"][FACET_NAME]
    assert facet["manifest_sha256"] == hashlib.sha256(data).hexdigest()
    assert facet["counts"] == manifest["counts"]
    assert facet["build_id"] == result.build_id
    assert "counts" not in start["run"]["facets"][FACET_NAME]
    stats = complete["outputs"][0]["outputFacets"]["outputStatistics"]
    assert stats["rowCount"] == manifest["counts"]["records"] > 0
    assert stats["fileCount"] == len(manifest["files"])


def test_inputs_are_the_store_files_and_the_output_is_the_dataset(
    sample: tuple[Traingate, Path], built: tuple[Any, list[dict[str, Any]]]
) -> None:
    _, root = sample
    result, (_, complete) = built
    main = str((root / "data" / "traingate.sqlite").absolute())
    vault = str((root / "data" / "traingate-vault.sqlite").absolute())
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [
        ("file", main),
        ("file", vault),
    ]
    (output,) = complete["outputs"]
    assert (output["namespace"], output["name"]) == ("file", str(result.path))
    fields = output["facets"]["schema"]["fields"]
    assert [f["name"] for f in fields] == RECORD_SCHEMA.names
    messages = next(f for f in fields if f["name"] == "messages")
    assert messages["type"] == "list"
    assert [f["name"] for f in messages["fields"]] == ["role", "content", "attachments"]


def test_column_lineage_marks_the_de_identified_columns_masked(
    built: tuple[Any, list[dict[str, Any]]],
) -> None:
    _, (_, complete) = built
    lineage = complete["outputs"][0]["facets"]["columnLineage"]
    inputs = {(d["namespace"], d["name"]) for d in complete["inputs"]}
    schema = {f["name"] for f in complete["outputs"][0]["facets"]["schema"]["fields"]}
    assert set(lineage["fields"]) <= schema
    for entry in [f for column in lineage["fields"].values() for f in column["inputFields"]]:
        assert (entry["namespace"], entry["name"]) in inputs
        for t in entry["transformations"]:
            assert t["subtype"] in MASKING_TYPES[t["type"]]

    def masked(column: str, field: str) -> set[bool]:
        return {
            t["masking"]
            for f in lineage["fields"][column]["inputFields"]
            if f["field"].endswith(field)
            for t in f["transformations"]
        }

    for column, field in [
        ("messages", "messages.content"),
        ("messages", "messages.attachments"),
        ("record_id", "conversations.conversation_id"),
        ("date", "messages.at"),
        ("comment", "reports.ciphertext"),
        ("preferences", "conversation_settings.fields"),
    ]:
        assert masked(column, field) == {True}, (column, field)
    assert masked("messages", "messages.role") == {False}
    assert masked("rating", "reports.ciphertext") == {False}
    assert {t["subtype"] for f in lineage["dataset"] for t in f["transformations"]} == {"FILTER"}


def test_a_lake_build_names_the_lake_as_the_messages_input(
    sample: tuple[Traingate, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tg, root = sample
    lake = root / "lake"
    tg.datasets.export_lake(out=lake, as_of=AS_OF)
    log = root / "lake-events.jsonl"
    _file_transport(monkeypatch, log)
    tg.datasets.build(
        purpose="model_training", out=root / "from-lake", as_of=AS_OF, messages=f"parquet:{lake}"
    )
    start, complete = _events(log)
    assert ("file", str(lake.absolute())) in {(d["namespace"], d["name"]) for d in start["inputs"]}
    content = next(
        f
        for f in complete["outputs"][0]["facets"]["columnLineage"]["fields"]["messages"][
            "inputFields"
        ]
        if f["field"] == "content"
    )
    assert content["name"] == str(lake.absolute())
    assert _problems(complete) == []


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    ["out exists", "out under a file", "unknown engine", "unknown format"],
)
def test_a_failed_build_emits_fail_and_its_error_is_unchanged(
    sample: tuple[Traingate, Path], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    tg, root = sample
    work = root / f"fail-{case.replace(' ', '-')}"
    work.mkdir()
    options: dict[str, Any] = {"purpose": "model_training", "as_of": AS_OF, "out": work / "out"}
    if case == "out exists":
        (work / "out").mkdir()
    elif case == "out under a file":
        (work / "file").write_text("x")
        options["out"] = work / "file" / "out"
    elif case == "unknown engine":
        options["engine"] = "abacus"
    else:
        options["format"] = "xlsx"
    log = work / "events.jsonl"
    with pytest.raises(TraingateError) as without:
        tg.datasets.build(**options)
    assert not log.exists()  # not configured: nothing
    _file_transport(monkeypatch, log)
    with pytest.raises(TraingateError) as raised:
        tg.datasets.build(**options)
    assert (type(raised.value), str(raised.value)) == (type(without.value), str(without.value))
    start, fail = _events(log)
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    assert fail["run"]["runId"] == start["run"]["runId"]
    assert fail["run"]["facets"]["errorMessage"]["message"] == str(raised.value)
    assert fail["run"]["facets"][FACET_NAME]["policy_sha256"]
    assert _problems(fail) == []


def test_a_transport_that_fails_never_fails_the_build(
    sample: tuple[Traingate, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tg, root = sample
    _file_transport(monkeypatch, root / "no-such-dir" / "events.jsonl")
    with caplog.at_level(logging.WARNING, logger="traingate._datasets.openlineage_emit"):
        result = tg.datasets.build(purpose="model_training", out=root / "unsent", as_of=AS_OF)
    assert (result.path / "manifest.json").is_file()
    warned = [r.getMessage() for r in caplog.records if r.name.endswith("openlineage_emit")]
    assert any("START" in m and "not sent" in m for m in warned), warned
    assert any("COMPLETE" in m and "not sent" in m for m in warned), warned


def test_unconfigured_builds_send_nothing_and_import_nothing(tmp_path: Path) -> None:
    """A fresh interpreter with no OpenLineage configuration: the build completes and the
    openlineage package is never imported."""
    script = f"""
import sys
from pathlib import Path
from traingate._facade import Traingate
from traingate._settings import Settings
root = Path({str(tmp_path)!r})
settings = Settings(db_url=f"sqlite:///{{root / 'db.sqlite'}}", key_file=root / "keys.json")
with Traingate.open(settings) as tg:
    tg.datasets.build(purpose="model_training", out=root / "out")
print(sorted(m for m in sys.modules if m.split(".")[0] == "openlineage"))
"""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "out" / "manifest.json").is_file()


# -- both store backends -------------------------------------------------------------------------


@pytest.mark.store
def test_store_inputs_follow_the_naming_conventions_without_credentials(
    tg: Traingate, ev: Events, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [
        ev.account("a1", ev.t(0)),
        ev.consent("a1", ev.t(0, 1), granted=True),
        ev.conversation("c1", "a1", ev.t(0, 2)),
        ev.message("m1", "c1", "a1", ev.t(0, 3), content="write to me@example.com"),
    ]
    summary = tg.events.ingest(json.dumps(e) + "\n" for e in events)
    assert summary.rejected == 0
    log = tmp_path / "events.jsonl"
    _file_transport(monkeypatch, log)
    tg.datasets.build(purpose="model_training", out=tmp_path / "out", as_of=parse_instant(ev.t(9)))
    start, complete = _events(log)
    names = [(d["namespace"], d["name"]) for d in complete["inputs"]]
    if tg.store.db.dialect == "sqlite":
        assert {ns for ns, _ in names} == {"file"}
    else:
        database, schema = tg.store.db.execute("SELECT current_database(), current_schema()")[0]
        assert {ns for ns, _ in names} == {"postgres://127.0.0.1:5432"}
        assert f"{database}.{schema}.messages" in {name for _, name in names}
        assert f"{database}.{schema}.vault_reports" in {name for _, name in names}
    text = json.dumps([start, complete])
    assert "postgres@" not in text and "postgresql://" not in text
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 1
    assert _problems(start) == [] and _problems(complete) == []


# -- the pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "namespace", "database"),
    [
        (
            "postgresql://user:secret@db.internal:6543/prod?sslmode=require",
            "postgres://db.internal:6543",
            "prod",
        ),
        ("postgresql://user@db.internal/prod", "postgres://db.internal:5432", "prod"),
        ("postgres:///prod?host=/var/run/postgresql", "postgres://localhost:5432", "prod"),
        ("postgresql://u:p%40ss@[::1]:5433/x", "postgres://[::1]:5433", "x"),
    ],
)
def test_postgres_names_carry_no_credentials(url: str, namespace: str, database: str) -> None:
    inputs = postgres_inputs(url=url, database="", schema="public", vault_prefix="vault_")
    assert {d.namespace for d in inputs.datasets()} == {namespace}
    assert inputs.field("messages", "content")[0].name == f"{database}.public.messages"
    assert inputs.field("reports", "ciphertext")[0].name == f"{database}.public.vault_reports"
    assert not any("secret" in d.name or "p%40ss" in d.name for d in inputs.datasets())


def test_sqlite_fields_name_their_table() -> None:
    inputs = sqlite_inputs(main="/d/t.sqlite", vault="/d/t-vault.sqlite")
    dataset, field = inputs.field("messages", "content")
    assert (dataset.namespace, dataset.name, field) == ("file", "/d/t.sqlite", "messages.content")
    assert inputs.field("reports", "ciphertext")[0].name == "/d/t-vault.sqlite"


@pytest.mark.parametrize(
    ("environ", "files", "expected"),
    [
        ({}, [], False),
        ({"OPENLINEAGE_URL": "http://marquez:5000"}, [], True),
        ({"OPENLINEAGE__TRANSPORT__TYPE": "console"}, [], True),
        ({"OPENLINEAGE_URL": "http://marquez:5000", "OPENLINEAGE_DISABLED": "true"}, [], False),
        ({"OPENLINEAGE_CONFIG": "{tmp}/ol.yml"}, ["ol.yml"], True),
        ({"OPENLINEAGE_CONFIG": "{tmp}/missing.yml"}, [], False),
        ({}, ["cwd/openlineage.yml"], True),
        ({}, ["home/.openlineage/openlineage.yml"], True),
        ({"OPENLINEAGE_NAMESPACE": "prod"}, [], False),
    ],
)
def test_configured_follows_openlineages_own_configuration(
    tmp_path: Path, environ: dict[str, str], files: list[str], expected: bool
) -> None:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("transport:\n  type: console\n")
    env = {k: v.format(tmp=tmp_path) for k, v in environ.items()}
    assert configured(env, cwd=tmp_path / "cwd", home=tmp_path / "home") is expected


def test_the_job_type_facet_is_the_vendored_version() -> None:
    """The client stamps jobType with the version vendored (README: the column lineage schema
    vendored is 1-1-0, the client's is 1-2-0)."""
    from openlineage.client.facet_v2 import column_lineage_dataset, job_type_job

    vendored = json.loads((SCHEMAS / "facets" / "JobTypeJobFacet-2-0-4.json").read_text("utf-8"))
    assert job_type_job.JobTypeJobFacet._get_schema().startswith(vendored["$id"] + "#")
    schema_url = column_lineage_dataset.ColumnLineageDatasetFacet._get_schema()
    assert "/1-2-0/ColumnLineageDatasetFacet.json#" in schema_url


def test_the_vendored_schema_is_the_published_file() -> None:
    """tests/openlineage_schemas/README.md: the core schema is the OpenLineage file, unchanged."""
    data = (SCHEMAS / "OpenLineage.json").read_bytes()
    assert (len(data), hashlib.sha256(data).hexdigest()) == (
        9155,
        "69f68bee00b9beac88a87059c0102410e7bb05f3f43c46d02a0409831eceb0d2",
    )
    assert json.loads(data)["$id"] == "https://openlineage.io/spec/2-0-2/OpenLineage.json"


@pytest.mark.parametrize("shape", [None, "records", "chat", "kto", "openai"])
def test_the_output_schema_is_the_shapes(shape: str | None, tmp_path: Path) -> None:
    from traingate._datasets.builder import BuildResult
    from traingate._datasets.shapes import as_shape, shape_schema

    manifest: dict[str, Any] = {"files": []}
    if shape is not None:
        manifest["shape"] = {"name": shape, "rows": 0}
    result = BuildResult(build_id="b", path=tmp_path, manifest=manifest)
    assert output_schema(result) == shape_schema(as_shape(shape or "records"))


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_a_shape_it_does_not_know_is_described_by_its_first_file(
    suffix: str, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from traingate._datasets.builder import BuildResult

    (tmp_path / "data").mkdir()
    part = tmp_path / "data" / f"part-00000.{suffix}"
    if suffix == "parquet":
        pq.write_table(pa.table({"text": ["a"], "score": [1]}), part)
    else:
        part.write_text('{"text": "a", "score": 1}\n')
    manifest = {"shape": {"name": "future"}, "files": [{"path": f"data/{part.name}"}]}
    result = BuildResult(build_id="b", path=tmp_path, manifest=manifest)
    assert output_schema(result).names == ["text", "score"]


def test_kto_columns_have_their_lineage() -> None:
    from traingate._datasets.openlineage import column_lineage
    from traingate._datasets.shapes import shape_schema

    inputs = sqlite_inputs(main="/d/t.sqlite", vault="/d/t-vault.sqlite")
    facet = column_lineage(shape_schema("kto").names, inputs=inputs, produced_by="urn:x")
    assert set(facet.fields) == {"prompt", "completion", "label"}
    content = [f for f in facet.fields["prompt"].inputFields if f.field == "messages.content"]
    assert [t.masking for f in content for t in f.transformations or []] == [True]
    assert {
        t.masking for f in facet.fields["label"].inputFields for t in f.transformations or []
    } == {False}


def test_the_command_line_reads_openlineage_yml_of_the_working_directory(tmp_path: Path) -> None:
    """`traingate dataset build` as a real process, configured only by ./openlineage.yml (the
    client's own configuration file): a build sends START and COMPLETE, a failing one START and
    FAIL, and its error and exit status are those of the same build unconfigured."""
    log = tmp_path / "events.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINGATE_", "OPENLINEAGE"))}
    command = (sys.executable, "-m", "traingate")
    env["HOME"] = str(tmp_path)

    def build(out: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, "dataset", "build", "--purpose", "model_training", "--out", out],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    (tmp_path / "taken").mkdir()
    refused = build("taken")  # unconfigured
    assert refused.returncode != 0 and not log.exists()
    (tmp_path / "openlineage.yml").write_text(
        f"transport:\n  type: file\n  log_file_path: {log}\n  append: true\n"
    )
    assert build("out").returncode == 0
    again = build("taken")
    assert (again.returncode, again.stderr) == (refused.returncode, refused.stderr)
    events = _events(log)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE", "START", "FAIL"]
    assert events[1]["outputs"][0]["name"] == str(tmp_path / "out")
    assert events[3]["run"]["facets"]["errorMessage"]["message"] in refused.stderr
    assert all(_problems(event) == [] for event in events)


_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=12)


@given(
    user=_WORD,
    password=_WORD,
    host=st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){0,2}", fullmatch=True),
    port=st.integers(min_value=1, max_value=65535) | st.none(),
    database=_WORD,
)
def test_no_credentials_ever_reach_a_name(
    user: str, password: str, host: str, port: int | None, database: str
) -> None:
    authority = host if port is None else f"{host}:{port}"
    url = f"postgresql://{user}:{password}@{authority}/{database}?sslmode=require"
    inputs = postgres_inputs(url=url, database="", schema="public", vault_prefix="vault_")
    for dataset in inputs.datasets():
        assert dataset.namespace == f"postgres://{host}:{port or 5432}"
        assert user not in dataset.namespace + dataset.name or user in host + database
        assert password not in dataset.namespace + dataset.name or password in host + database
        assert dataset.name.startswith(f"{database}.public.")
