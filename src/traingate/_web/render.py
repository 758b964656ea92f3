"""Rendering of the pages: one Jinja2 environment, its filters, and the security headers every
page carries.

The environment is built once per process (``environment()`` is cached: it holds only the
loader, the filters and the compiled templates, nothing that a request changes). Pages load no
third-party resources and run no inline script: the Content-Security-Policy says so.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from traingate._api.paths import path_segment
from traingate._core.timeutil import Duration, format_instant, from_micros, parse_instant

__all__ = [
    "SECURITY_HEADERS",
    "STATIC_DIR",
    "environment",
    "human_date",
    "human_datetime",
    "page",
]

_HERE = Path(__file__).resolve().parent
STATIC_DIR = _HERE / "static"
TEMPLATE_DIR = _HERE / "templates"

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _micros(value: int | str | None) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return value
    return parse_instant(value)


def human_date(value: int | str | None) -> str:
    """``12 March 2024`` (UTC), or an em dash for nothing."""
    micros = _micros(value)
    if micros is None:
        return "—"
    moment = from_micros(micros)
    return f"{moment.day} {moment:%B %Y}"


def human_datetime(value: int | str | None) -> str:
    """``12 March 2024, 14:05 UTC``, or an em dash for nothing."""
    micros = _micros(value)
    if micros is None:
        return "—"
    moment = from_micros(micros)
    return f"{moment.day} {moment:%B %Y, %H:%M} UTC"


def human_month(value: int | str | None) -> str:
    """``March 2024`` (UTC) from an instant or a ``YYYY-MM`` month, or an em dash."""
    if isinstance(value, str) and len(value) == 7:
        value = f"{value}-01T00:00:00Z"
    micros = _micros(value)
    if micros is None:
        return "—"
    return f"{from_micros(micros):%B %Y}"


def short_build(build_id: str) -> str:
    """A build id as people compare it: ``build-4653bf7271c074aa`` as ``4653bf72`` (the page
    keeps the whole id in a title)."""
    return build_id.removeprefix("build-")[:8]


def _instant(value: int | None) -> str:
    return "" if value is None else format_instant(value)


def _url_segment(value: object) -> str:
    """An id as one path segment of a link: every character but the unreserved ones
    percent-encoded, ``/`` included (Jinja's own ``urlencode`` keeps ``/``: an id
    ``../../x`` would have left the page's path), and ``.`` / ``..`` in the form no browser
    resolves. ``_api/paths.py`` writes it and routes it back."""
    return path_segment(str(value))


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def human_duration(value: Duration | None) -> str:
    """``P10Y`` as "10 years", ``P1Y6M`` as "1 year and 6 months"; None as "no limit"."""
    if value is None:
        return "no limit"
    parts = [
        f"{n} {unit}{'s' if n != 1 else ''}"
        for n, unit in ((value.years, "year"), (value.months, "month"), (value.days, "day"))
        if n
    ]
    return " and ".join(parts)


def _sentence(value: object) -> str:
    """A message as a sentence: its first letter in capitals."""
    text = str(value)
    return text[:1].upper() + text[1:]


def _label(value: str) -> str:
    """``some_id`` -> ``Some id``: an id as words."""
    text = value.replace("_", " ")
    return text[:1].upper() + text[1:]


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["date"] = human_date
    env.filters["datetime"] = human_datetime
    env.filters["month"] = human_month
    env.filters["short_build"] = short_build
    env.filters["instant"] = _instant
    env.filters["pretty_json"] = _pretty_json
    env.filters["urlencode"] = _url_segment
    env.filters["label"] = _label
    env.filters["duration"] = human_duration
    env.filters["sentence"] = _sentence
    return env


def page(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render ``template`` with ``context`` (plus ``request`` and ``path``)."""
    html = (
        environment()
        .get_template(template)
        .render(request=request, path=request.url.path, **context)
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
