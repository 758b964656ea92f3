"""The app factory: ``create_app(settings=...)`` returns a FastAPI app, the API's routes and
the pages, with its own pool of ``Traingate`` instances and its own build jobs on ``app.state``
(no module-level state)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from traingate._api import (
    accounts,
    audit,
    conversations,
    datasets,
    events,
    feedback,
    purge,
    sessions,
)
from traingate._api.apidocs import install_api_docs
from traingate._api.jobs import BuildJobs
from traingate._api.openapi import install_openapi
from traingate._api.paths import KeepEncodedSlashes
from traingate._api.pool import TraingatePool
from traingate._api.usage import ReceiptUses, TokenUses
from traingate._core.policy.versions import PolicySet, load_policy_set
from traingate._server.errors import install_handlers
from traingate._settings import DEFAULT_DATA_DIR, Settings
from traingate._web import router as pages  # the pages (docs/web.md); not in the OpenAPI

__all__ = ["DEFAULT_DATASETS_DIR", "create_app", "openapi_document"]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

DEFAULT_DATASETS_DIR = DEFAULT_DATA_DIR / "datasets"
_OPENAPI_URL = "/openapi.json"

_DESCRIPTION = """\
traingate decides, with proof, which user data may train models. This API ingests the
product's events, answers each user whether their data is used for training, keeps feedback
reports by receipt, and runs dataset builds.

Authenticate with `Authorization: Bearer <credential>`: an API token (`tgk_…`, roles
`ingest`, `analyst`, `privacy_officer`; `traingate token create --role R`) or an end-user
session (`tgs_…`, from `POST /v1/sessions`), or with the session cookie the web login sets.
Every error is `{"error": {"code": ..., "message": ...}}` (a validation error adds `problems`;
a 422 of an ingest is its summary with the error). A method a path does not have is `405` with
`Allow` naming every method it has. Reference: docs/api.md.
"""


def create_app(
    *,
    settings: Settings,
    datasets_dir: Path | None = None,
    pool_size: int = 4,
    build_workers: int = 1,
) -> FastAPI:
    """The traingate HTTP API over the store of ``settings``.

    Opens (and migrates) the store at once, so that unusable settings fail here. Builds are
    written under ``datasets_dir`` (default ``traingate-data/datasets``).
    """
    pool = TraingatePool(settings=settings, size=pool_size)
    jobs = BuildJobs(
        settings=settings,
        datasets_dir=DEFAULT_DATASETS_DIR if datasets_dir is None else datasets_dir,
        workers=build_workers,
    )

    token_uses = TokenUses()
    receipt_uses = ReceiptUses()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with pool.lease() as tg:
            receipt_uses.flush(tg)  # days a killed server counted and did not seal
        yield
        jobs.shutdown(wait=True)
        with pool.lease() as tg:
            token_uses.flush(tg)
            receipt_uses.flush(tg)
        pool.close()

    with pool.lease() as tg:
        policies = tg.policies  # the document's enums: what these policies declare
    app = _application(lifespan=lifespan, policies=policies)
    app.state.settings = settings
    app.state.traingate_pool = pool
    app.state.build_jobs = jobs
    app.state.token_uses = token_uses
    app.state.receipt_uses = receipt_uses
    return app


def openapi_document(*, policy: str | None = None) -> dict[str, Any]:
    """The API's OpenAPI document for the policies ``policy`` names (a ``--policy`` value;
    default: the default policy), without opening any store."""
    return _application(policies=load_policy_set(policy)).openapi()


def _application(*, policies: PolicySet, lifespan: Lifespan | None = None) -> FastAPI:
    """The routes, error handlers and OpenAPI document, with no state yet."""
    app = FastAPI(
        title="traingate",
        version=_version(),
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from installed assets by install_api_docs
        redoc_url=None,
        openapi_url=_OPENAPI_URL,
    )
    install_handlers(app)
    app.add_middleware(KeepEncodedSlashes)  # ids with '/' in paths (_api/paths.py)
    for module in (events, feedback, conversations, accounts, sessions, datasets, purge, audit):
        app.include_router(module.router)
    app.include_router(pages)
    install_openapi(app, policies=policies)
    install_api_docs(app, openapi_url=_OPENAPI_URL)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("traingate")
    except PackageNotFoundError:
        return "0"
