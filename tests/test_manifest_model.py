"""The manifest as a typed model (``_core/manifest_model.py``): what a build writes reads as a
``Manifest`` and comes back the same, member for member; a member it does not know, or of
another type, is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.factories import Events, jsonl
from tests.support import run
from traingate._core.manifest import signature_problem
from traingate._core.manifest_model import Manifest
from traingate._core.timeutil import parse_instant as at
from traingate._errors import ManifestError
from traingate._facade import Traingate
from traingate._settings import Settings

T = Events.t


def _manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / "manifest.json").read_text())
    return data


def test_built_manifests_read_as_the_model_and_back(tmp_path: Path) -> None:
    e = Events()
    events = [
        e.account("a", T(0)),
        e.consent("a", T(0), True),
        *(e.message(f"m{i}", f"c{i % 3}", "a", T(1, i), content=f"text {i}") for i in range(9)),
        e.feedback("f1", "a", "c0", "m0", T(2), comment="fine"),
    ]
    (tmp_path / "events.jsonl").write_text("\n".join(jsonl(events)) + "\n")
    assert run(["ingest", "events.jsonl"], cwd=tmp_path).returncode == 0
    args = ["dataset", "build", "--purpose", "model_training"]
    built = run([*args, "--as-of", T(5), "--out", "b"], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    base = json.loads(built.stdout)["build_id"]
    since = run([*args, "--as-of", T(6), "--out", "s", "--since", base], cwd=tmp_path)
    assert since.returncode == 0, since.stderr
    for name in ("b", "s"):
        data = _manifest(tmp_path / name)
        manifest = Manifest.read(data)
        assert manifest.to_json() == data
        assert manifest.signature is not None and manifest.documents
        assert manifest.shape is not None
    assert Manifest.read(_manifest(tmp_path / "s")).since is not None
    data = _manifest(tmp_path / "b")
    with pytest.raises(ValidationError):
        Manifest.read({**data, "unknown": 1})
    with pytest.raises(ValidationError):
        Manifest.read({**data, "counts": {**data["counts"], "records": "9"}})


# The members in the order the builder has always written them (the signature, over the
# canonical form, does not depend on it; manifest_sha256 of a build and the bytes do).
ORDER = ["format", "purpose", "as_of", "policy", "policies", "engine", "record_format", "shape",
         "counts", "exclusions", "files", "since", "signature", "documents"]  # fmt: skip


def test_the_builder_writes_through_the_model_byte_for_byte(tmp_path: Path) -> None:
    """manifest.json is the model's bytes: members in the order above, indented by two, a
    newline; under two policies (``from`` set), full and incremental."""
    e = Events()
    events = [
        e.account("a", T(0)),
        e.consent("a", T(0), True),
        *(
            e.message(f"m{i}", f"c{i % 3}", "a", T(1 + i % 3, i), content=f"t {i}")
            for i in range(9)
        ),
    ]
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        key_file=tmp_path / "keys.json",
        policy=f"consumer-2024,consumer-2025@{T(2)}",
    )
    with Traingate.open(settings) as tg:
        assert tg.events.ingest(jsonl(events)).rejected == 0
        base = tg.datasets.build(purpose="model_training", out=tmp_path / "b", as_of=at(T(5)))
        since = tg.datasets.build(
            purpose="model_training", out=tmp_path / "s", as_of=at(T(6)), since=base.build_id
        )
    for result in (base, since):
        raw = (result.path / "manifest.json").read_bytes()
        data = json.loads(raw)
        assert list(data) == [m for m in ORDER if m in data]
        assert "since" in data or result is base
        assert [p["from"] is None for p in data["policies"]] == [True, False]
        manifest = Manifest.parse(data)
        assert manifest.to_bytes() == raw
        assert raw == (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        assert manifest.to_json() == result.manifest
        assert signature_problem(manifest.to_json(), signing_key=tg.keys.signing_key) is None


def test_parse_names_every_member_that_is_wrong() -> None:
    with pytest.raises(ManifestError) as raised:
        Manifest.parse({"format": 1, "files": [{"path": "x", "rows": 1.0}], "other": None})
    problems = raised.value.problems
    assert problems[:3] == ("format: must be a string, not 1", "purpose: missing", "as_of: missing")
    assert "files[0].rows: must be an integer, not 1.0" in problems
    assert "files[0].sha256: missing" in problems
    assert "other: unknown member" in problems
    assert str(raised.value).startswith("the manifest is malformed: format: must be a string")
    with pytest.raises(ManifestError, match=r"^the manifest is malformed: the manifest: must be"):
        Manifest.parse([])
    with pytest.raises(ManifestError) as many:
        Manifest.parse({"files": [{}] * 30})
    assert len(many.value.problems) == 21 and many.value.problems[-1].startswith("and ")
