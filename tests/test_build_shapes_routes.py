"""A build's shape from the API (``POST /v1/datasets`` body field ``shape``; issue 16): the job
builds that shape, with its card and Croissant file. The console's Shape select:
``tests/test_web.py::test_the_console_builds_the_shape_chosen``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import Api
from tests.factories import Events

T = Events.t


def _finished(api: Api, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        body: dict[str, Any] = api.client.get(
            f"/v1/datasets/{job_id}", headers=api.as_role("analyst")
        ).json()
        if body["status"] in ("succeeded", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("shape", "columns"),
    [("chat", ["messages"]), ("openai", ["messages"]), ("kto", ["prompt", "completion", "label"])],
)
def test_the_api_builds_the_shape_asked_for(
    api: Api, ev: Events, shape: str, columns: list[str]
) -> None:
    api.ingest([ev.feedback("f1", "a", "c", "m2", T(4), rating="up")])  # a report for kto
    started = api.client.post(
        "/v1/datasets",
        json={"purpose": "model_training", "as_of": T(9), "format": "jsonl", "shape": shape},
        headers=api.as_role("analyst"),
    )
    assert started.status_code == 202, started.text
    assert started.json()["shape"] == shape  # kept with the job (build_jobs.shape), not in memory
    finished = _finished(api, started.json()["job_id"])
    assert finished["status"] == "succeeded", finished["error"]
    assert finished["shape"] == shape
    assert finished["manifest"]["shape"]["name"] == shape
    directory = Path(finished["path"])
    assert (directory / "README.md").is_file() and (directory / "croissant.json").is_file()
    rows = [
        json.loads(line)
        for entry in finished["manifest"]["files"]
        for line in (directory / entry["path"]).read_text().splitlines()
    ]
    assert len(rows) == finished["manifest"]["shape"]["rows"] > 0
    assert all(list(row) == columns for row in rows)


def test_the_api_refuses_an_unknown_shape(api: Api) -> None:
    done = api.client.post(
        "/v1/datasets",
        json={"purpose": "research", "shape": "alpaca"},
        headers=api.as_role("analyst"),
    )
    assert (done.status_code, done.json()["error"]["code"]) == (422, "invalid_request")
    assert "shape" in done.text
