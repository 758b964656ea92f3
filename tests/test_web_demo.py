"""Issue 17, point 2, in chromium: `traingate demo` as the README runs it, then the console
signed into with the tokens it prints, as a newcomer would. The analyst token starts a build
and watches it finish; the privacy officer token opens Explain and Retention; each role's
console shows the pages the demo said it opens. Screenshots go to test-artifacts/web/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.api_support import free_port
from tests.browser import Site, admin_sign_in, build, shot
from traingate._settings import Settings

TOKEN_LINE = re.compile(r"^  (\w+) \(([^)]*)\): (tgk_\S+)$", re.M)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Site, dict[str, tuple[str, list[str]]]]]:
    """`traingate demo` serving on a free port; the site and what it printed per role
    (token, pages)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "traingate", "demo", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed = ""
        for line in process.stdout:
            printed += line
            if line.startswith("Serving"):
                break
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/admin/login", timeout=2) as reply:
                    assert reply.status == 200
                    break
            except OSError:
                assert process.poll() is None, printed
                assert time.monotonic() < deadline, "the demo server did not come up"
                time.sleep(0.5)
        roles = {
            role: (token, pages.split(", ")) for role, pages, token in TOKEN_LINE.findall(printed)
        }
        assert set(roles) == {"analyst", "privacy_officer"}, printed
        data = tmp_path / "traingate-data"
        settings = Settings(
            db_url=f"sqlite:///{data / 'traingate.sqlite'}", key_file=data / "keys.json"
        )
        site = Site(
            url=url,
            settings=settings,
            login_link="",
            analyst=roles["analyst"][0],
            officer=roles["privacy_officer"][0],
            datasets=data / "datasets",
        )
        yield site, roles
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _nav(page: Page) -> list[str]:
    return [text.strip() for text in page.locator("nav a").all_inner_texts() if text.strip()]


def test_the_tokens_the_demo_prints_open_the_pages_it_promises(
    demo: tuple[Site, dict[str, tuple[str, list[str]]]], page: Page
) -> None:
    site, roles = demo

    admin_sign_in(page, site, site.analyst)
    expect(page).to_have_url(f"{site.url}/admin/builds")
    nav = _nav(page)
    assert set(roles["analyst"][1]) <= set(nav), nav
    assert "Explain" not in nav, nav
    # "start a build and watch it": the form starts one, its page follows it to the end
    manifest = build(page, site)
    assert manifest["counts"]["records"] > 0
    shot(page, "demo-analyst-build")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/admin/login"))

    admin_sign_in(page, site, site.officer)
    expect(page).to_have_url(f"{site.url}/admin/explain")
    nav = _nav(page)
    assert set(roles["privacy_officer"][1]) <= set(nav), nav
    shot(page, "demo-officer-explain")
    page.get_by_role("link", name="Retention").click()
    expect(page).to_have_url(f"{site.url}/admin/retention")
    expect(page.locator("main h1")).to_be_visible()
    shot(page, "demo-officer-retention")
