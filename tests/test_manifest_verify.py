"""Signed manifests and ``dataset verify``: intact datasets pass; any change to a data file or
to the manifest is caught and named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.factories import Events, jsonl
from tests.support import run
from traingate._cli import cli
from traingate._core.manifest import canonical_bytes, key_id, sign_manifest, signature_problem
from traingate._core.timeutil import parse_instant
from traingate._datasets import builder
from traingate._datasets.verify import verify_dataset
from traingate._errors import ManifestError
from traingate._facade import Traingate
from traingate._settings import Settings

T = Events.t


def history(e: Events) -> list[dict[str, Any]]:
    return [
        e.account("a", T(0)),
        e.consent("a", T(0), True),
        *(e.message(f"m{i}", f"c{i % 3}", "a", T(1, i), content=f"text {i}") for i in range(9)),
        e.feedback("f1", "a", "c0", "m0", T(2), comment="fine"),
    ]


@pytest.fixture
def dataset(tg: Traingate, ev: Events, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    record_format = getattr(request, "param", "parquet")
    assert tg.events.ingest(jsonl(history(ev))).rejected == 0
    out = tmp_path / "ds"
    tg.datasets.build(
        purpose="model_training", out=out, as_of=parse_instant(T(5)), format=record_format
    )
    return out


def manifest_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / "manifest.json").read_text())
    return data


def rewrite_manifest(path: Path, change: Any) -> None:
    manifest = manifest_of(path)
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))


@pytest.mark.store
@pytest.mark.parametrize("dataset", ["parquet", "jsonl"], indirect=True)
def test_intact_dataset_verifies(tg: Traingate, dataset: Path) -> None:
    result = tg.datasets.verify(path=dataset)
    assert result.ok, result.problems
    assert manifest_of(dataset)["counts"]["records"] == 4


@pytest.mark.parametrize("dataset", ["parquet", "jsonl"], indirect=True)
def test_a_changed_byte_in_a_data_file_is_caught(tg: Traingate, dataset: Path) -> None:
    part = next((dataset / "data").iterdir())
    data = bytearray(part.read_bytes())
    middle = len(data) // 2
    data[middle] = (data[middle] + 1) % 256 if data[middle] != ord("\n") else data[middle]
    if bytes(data) == part.read_bytes():
        data[middle - 1] ^= 0x01
    part.write_bytes(bytes(data))
    result = tg.datasets.verify(path=dataset)
    assert not result.ok
    assert any(f"data/{part.name}: sha256 differs" in p for p in result.problems), result.problems


@pytest.mark.parametrize("dataset", ["parquet", "jsonl"], indirect=True)
def test_a_changed_count_in_the_manifest_is_caught(tg: Traingate, dataset: Path) -> None:
    def change(manifest: dict[str, Any]) -> None:
        manifest["counts"]["records"] += 1

    rewrite_manifest(dataset, change)
    problems = tg.datasets.verify(path=dataset).problems
    assert any("signature does not match" in p for p in problems), problems
    assert any(p.startswith("counts.records: the manifest says 5") for p in problems), problems


def test_a_forged_manifest_still_fails_on_the_recount(tg: Traingate, dataset: Path) -> None:
    """Even someone holding the signing key cannot make the counts lie: they are recounted."""
    manifest = manifest_of(dataset)
    manifest["counts"]["by_basis"]["opt_in"]["messages"] -= 1
    resigned = sign_manifest(manifest, signing_key=tg.keys.signing_key)
    (dataset / "manifest.json").write_text(json.dumps(resigned))
    problems = tg.datasets.verify(path=dataset).problems
    assert problems == (
        "counts.by_basis.opt_in.messages: the manifest says 8, the data files hold 9",
    )


def test_exclusion_arithmetic_is_checked(tg: Traingate, dataset: Path) -> None:
    manifest = manifest_of(dataset)
    manifest["exclusions"]["messages"]["considered"] += 2
    manifest["exclusions"]["messages"]["by_reason"]["no_consent"] = 1
    (dataset / "manifest.json").write_text(
        json.dumps(sign_manifest(manifest, signing_key=tg.keys.signing_key))
    )
    problems = tg.datasets.verify(path=dataset).problems
    assert any("considered 11 != included 9 + excluded 0" in p for p in problems), problems
    assert any("excluded 0 != the sum of by_reason 1" in p for p in problems), problems


def test_missing_extra_and_truncated_files(tg: Traingate, dataset: Path) -> None:
    (dataset / "data" / "part-00099.parquet").write_bytes(b"not mine")
    part = dataset / "data" / "part-00000.parquet"
    part.rename(dataset / "data" / "renamed.parquet")
    problems = tg.datasets.verify(path=dataset).problems
    assert "data/part-00000.parquet: missing" in problems
    assert "data/part-00099.parquet: not listed in the manifest" in problems
    assert "data/renamed.parquet: not listed in the manifest" in problems


def test_another_key_and_no_manifest(tg: Traingate, dataset: Path, tmp_path: Path) -> None:
    other = verify_dataset(dataset, signing_key=b"\x01" * 32)
    assert any("another signing key" in p for p in other.problems)
    (dataset / "manifest.json").unlink()
    assert not tg.datasets.verify(path=dataset).ok
    assert not tg.datasets.verify(path=tmp_path / "nowhere").ok


def test_manifest_paths_cannot_escape(tg: Traingate, dataset: Path) -> None:
    manifest = manifest_of(dataset)
    manifest["files"][0]["path"] = "../../etc/passwd"
    (dataset / "manifest.json").write_text(
        json.dumps(sign_manifest(manifest, signing_key=tg.keys.signing_key))
    )
    problems = tg.datasets.verify(path=dataset).problems
    assert "file '../../etc/passwd': not a path inside the dataset" in problems


def test_signature_is_over_the_canonical_form() -> None:
    key = b"k" * 32
    body = {"b": 1, "a": {"y": [1, 2], "x": "é"}}
    signed = sign_manifest(body, signing_key=key)
    assert signature_problem(signed, signing_key=key) is None
    reordered = {"a": {"x": "é", "y": [1, 2]}, "b": 1, "signature": signed["signature"]}
    assert signature_problem(reordered, signing_key=key) is None
    assert canonical_bytes(signed) == canonical_bytes(body)
    assert signed["signature"]["key_id"] == key_id(key) != key_id(b"j" * 32)
    assert signature_problem({**signed, "b": 2}, signing_key=key) is not None
    assert signature_problem(body, signing_key=key) == "the manifest has no signature"


def test_verify_command_exit_codes(tg: Traingate, dataset: Path, settings: Settings) -> None:
    runner = CliRunner()
    args = ["--db", settings.db_url, "--key-file", str(settings.key_file), "dataset", "verify"]
    ok = runner.invoke(cli, [*args, str(dataset)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True

    def change(manifest: dict[str, Any]) -> None:
        manifest["files"][0]["rows"] = 99

    rewrite_manifest(dataset, change)
    bad = runner.invoke(cli, [*args, str(dataset)])
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False
    assert "data/part-00000.parquet: holds 4 rows, the manifest says 99" in report["problems"]
    assert "holds 4 rows, the manifest says 99" in bad.stderr


@pytest.mark.parametrize(
    "garbage",
    [
        {"files": "all of them", "counts": [], "exclusions": None, "record_format": 7},
        {"files": [3, None], "exclusions": {"messages": {"considered": "ten", "by_reason": []}}},
        [],
    ],
)
def test_a_mangled_manifest_is_reported_not_raised(
    tg: Traingate, dataset: Path, garbage: Any
) -> None:
    (dataset / "manifest.json").write_text(json.dumps(garbage))
    result = tg.datasets.verify(path=dataset)
    assert not result.ok
    assert result.problems


@pytest.mark.parametrize("name", ["extra.jsonl", ".hidden", "README"])
def test_an_extra_file_at_the_root_fails_verification(
    tg: Traingate, dataset: Path, name: str
) -> None:
    """Only manifest.json and data/ make a dataset: anything else at its root is outside the
    signature and fails it (issue 19: it was ignored)."""
    (dataset / name).write_text('{"messages": ["not signed"]}\n')
    result = tg.datasets.verify(path=dataset)
    assert not result.ok
    assert any(p.startswith(f"{name}: not part of the dataset") for p in result.problems)


def _drop(*path: str | int) -> Any:
    """A change deleting the member at ``path``."""

    def change(manifest: dict[str, Any]) -> None:
        node: Any = manifest
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return change


def _set(value: Any, *path: str | int) -> Any:
    """A change setting the member at ``path`` (a new one when it is not there) to ``value``."""

    def change(manifest: dict[str, Any]) -> None:
        node: Any = manifest
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return change


# (a change to the manifest, the problem dataset verify names: the member and what is wrong)
MALFORMED = [
    (_set(1, "unknown"), "manifest.json: unknown: unknown member"),
    (_set(0, "shape", "left_out", "extra"), "manifest.json: shape.left_out.extra: unknown member"),
    (_drop("policy"), "manifest.json: policy: missing"),
    (_drop("files", 0, "sha256"), "manifest.json: files[0].sha256: missing"),
    (_set("4", "counts", "records"), "manifest.json: counts.records: must be an integer, not '4'"),
    (
        _set(True, "exclusions", "reports", "considered"),
        "manifest.json: exclusions.reports.considered: must be an integer, not True",
    ),
    (
        _set([], "counts", "by_basis"),
        "manifest.json: counts.by_basis: must be a JSON object, not []",
    ),
    (_set("all", "files"), "manifest.json: files: must be a JSON array, not 'all'"),
]


@pytest.mark.parametrize("resign", [False, True], ids=["tampered", "resigned"])
def test_a_malformed_manifest_names_the_member_through_the_command(
    tg: Traingate, dataset: Path, settings: Settings, resign: bool
) -> None:
    """``dataset verify`` parses manifest.json with the model first: a member missing, of
    another type or unknown is named, exit 1, never a traceback. Re-signed with the key, the
    member is the only problem (the signature holds; the manifest is still not one)."""
    original = manifest_of(dataset)
    args = ["--db", settings.db_url, "--key-file", str(settings.key_file), "dataset", "verify"]
    for change, problem in MALFORMED:
        manifest = json.loads(json.dumps(original))
        change(manifest)
        if resign:
            manifest = sign_manifest(manifest, signing_key=tg.keys.signing_key)
        (dataset / "manifest.json").write_text(json.dumps(manifest, indent=2))
        done = run([*args, str(dataset)], cwd=dataset.parent)
        assert done.returncode == 1, (problem, done.stderr)
        assert "Traceback" not in done.stderr
        report = json.loads(done.stdout)
        assert report["ok"] is False
        if resign:
            assert report["problems"] == [problem]
        else:
            assert report["problems"][0].startswith("the manifest"), report["problems"]
            assert problem in report["problems"][1:]
        assert f"traingate: verify: {problem}\n" in done.stderr
    (dataset / "manifest.json").write_text(json.dumps(original, indent=2))
    assert run([*args, str(dataset)], cwd=dataset.parent).returncode == 0


def test_the_builder_cannot_write_a_member_the_model_does_not_know(
    tg: Traingate, ev: Events, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest is written through the model: an unknown member is a ManifestError
    naming it, and nothing is left behind."""
    assert tg.events.ingest(jsonl(history(ev))).rejected == 0
    body = builder.manifest_body
    monkeypatch.setattr(builder, "manifest_body", lambda **kw: {**body(**kw), "extra": 1})
    out = tmp_path / "ds"
    with pytest.raises(ManifestError, match=r"extra: unknown member") as raised:
        tg.datasets.build(purpose="model_training", out=out, as_of=parse_instant(T(5)))
    assert raised.value.problems == ("extra: unknown member",)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")) == []
