"""No page of traingate loads anything from another host (issue 17, point 1): the API docs
(Swagger UI at /docs, ReDoc at /redoc) come from assets installed with the package, and the
privacy center and the admin console from the server's own /static. A real browser (Debian's
chromium, as in tests/test_web.py) records every request of every page; each must go to the
server's origin. /docs and /redoc must also render the operations, not a blank page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.browser import ARTIFACTS, Site, admin_sign_in
from tests.support import LISBON
from traingate._api.apidocs import assets_dir


@pytest.fixture
def requests_seen(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(20_000)
    seen: list[str] = []

    def record(request: Request) -> None:
        seen.append(request.url)

    context.on("request", record)
    page = context.new_page()
    yield page, seen
    context.close()


def _foreign(seen: list[str], origin: str) -> list[str]:
    own = urlsplit(origin)
    return [
        url
        for url in seen
        if not url.startswith(("data:", "blob:", "about:"))
        and (urlsplit(url).scheme, urlsplit(url).netloc) != (own.scheme, own.netloc)
    ]


def test_the_docs_assets_are_installed_files() -> None:
    names = {p.name for p in assets_dir().iterdir()}
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"} <= (
        names
    )


def test_every_page_loads_only_from_the_server(
    site: Site, requests_seen: tuple[Page, list[str]]
) -> None:
    page, seen = requests_seen

    page.goto(f"{site.url}/docs")
    # Swagger UI rendered the document: the operations are there, with their paths
    expect(page.locator(".opblock").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/v1/events").first).to_be_visible()
    assert page.locator(".opblock").count() >= 10
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(_artifact("api-docs-swagger")), full_page=False)

    page.goto(f"{site.url}/redoc")
    expect(page.get_by_text("/v1/events").first).to_be_attached()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(_artifact("api-docs-redoc")), full_page=False)

    page.goto(site.login_link)
    expect(page).to_have_url(f"{site.url}/privacy")
    page.wait_for_load_state("networkidle")
    page.goto(f"{site.url}/conversations/{LISBON}")
    page.wait_for_load_state("networkidle")

    admin_sign_in(page, site, site.officer)
    expect(page).not_to_have_url(re.compile(r"/login"))
    for path in ("/admin/builds", "/admin/explain", "/admin/policy", "/admin/retention"):
        page.goto(f"{site.url}{path}")
        page.wait_for_load_state("networkidle")

    assert any(url.endswith("/docs-assets/swagger-ui-bundle.js") for url in seen)
    assert any(url.endswith("/docs-assets/redoc.standalone.js") for url in seen)
    assert any(url.endswith("/docs-assets/favicon.png") for url in seen)
    assert _foreign(seen, site.url) == []


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"
