"""Dataset builds over the API: background jobs, their progress and manifests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import Api
from tests.factories import Events
from traingate._errors import BuildError
from traingate._facade import Traingate
from traingate._facade.datasets import Datasets
from traingate._settings import Settings

T = Events.t


def _wait(api: Api, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        done = api.client.get(f"/v1/datasets/{job_id}", headers=api.as_role("analyst"))
        assert done.status_code == 200, done.text
        body: dict[str, Any] = done.json()
        if body["status"] in ("succeeded", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_build_job_runs_and_reports_its_manifest(api: Api, tmp_path: Path) -> None:
    analyst = api.as_role("analyst")
    started = api.client.post(
        "/v1/datasets",
        json={"purpose": "model_training", "as_of": T(9), "format": "jsonl"},
        headers=analyst,
    )
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["status"] in ("queued", "running", "succeeded")
    assert started.headers["location"] == f"/v1/datasets/{job['job_id']}"

    finished = _wait(api, job["job_id"])
    assert finished["status"] == "succeeded", finished["error"]
    manifest = finished["manifest"]
    assert (manifest["purpose"], manifest["as_of"]) == ("model_training", T(9))
    assert manifest["counts"]["records"] == 2  # c (a opted in) and x (its org opted in)
    assert finished["progress"]["fraction"] == 1.0
    assert Path(finished["path"]).parent == (tmp_path / "datasets").absolute()
    assert (Path(finished["path"]) / "manifest.json").is_file()

    by_build = api.client.get(f"/v1/datasets/{finished['build_id']}", headers=analyst).json()
    assert by_build["job_id"] == job["job_id"]
    listed = api.client.get("/v1/datasets", headers=analyst).json()
    assert [j["job_id"] for j in listed["jobs"]] == [job["job_id"]]
    assert [b["build_id"] for b in listed["builds"]] == [finished["build_id"]]

    privacy = api.client.get("/v1/accounts/a/privacy", headers=api.as_user("a")).json()
    assert privacy["builds"]["model_training"][0]["build_id"] == finished["build_id"]


def test_builds_made_elsewhere_answer_from_lineage(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    with Traingate.open(settings) as tg:
        result = tg.datasets.build(purpose="research", out=tmp_path / "cli-build", as_of=0)
    body = api.client.get(f"/v1/datasets/{result.build_id}", headers=api.as_role("analyst"))
    assert body.status_code == 200
    assert body.json()["status"] == "succeeded"
    assert body.json()["manifest"] == result.manifest


def test_bad_build_requests(api: Api) -> None:
    analyst = api.as_role("analyst")
    for request, code in [
        ({"purpose": "ads"}, "invalid_policy_value"),
        ({"purpose": "research", "engine": "spark9"}, "build_refused"),
        ({"purpose": "research", "format": "csv"}, "invalid_request"),
        ({"purpose": "research", "as_of": "2024"}, "invalid_time"),
    ]:
        done = api.client.post("/v1/datasets", json=request, headers=analyst)
        assert (done.status_code, done.json()["error"]["code"]) == (422, code), request
    missing = api.client.get("/v1/datasets/job-nope", headers=analyst)
    assert missing.status_code == 404


def test_a_failed_build_reports_its_error(
    api: Api, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("the job machinery is the same on both backends")

    def broken(self: Datasets, **kwargs: Any) -> Any:
        raise BuildError("the engine ran out of disk")

    monkeypatch.setattr(Datasets, "build", broken)
    started = api.client.post(
        "/v1/datasets", json={"purpose": "research"}, headers=api.as_role("analyst")
    )
    finished = _wait(api, started.json()["job_id"])
    assert finished["status"] == "failed"
    assert finished["error"] == "the engine ran out of disk"
    assert finished["manifest"] is None
