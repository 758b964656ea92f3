"""Every shape of a real build of the bundled sample is read as it is by Hugging Face ``datasets``
(offline) and by ``mlcroissant`` (issue 16); the dataset card's metadata is what ``datasets``
expects; the manifest lists the card and the Croissant file, and ``dataset verify`` fails when
either changes or goes."""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml  # type: ignore[import-untyped]

from tests.support import read_dataset
from traingate._core.manifest import content_sha256
from traingate._core.timeutil import parse_instant
from traingate._datasets.card import size_category
from traingate._datasets.croissant import CONFORMS_TO
from traingate._datasets.shapes import SHAPES, as_shape, shape_schema
from traingate._facade import Traingate
from traingate._sample.importer import sample_events_path
from traingate._settings import Settings

AS_OF = "2025-07-01T00:00:00Z"
FORMATS = ("parquet", "jsonl")
# OpenAI's chat fine-tuning format: an example's keys, and each message's keys
OPENAI_EXAMPLE_KEYS = {"messages", "tools", "parallel_tool_calls"}
OPENAI_MESSAGE_KEYS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id"}
OPENAI_ROLES = {"system", "developer", "user", "assistant", "tool"}


def card_schema(shape: str) -> pa.Schema:
    """The shape's columns as the card declares them: a record's date as a date."""
    schema = shape_schema(as_shape(shape))
    if "date" not in schema.names:
        return schema
    return schema.set(schema.get_field_index("date"), pa.field("date", pa.date32()))


def as_read(row: dict[str, Any]) -> dict[str, Any]:
    """A row of the files as ``datasets`` gives it (the date as a date)."""
    if "date" in row:
        return {**row, "date": date.fromisoformat(row["date"])}
    return row


@pytest.fixture(scope="module")
def sample_builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Traingate, Path]]:
    """The bundled sample, built as of mid-2025 in every shape and format."""
    root = tmp_path_factory.mktemp("sample")
    settings = Settings(db_url=f"sqlite:///{root}/store.db", key_file=root / "keys.json")
    with Traingate.open(settings) as tg:
        with gzip.open(sample_events_path(), "rt", encoding="utf-8") as lines:
            assert tg.events.ingest(lines).rejected == 0
        purpose = next(iter(tg.policy.purposes))
        for shape, record_format in itertools.product(SHAPES, FORMATS):
            tg.datasets.build(
                purpose=purpose, out=root / f"{shape}-{record_format}",
                as_of=parse_instant(AS_OF), format=record_format, shape=shape,
            )  # fmt: skip
        yield tg, root


