"""Helpers of the browser tests: Playwright drives Debian's chromium against the app served by
uvicorn on 127.0.0.1.

Importing this module skips the importing test module when /usr/bin/chromium is missing, or,
with CI=true, fails it (``.ci/run`` installs chromium). Every browser test module imports it.

- ``CHROMIUM``, ``LAUNCH_ARGS``: the browser and how it is launched; ``ARTIFACTS``: where
  screenshots go (test-artifacts/web/).
- ``Site``, ``serve_site``: a store holding ``tests.support.world()`` with a login link and
  tokens, served by ``serve`` (conftest.py's ``site`` fixture: on SQLite, fresh per test).
- ``shot``: a screenshot, after checking the contrast of every text of the page (``CONTRAST``).
- ``sign_in``, ``open_dialog``: the end user signing in, opening the feedback dialog;
  ``admin_sign_in``, ``build``: the console signed into with a token, a build started there.

The browser itself is conftest.py's ``browser`` (one chromium per test process) and each
test's ``page`` a fresh context of it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import ALICE, LISBON, world
from traingate._facade import Traingate
from traingate._settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "web"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

if not CHROMIUM.exists():
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{CHROMIUM} is missing (CI=true: .ci/run installs it)", pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium", allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402


@dataclass(frozen=True)
class Site:
    url: str
    settings: Settings
    login_link: str
    analyst: str
    officer: str
    datasets: Path

    def open(self) -> Traingate:
        return Traingate.open(self.settings)


def serve(settings: Settings, datasets: Path) -> Iterator[str]:
    """The app over ``settings`` served by uvicorn on a free port of 127.0.0.1, in a thread:
    yields its base URL once it has started, stops it after."""
    import uvicorn

    from traingate._server import create_app

    app = create_app(settings=settings, datasets_dir=datasets)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", ws="none", http="h11", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def serve_site(db_url: str, tmp_path: Path) -> Iterator[Site]:
    """A store at ``db_url`` holding ``world()``, with a login link for Alice and an analyst's
    and a privacy officer's tokens, served (``serve``); builds go to ``tmp_path/datasets``."""
    settings = Settings(db_url=db_url, key_file=tmp_path / "keys" / "keys.json")
    with Traingate.open(settings) as tg:
        summary = tg.events.ingest([json.dumps(e) for e in world()])
        assert summary.rejected == 0, summary.errors
        login = tg.access.create_session(account_id=ALICE).login_path
        analyst = tg.access.create_token(role="analyst", name="ana").token
        officer = tg.access.create_token(role="privacy_officer", name="olga").token
    datasets = tmp_path / "datasets"
    for url in serve(settings, datasets):
        yield Site(url, settings, url + login, analyst, officer, datasets)


# WCAG 2 contrast of every rendered text against its (blended) background: at least 4.5:1,
# 3:1 for large text. With a modal dialog open, only the dialog is checked (the rest is inert).
CONTRAST = """
() => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return { r: 255, g: 255, b: 255, a: 0 };
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const blend = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a),
    g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a),
    a: 1,
  });
  const lum = ({ r, g, b }) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    const layers = [];
    for (let n = el; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    const white = { r: 255, g: 255, b: 255, a: 1 };
    return layers.reverse().reduce((bg, layer) => blend(layer, bg), white);
  };
  const root = document.querySelector("dialog[open]") || document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const failures = [];
  const seen = new Set();
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!node.textContent.trim() || seen.has(el)) continue;
    seen.add(el);
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || !el.getClientRects().length) continue;
    const bg = background(el);
    const fg = blend(parse(style.color), bg);
    const [hi, lo] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (parseInt(style.fontWeight, 10) >= 700 && size >= 18.66);
    if (ratio < (large ? 3 : 4.5)) {
      const where = `<${el.tagName.toLowerCase()} class="${el.className}">`;
      failures.push(`${ratio.toFixed(2)}:1 ${where} ${node.textContent.trim().slice(0, 40)}`);
    }
  }
  return failures;
}
"""


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Save a screenshot of the page, after checking the contrast of all its text."""
    assert page.evaluate(CONTRAST) == [], f"text with too little contrast on {name}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def sign_in(page: Page, site: Site) -> None:
    page.goto(site.login_link)
    expect(page).to_have_url(f"{site.url}/privacy")


def open_dialog(page: Page, site: Site, rating: str, message: str) -> None:
    page.goto(f"{site.url}/conversations/{LISBON}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Two days in Lisbon")
    page.locator(f"button[data-rate={rating}][data-message={message}]").click()
    expect(page.get_by_role("dialog")).to_be_visible()


def admin_sign_in(page: Page, site: Site, token: str) -> None:
    page.goto(f"{site.url}/admin")
    expect(page).to_have_url(f"{site.url}/admin/login?next=/admin")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def build(page: Page, site: Site, *, purpose: str = "model_training") -> dict[str, Any]:
    """Start a build from the console, wait for its manifest on the page, return it."""
    page.goto(f"{site.url}/admin/builds")
    page.get_by_label("Purpose").select_option(purpose)
    page.get_by_label("Format").select_option("jsonl")
    page.get_by_role("button", name="Start build").click()
    expect(page.locator("#status-badge")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#manifest")).to_be_visible()
    expect(page.locator("#verification")).to_contain_text("verified")
    manifest: dict[str, Any] = json.loads(page.locator("#manifest pre.json").text_content() or "")
    return manifest
