"""The admin console: builds (start, watch, list, verify), explain, the policy, retention.

A token of role ``analyst`` runs and reads builds; ``privacy_officer`` explains, reads
retention and purges; both read the policy. The same rule ids as the CLI and the manifests
name every decision shown.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from traingate._api.access import TG
from traingate._api.jobs import BuildJobs
from traingate._core.policy import Policy
from traingate._core.timeutil import parse_instant
from traingate._datasets import ENGINES, FORMATS, SHAPES
from traingate._errors import AccessDeniedError, ConfigError, NotFoundError, TraingateError
from traingate._web.errors import PageRoute
from traingate._web.render import SECURITY_HEADERS, page
from traingate._web.session import (
    ADMIN_COOKIE,
    ADMIN_ROLES,
    Admin,
    Form,
    Viewer,
    check_form,
    read_form,
    set_admin_cookie,
)

__all__ = ["router"]

router = APIRouter(prefix="/admin", route_class=PageRoute, include_in_schema=False)

Posted = Annotated[Form, Depends(read_form)]
BuildId = Annotated[str, Path(max_length=128)]
SEARCH_LIMIT = 50  # conversations the explain page's search lists
SECTIONS: tuple[tuple[str, str, str | None], ...] = (
    ("builds", "Builds", "analyst"),
    ("explain", "Explain", "privacy_officer"),
    ("policy", "Policy", None),
    ("retention", "Retention", "privacy_officer"),
)


def _jobs(request: Request) -> BuildJobs:
    jobs: BuildJobs = request.app.state.build_jobs
    return jobs


Jobs = Annotated[BuildJobs, Depends(_jobs)]


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def _require(viewer: Viewer, role: str) -> None:
    if not viewer.may(role):
        raise AccessDeniedError(f"this part of the console needs a token of role {role!r}")


def _sections(viewer: Viewer) -> list[tuple[str, str]]:
    return [(key, title) for key, title, role in SECTIONS if role is None or viewer.may(role)]


def _console(request: Request, template: str, viewer: Viewer, **context: Any) -> Response:
    status = context.pop("status_code", 200)
    return page(
        request,
        template,
        {"admin": viewer, "sections": _sections(viewer), **context},
        status_code=status,
    )


def _instant(text: str, field: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise ConfigError(f"{field}: {exc}") from None


# -- signing in ----------------------------------------------------------------------------


def _next(target: str) -> str:
    return target if target.startswith("/admin") and "//" not in target else "/admin"


@router.get("/login")
def login_form(request: Request, next: str = "/admin") -> Response:
    return page(request, "admin_login.html", {"next": _next(next), "error": None})


@router.post("/login")
def login(request: Request, form: Posted, tg: TG) -> Response:
    """Check the token, keep it in the console's cookie."""
    token, target = form.get("token").strip(), _next(form.get("next", "/admin"))
    try:
        principal = tg.access.authenticate(token)
        if principal.is_user or principal.role not in ADMIN_ROLES:
            raise AccessDeniedError(f"the console needs a token of role {' or '.join(ADMIN_ROLES)}")
    except TraingateError as exc:
        context = {"next": target, "error": str(exc)}
        return page(request, "admin_login.html", context, status_code=401)
    response = _see_other(target)
    set_admin_cookie(request, response, token=token)
    return response


@router.post("/logout")
def logout(request: Request, admin: Admin, form: Posted) -> Response:
    check_form(request, form, admin)
    response = _see_other("/admin/login")
    response.delete_cookie(ADMIN_COOKIE, path="/admin")
    return response


@router.get("")
def console(admin: Admin) -> Response:
    return _see_other(f"/admin/{_sections(admin)[0][0]}")


# -- builds ----------------------------------------------------------------------------------


@router.get("/builds")
def builds(request: Request, tg: TG, admin: Admin, jobs: Jobs) -> Response:
    """Start a build; the build jobs of every server; every completed build the store records."""
    _require(admin, "analyst")
    return _console(
        request,
        "admin_builds.html",
        admin,
        jobs=jobs.list(tg=tg),
        builds=tg.datasets.recorded_builds(),
        purposes=tg.policy.purposes,
        formats=FORMATS,
        shapes=SHAPES,
        engines=ENGINES,
        error=None,
        form={},
    )


@router.post("/builds")
def start_build(request: Request, tg: TG, admin: Admin, jobs: Jobs, form: Posted) -> Response:
    _require(admin, "analyst")
    check_form(request, form, admin)
    try:
        job = jobs.submit(
            tg=tg,
            purpose=form.get("purpose"),
            as_of=_instant(form.get("as_of"), "as-of"),
            format=form.get("format", "parquet"),
            engine=form.get("engine", "duckdb"),
            requested_by=admin.principal.role or admin.principal.kind,
            actor=admin.principal.actor,
            shape=form.get("shape", SHAPES[0]),
        )
    except TraingateError as exc:
        return _console(
            request,
            "admin_builds.html",
            admin,
            jobs=jobs.list(tg=tg),
            builds=tg.datasets.recorded_builds(),
            purposes=tg.policy.purposes,
            formats=FORMATS,
            shapes=SHAPES,
            engines=ENGINES,
            error=str(exc),
            form=dict(form.fields),
            status_code=422,
        )
    return _see_other(f"/admin/builds/{job['job_id']}")


