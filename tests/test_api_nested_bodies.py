"""The objects nested in the API's response bodies are typed (``_api/models.py``): the privacy
answer (SPEC §4's ``purposes``, its evidence), the explanation, builds and jobs, the audit
summary and entries. The JSON each route answers is what it answered with open objects, byte
for byte; a nested object that drifts (another type, a member more) fails; the document states
each nested shape, without claiming the policies' enums for values the store reports."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tests.api_support import Api
from tests.factories import Events
from traingate._api.models import (
    REPORTED,
    AuditEntriesBody,
    AuditVerifyBody,
    BuildBody,
    BuildsBody,
    ExplanationBody,
    PurposeAnswerBody,
)
from traingate._core.timeutil import parse_instant
from traingate._facade import Traingate

T = Events.t


def _served(body: Any) -> bytes:
    """The bytes a JSON response of ``body`` has (Starlette's JSONResponse)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _through(model: type[BaseModel], body: Any, **options: bool) -> bytes:
    """``body`` validated by the route's model and dumped as FastAPI serves it."""
    return _served(model.model_validate(body).model_dump(mode="json", **options))


def _built(api: Api) -> tuple[str, str]:
    """(job id, build id) of a finished build job of model_training as of T(9)."""
    analyst = api.as_role("analyst")
    started = api.client.post(
        "/v1/datasets", json={"purpose": "model_training", "as_of": T(9)}, headers=analyst
    )
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    deadline = time.monotonic() + 120
    while True:
        body = api.client.get(f"/v1/datasets/{job_id}", headers=analyst).json()
        if body["status"] in ("succeeded", "failed"):
            assert body["status"] == "succeeded", body["error"]
            return job_id, body["build_id"]
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_the_bodies_are_what_they_were_byte_for_byte(api: Api, ev: Events) -> None:
    job_id, build_id = _built(api)
    api.ingest([ev.feedback("f1", "a", "c", "m2", T(4), comment="fine")])
    officer, analyst = api.as_role("privacy_officer"), api.as_role("analyst")
    as_of = T(10)
    with Traingate.open(api.settings) as tg:
        for account in ("a", "b", "t"):  # opted in; not; a team member of a consenting org
            answer = tg.privacy.answer(account_id=account, as_of=parse_instant(as_of)).to_dict()
            done = api.client.get(
                f"/v1/accounts/{account}/privacy", params={"as_of": as_of}, headers=officer
            )
            assert done.status_code == 200, done.text
            assert done.content == _served(answer), account
            assert answer["policies"] and answer["plan_history"] and answer["consents"]
            assert bool(answer["builds"]) is (account != "b"), account
        explained = tg.privacy.explain(
            conversation_id="c", purpose="model_training", as_of=parse_instant(as_of)
        ).to_dict()
        done = api.client.get(
            "/v1/conversations/c/explain",
            params={"purpose": "model_training", "as_of": as_of},
            headers=officer,
        )
        assert done.content == _served(explained)
        assert _through(ExplanationBody, explained) == _served(explained)

        jobs = api.client.app.state.build_jobs  # type: ignore[attr-defined]
        listed = {"jobs": jobs.list(tg=tg), "builds": tg.datasets.recorded_builds()}
        assert listed["jobs"] and listed["builds"]
        assert api.client.get("/v1/datasets", headers=analyst).content == _served(listed)
        for key in (job_id, build_id):
            found = jobs.get(tg=tg, key=key)
            assert found is not None and found["manifest"]["files"]
            assert _through(BuildBody, found) == _served(found)
        recorded = tg.datasets.recorded_build(build_id=build_id)  # as made elsewhere
        assert recorded["manifest"]["files"]
        assert _through(BuildBody, recorded) == _served(recorded)
        assert _through(BuildsBody, listed) == _served(listed)

        summary = tg.audit.verify()
        assert summary["head"] and summary["actions"]
        assert _through(AuditVerifyBody, summary, exclude_unset=True) == _served(summary)
        page = {"entries": [e.to_dict() for e in tg.audit.entries(limit=50)], "next_after": 50}
        assert page["entries"]
        assert _through(AuditEntriesBody, page) == _served(page)
    assert api.client.get("/v1/audit/verify", headers=officer).status_code == 200


def test_audit_pending_day_counts_keep_their_counts() -> None:
    summary = {
        "ok": True, "entries": 0, "head": None, "first_at": None, "last_at": None,
        "actions": {}, "problems": [{"seq": 3, "kind": "edited", "message": "changed"}],
        "pending": [{"day": "2025-01-01", "actor": "x", "action": "y", "reads": 2, "misses": 0}],
    }  # fmt: skip
    assert _through(AuditVerifyBody, summary, exclude_unset=True) == _served(summary)
    summary["pending"][0]["reads"] = "2"
    with pytest.raises(ValidationError):
        AuditVerifyBody.model_validate(summary)


@pytest.mark.parametrize(
    "drifted",
    [
        {"used": 1, "bases": [], "conversations": []},  # not coerced: 1 is not true
        {"used": False, "bases": [], "conversations": [], "since": None},
        {"used": False, "bases": ["a"]},
        {"used": False, "bases": "a", "conversations": []},
    ],
)
def test_a_nested_body_that_drifts_fails(drifted: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PurposeAnswerBody.model_validate(drifted)


def test_the_document_states_the_nested_shapes(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    privacy = schemas["PrivacyAnswerBody"]["properties"]
    assert privacy["purposes"]["additionalProperties"] == {
        "$ref": "#/components/schemas/PurposeAnswerBody"
    }
    answer = schemas["PurposeAnswerBody"]
    assert answer["required"] == ["used", "bases", "conversations"]
    assert answer["additionalProperties"] is False
    assert REPORTED not in json.dumps(document)
    # The store's values, not checked against the policies: no enum (a build of a purpose
    # the policies in force no longer declare is still listed).
    assert "enum" not in schemas["RecordedBuildBody"]["properties"]["purpose"]
    assert "enum" not in schemas["SettingBody"]["properties"]["setting"]
    # What the routes check keeps its enum.
    build = document["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]
    assert build["application/json"]["schema"]["properties"]["purpose"]["enum"]


def test_a_manifest_left_alone_is_still_served(api: Api, tmp_path: Path) -> None:
    """A build's manifest stays an open object in the API: one edited on disk is served as
    it is (``dataset verify`` is what judges it)."""
    with Traingate.open(api.settings) as tg:
        result = tg.datasets.build(purpose="research", out=tmp_path / "b", as_of=0)
    path = result.path / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "extra": 1}))
    done = api.client.get(f"/v1/datasets/{result.build_id}", headers=api.as_role("analyst"))
    assert done.status_code == 200
    assert done.json()["manifest"]["extra"] == 1
