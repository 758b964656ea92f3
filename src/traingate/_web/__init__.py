"""The server-rendered pages (docs/web.md): the end user's privacy center and conversation
view, and the admin console. ``router`` is included by the app factory
(``traingate._server``); the pages are left out of the OpenAPI document.

    user.py     /login/{session}, /privacy, /conversations/{id} and their forms
    admin.py    /admin/...: builds, explain, policy, retention
    session.py  cookies, CSRF tokens, form bodies
    answer.py   the privacy answer: its headline, reasons and toggle, per purpose (pure)
    headline.py what the answer follows from; its tone, headline and summary (pure)
    reasons.py  each reason of the answer, and the toggle's help (pure)
    words.py    the policy's rules by id and the phrases the answer is written with (pure)
    render.py   Jinja2, filters, security headers
    errors.py   traingate's errors as pages
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.staticfiles import StaticFiles

from traingate._web import admin, user
from traingate._web.render import STATIC_DIR

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
router.include_router(user.router)
router.include_router(admin.router)
router.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