def _build(tg: TG, jobs: BuildJobs, build_id: str) -> dict[str, Any]:
    found = jobs.get(tg=tg, key=build_id)
    return found if found is not None else tg.datasets.recorded_build(build_id=build_id)


@router.get("/builds/{build_id}")
def build(request: Request, tg: TG, admin: Admin, jobs: Jobs, build_id: BuildId) -> Response:
    """A build's status and progress (the page polls ``…/status``), then its manifest."""
    _require(admin, "analyst")
    return _console(request, "admin_build.html", admin, build=_build(tg, jobs, build_id))


@router.get("/builds/{build_id}/status")
def build_status(tg: TG, admin: Admin, jobs: Jobs, build_id: BuildId) -> JSONResponse:
    _require(admin, "analyst")
    state = _build(tg, jobs, build_id)
    body = {k: state.get(k) for k in ("status", "progress", "error", "build_id")}
    return JSONResponse(body, headers=SECURITY_HEADERS)


@router.get("/builds/{build_id}/verify")
def build_verify(tg: TG, admin: Admin, jobs: Jobs, build_id: BuildId) -> JSONResponse:
    """Recompute the build's files, counts and signature against its manifest."""
    _require(admin, "analyst")
    state = _build(tg, jobs, build_id)
    if state.get("status") != "succeeded":
        raise NotFoundError(f"build {build_id!r} has not finished")
    result = tg.datasets.verify(path=FilePath(str(state["path"])))
    return JSONResponse(result.to_dict(), headers=SECURITY_HEADERS)


# -- explain, policy, retention ----------------------------------------------------------------


@router.get("/explain")
def explain(
    request: Request,
    tg: TG,
    admin: Admin,
    conversation_id: str = "",
    purpose: str = "",
    as_of: str = "",
    q: str = "",
) -> Response:
    """The rules that decided, per message, for any conversation (for the policy's first
    purpose unless one is chosen); ``q`` finds conversations by id prefix or account."""
    _require(admin, "privacy_officer")
    purpose = purpose or next(iter(tg.policy.purposes))
    found = tg.privacy.find_conversations(q[:256], limit=SEARCH_LIMIT + 1) if q.strip() else None
    result, error = None, None
    if conversation_id:
        try:
            result = tg.privacy.explain(
                conversation_id=conversation_id.strip(),
                purpose=purpose,
                as_of=_instant(as_of, "as-of"),
            ).to_dict()
        except TraingateError as exc:
            error = str(exc)
    return _console(
        request,
        "admin_explain.html",
        admin,
        purposes=tg.policy.purposes,
        query={"conversation_id": conversation_id, "purpose": purpose, "as_of": as_of, "q": q},
        found=None if found is None else found[:SEARCH_LIMIT],
        found_more=found is not None and len(found) > SEARCH_LIMIT,
        result=result,
        error=error,
        status_code=422 if error else 200,
    )


_COMMON_KEYS = frozenset({"id", "rule", "kind", "purposes", "text"})


def _parameter(value: Any) -> str:
    """A parameter's value as the policy file writes it (absent: no limit)."""
    if value is None:
        return "absent (no limit)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _basis_rows(policy: Policy) -> list[dict[str, Any]]:
    """Each basis of the policy with its mechanism's parameters (every one, defaults
    included: what the model decides with) and the reasons it can give."""
    rows = []
    for basis in policy.bases:
        parameters = basis.model_dump(mode="json", exclude=set(_COMMON_KEYS))
        rows.append(
            {
                "basis": basis,
                "parameters": [(key, _parameter(value)) for key, value in parameters.items()],
                "reasons": basis.reason_ids(policy.vocabulary),
            }
        )
    return rows


def _policy_view(policy: Policy, ranges: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    return {
        "policy": policy,
        "range": ranges.get((policy.id, policy.version)),
        "bases": _basis_rows(policy),
        "reasons": [(rule_id, policy.rules[rule_id]) for rule_id in policy.reason_ids()],
    }


@router.get("/policy")
def policy(request: Request, tg: TG, admin: Admin, policy_id: str = "") -> Response:
    """Every policy in force, each with its range, purposes x bases, its bases with their
    mechanisms' parameters, its retention rules and its reasons with their texts, all read
    from the policy model; ``policy_id`` (one of them) is shown first, else the one in force
    now."""
    ranges = {(r["id"], r["version"]): r for r in tg.policies.ranges()}
    chosen = next((p for p in tg.policies.policies if p.id == policy_id), tg.policy)
    ordered = [chosen, *(p for p in tg.policies.policies if p is not chosen)]
    return _console(
        request,
        "admin_policy.html",
        admin,
        policy=chosen,
        views=[_policy_view(p, ranges) for p in ordered],
        versions=tg.policies.ranges(),
    )


@router.get("/retention")
def retention(request: Request, tg: TG, admin: Admin, purged: str = "") -> Response:
    """What expires when, what waits for its hard deletion, the last purge."""
    _require(admin, "privacy_officer")
    return _console(
        request,
        "admin_retention.html",
        admin,
        status=tg.retention.status(),
        policy=tg.policy,
        purged=purged == "1",
    )


@router.post("/purge")
def purge(request: Request, tg: TG, admin: Admin, form: Posted) -> Response:
    _require(admin, "privacy_officer")
    check_form(request, form, admin)
    tg.retention.purge(actor=admin.principal.actor)
    return _see_other("/admin/retention?purged=1")
