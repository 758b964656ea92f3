"""Every route of the API declares its response body as a pydantic model (issue 18, typed
boundaries): the OpenAPI document names it, and a body that drifts from it fails."""

from __future__ import annotations

from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from traingate._core.policy.versions import load_policy_set
from traingate._server.application import _application


def test_every_api_route_has_a_response_model() -> None:
    app = _application(policies=load_policy_set(None))
    routes = [
        context.route
        for context in iter_route_contexts(app.routes)
        if isinstance(context.route, APIRoute) and context.route.include_in_schema
    ]
    assert routes
    missing = [
        f"{sorted(route.methods)} {route.path}"
        for route in routes
        if not (
            isinstance(route.response_model, type) and issubclass(route.response_model, BaseModel)
        )
    ]
    assert not missing, missing
    document = app.openapi()
    for route in routes:
        assert route.response_model is not None
        for method in route.methods:
            operation = document["paths"][route.path][method.lower()]
            response = operation["responses"][str(route.status_code or 200)]
            schema = response["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith(f"/{route.response_model.__name__}"), route.path
