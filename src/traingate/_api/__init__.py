"""The HTTP API (FastAPI): ``create_app(settings=...)``; reference in docs/api.md.

One router module per resource (events, feedback, conversations, accounts, sessions,
datasets, purge), the callers and their roles in ``auth``, the one error shape in
``problems``.
"""

from traingate._api.application import create_app, openapi_document

__all__ = ["create_app", "openapi_document"]
