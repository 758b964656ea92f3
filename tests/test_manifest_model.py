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
from traingate._core.manifest_model import Manifest

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
