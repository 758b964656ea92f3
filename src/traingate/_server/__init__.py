"""The ASGI app: the HTTP API (``traingate._api``) and the pages (``traingate._web``) in one
FastAPI app, with the error handling both share (a page for a browser on a page route, the
API's JSON for anyone else). ``create_app(settings=...)``; docs/api.md, docs/web.md.

    application.py  create_app, openapi_document: routes, pages, OpenAPI, state
    errors.py       the error handlers: JSON (``_api/problems.py``) or a page (``_web/errors.py``)
"""

from traingate._server.application import create_app, openapi_document

__all__ = ["create_app", "openapi_document"]
