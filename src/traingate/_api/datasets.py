"""Dataset builds as background jobs: start one, watch it, list them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from traingate._access.credentials import Principal
from traingate._api.access import TG, Access
from traingate._api.body import json_body, json_request_body
from traingate._api.jobs import BuildJobs
from traingate._api.models import BuildBody, BuildsBody, DatasetRequest, error_responses
from traingate._core.timeutil import parse_instant

__all__ = ["router"]

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

Analyst = Annotated[Principal, Depends(Access("analyst"))]


def _jobs(request: Request) -> BuildJobs:
    jobs: BuildJobs = request.app.state.build_jobs
    return jobs


Jobs = Annotated[BuildJobs, Depends(_jobs)]


@router.post(
    "",
    summary="Start a dataset build",
    status_code=202,
    response_model=BuildBody,
    responses=error_responses(401, 403, 413, 415, 422),
    openapi_extra={"requestBody": json_request_body(DatasetRequest)},
)
def start_build(
    principal: Analyst,
    tg: TG,
    jobs: Jobs,
    body: Annotated[DatasetRequest, Depends(json_body(DatasetRequest))],
) -> JSONResponse:
    """Queue a build of everything `purpose` may use as of `as_of` (default: now, fixed when
    the job is queued). Poll `GET /v1/datasets/{job_id}` for status, progress and manifest."""
    as_of = None if body.as_of is None else parse_instant(body.as_of)
    job = jobs.submit(
        tg=tg,
        purpose=body.purpose,
        as_of=as_of,
        format=body.format,
        engine=body.engine,
        shape=body.shape,
        since=body.since,
        requested_by=principal.role or principal.kind,
        actor=principal.actor,
    )
    return JSONResponse(
        job,
        status_code=202,
        headers={"Location": f"/v1/datasets/{job['job_id']}"},
    )


@router.get(
    "", summary="List builds", response_model=BuildsBody, responses=error_responses(401, 403)
)
def list_builds(_: Analyst, tg: TG, jobs: Jobs) -> dict[str, Any]:
    """The build jobs of every server of the store (queued, running, finished; the newest
    100), and the completed builds the store records (lineage), newest first."""
    return {"jobs": jobs.list(tg=tg), "builds": tg.datasets.recorded_builds()}


@router.get(
    "/{dataset_id}",
    summary="A build's status and manifest",
    response_model=BuildBody,
    responses=error_responses(401, 403, 404),
)
def get_build(
    _: Analyst,
    tg: TG,
    jobs: Jobs,
    dataset_id: Annotated[str, Path(max_length=128, description="A job id or a build id.")],
) -> dict[str, Any]:
    """A job's status (`queued`, `running`, `succeeded`, `failed`), progress in messages, the
    error of a failed build, and the signed manifest of a finished one, whichever server runs
    it. A build id of a build made elsewhere (the CLI) answers from lineage."""
    found = jobs.get(tg=tg, key=dataset_id)
    return found if found is not None else tg.datasets.recorded_build(build_id=dataset_id)