def manifest_of(directory: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((directory / "manifest.json").read_text())
    return manifest


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets.config  # type: ignore[import-untyped]

    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize("record_format", FORMATS)
@pytest.mark.parametrize("shape", SHAPES)
def test_datasets_reads_every_shape(
    sample_builds: tuple[Traingate, Path], tmp_path: Path, shape: str, record_format: str
) -> None:
    import datasets

    directory = sample_builds[1] / f"{shape}-{record_format}"
    manifest = manifest_of(directory)
    loaded = datasets.load_dataset(str(directory), cache_dir=str(tmp_path / "cache"))
    train = loaded["train"]
    assert train.num_rows == manifest["shape"]["rows"] > 0
    assert train.features == datasets.Features.from_arrow_schema(card_schema(shape))
    assert train.to_list() == [as_read(row) for row in read_dataset(directory)]
    if shape == "kto":
        labels = set()
        for row in train:
            # TRL's conversational unpaired preference: prompt and completion are lists of
            # {role, content}, the completion the one rated assistant message; label a bool
            assert isinstance(row["prompt"], list)
            assert all(set(m) == {"role", "content"} for m in row["prompt"])
            assert [m["role"] for m in row["completion"]] == ["assistant"]
            assert isinstance(row["completion"][0]["content"], str)
            assert isinstance(row["label"], bool)
            labels.add(row["label"])
        assert labels == {True, False}
    if shape == "openai":
        for row in train:
            assert set(row) <= OPENAI_EXAMPLE_KEYS
            assert all(set(m) <= OPENAI_MESSAGE_KEYS for m in row["messages"])
            assert {m["role"] for m in row["messages"]} <= OPENAI_ROLES
            assert "assistant" in {m["role"] for m in row["messages"]}
            assert all(isinstance(m["content"], str) for m in row["messages"])


@pytest.mark.parametrize("record_format", FORMATS)
def test_openai_jsonl_lines_hold_only_the_formats_keys(
    sample_builds: tuple[Traingate, Path], record_format: str
) -> None:
    directory = sample_builds[1] / f"openai-{record_format}"
    rows = read_dataset(directory)
    assert rows and all(set(row) == {"messages"} for row in rows)
    assert all(set(m) == {"role", "content"} for row in rows for m in row["messages"])
    if record_format == "jsonl":
        for part in (directory / "data").iterdir():
            for line in part.read_text().splitlines():
                assert set(json.loads(line)) == {"messages"}


# rdflib (under mlcroissant) warns about its own ConjunctiveGraph; nothing of traingate's
@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
@pytest.mark.parametrize("record_format", FORMATS)
@pytest.mark.parametrize("shape", SHAPES)
def test_mlcroissant_validates_and_iterates_the_records(
    sample_builds: tuple[Traingate, Path], shape: str, record_format: str
) -> None:
    import mlcroissant  # type: ignore[import-untyped]

    directory = sample_builds[1] / f"{shape}-{record_format}"
    manifest = manifest_of(directory)
    described = json.loads((directory / "croissant.json").read_text())
    assert described["conformsTo"] == CONFORMS_TO
    for field in ("dataCollection", "personalSensitiveInformation", "dataUseCases",
                  "dataLimitations"):  # fmt: skip
        assert described[f"rai:{field}"], field
    # provenance: the policy and the manifest's content hash
    assert manifest["policy"]["sha256"] in described["description"]
    assert content_sha256(manifest) in described["description"]
    # mlcroissant resolves data/*.{format} against the file's own directory
    dataset = mlcroissant.Dataset(jsonld=str(directory / "croissant.json"))
    records = list(dataset.records(record_set="rows"))
    assert len(records) == manifest["shape"]["rows"]
    rows = read_dataset(directory)
    first = records[0]
    column = next(iter(shape_schema(as_shape(shape)).names))
    if column == "record_id":
        assert first["rows/record_id"].decode() == rows[0]["record_id"]
    else:
        values = first[f"rows/{column}"]
        assert [v[f"rows/{column}/content"].decode() for v in values] == [
            m["content"] for m in rows[0][column]
        ]


@pytest.mark.parametrize("shape", SHAPES)
def test_the_card_holds_the_hugging_face_metadata_and_the_provenance(
    sample_builds: tuple[Traingate, Path], shape: str
) -> None:
    import datasets

    directory = sample_builds[1] / f"{shape}-parquet"
    manifest = manifest_of(directory)
    text = (directory / "README.md").read_text()
    front, prose = text.removeprefix("---\n").split("\n---\n", 1)
    meta = yaml.safe_load(front)
    rows = manifest["shape"]["rows"]
    assert meta["configs"] == [
        {"config_name": "default",
         "data_files": [{"split": "train", "path": "data/part-*.parquet"}]}
    ]  # fmt: skip
    info = meta["dataset_info"]
    assert datasets.Features._from_yaml_list(info["features"]) == (
        datasets.Features.from_arrow_schema(card_schema(shape))
    )
    assert info["splits"][0]["num_examples"] == rows
    assert meta["size_categories"] == [size_category(rows)]
    policy = manifest["policy"]
    for words in (manifest["purpose"], manifest["as_of"], policy["id"], policy["sha256"],
                  content_sha256(manifest), f"{manifest['counts']['records']} records",
                  "## De-identification", "traingate dataset verify"):  # fmt: skip
        assert words in prose, words
    for reason in manifest["exclusions"]["messages"]["by_reason"]:
        assert f"`{reason}`" in prose


@pytest.mark.parametrize(
    ("rows", "category"),
    [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (200_000, "100K<n<1M"),
     (10**9, "1B<n<10B")],
)  # fmt: skip
def test_size_categories(rows: int, category: str) -> None:
    assert size_category(rows) == category


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_verifies(sample_builds: tuple[Traingate, Path], shape: str) -> None:
    tg, root = sample_builds
    for record_format in FORMATS:
        assert tg.datasets.verify(path=root / f"{shape}-{record_format}").problems == ()


@pytest.mark.parametrize("document", ["README.md", "croissant.json"])
@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda p: p.write_text(p.read_text() + " "),
            "sha256 differs from the manifest (the file was changed)",
        ),
        (lambda p: p.unlink(), "missing"),
    ],
)
def test_verify_fails_when_a_document_changes_or_goes(
    sample_builds: tuple[Traingate, Path], tmp_path: Path, document: str, change: Any,
    problem: str,
) -> None:  # fmt: skip
    tg, root = sample_builds
    copy = tmp_path / "copy"
    _copy_tree(root / "kto-jsonl", copy)
    change(copy / document)
    assert tg.datasets.verify(path=copy).problems == (f"{document}: {problem}",)


def test_verify_fails_on_a_shape_that_does_not_add_up(
    sample_builds: tuple[Traingate, Path], tmp_path: Path
) -> None:
    """Someone holding the key cannot make a shape's rows or reasons lie: they are recounted."""
    from traingate._core.manifest import sign_manifest

    tg, root = sample_builds
    copy = tmp_path / "copy"
    _copy_tree(root / "kto-parquet", copy)
    manifest = manifest_of(copy)
    manifest["shape"]["rows"] += 1
    manifest["shape"]["left_out"]["by_reason"]["x"] = 1
    signed = sign_manifest(manifest, signing_key=tg.keys.signing_key)
    (copy / "manifest.json").write_text(json.dumps(signed))
    rows = manifest["shape"]["rows"]
    total = manifest["shape"]["left_out"]["records"]
    assert tg.datasets.verify(path=copy).problems == (
        f"shape.rows: the manifest says {rows}, the data files hold {rows - 1}",
        f"shape.left_out: records {total} != the sum of by_reason {total + 1}",
        f"shape: rows {rows} + left out {total} != the records counted "
        f"{manifest['counts']['records']}",
    )


def _copy_tree(source: Path, target: Path) -> None:
    import shutil

    shutil.copytree(source, target)
