"""The HTTP API (FastAPI): its routes; reference in docs/api.md. The app that serves them with
the pages is assembled above it, by ``traingate._server.create_app(settings=...)``.

One router module per resource (events, feedback, conversations, accounts, sessions,
datasets, purge, audit), the callers and their roles in ``access``, the one error shape in
``problems``.
"""
