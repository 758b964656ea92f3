"""The privacy center of issue 17 (point 5) in chromium: rows of several builds say which build
each is; the feedback dialog copies and downloads the receipt and warns that a lost receipt
cannot be recovered; a reused login link says so and how to get another; the datasets table
fits 390 px; the training toggle gives the keyboard's focus back to the switch. Screenshots,
at 1280 and at 390 px, go to test-artifacts/web/ beside tests/test_web.py's."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser import ARTIFACTS, Site, open_dialog, shot, sign_in
from tests.support import LISBON
from traingate._core.timeutil import parse_instant

# Each test takes conftest.py's fresh site and a fresh page of the session's chromium.

AS_OF = "2025-07-01T00:00:00Z"


def narrow(page: Page, name: str) -> None:
    """The same page at 390 px: nothing wider than the viewport, then a screenshot."""
    page.set_viewport_size({"width": 390, "height": 844})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{name} is {width} px wide at 390"
    shot(page, f"{name}-390")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_each_build_is_named_and_the_table_fits_390_px(site: Site, page: Page) -> None:
    with site.open() as tg:
        ids = [
            tg.datasets.build(
                purpose="model_training",
                out=site.datasets / name,
                as_of=parse_instant(AS_OF),
                format="jsonl",
            ).build_id
            for name in ("first", "second")
        ]
    sign_in(page, site)
    row = page.locator("#purpose-table tr[data-purpose=model_training]")
    builds = row.locator("li[data-build]")
    expect(builds).to_have_count(2)
    texts = builds.all_inner_texts()
    assert len(set(texts)) == 2, texts  # no two identical rows
    for build_id in ids:
        short = build_id.removeprefix("build-")[:8]
        item = row.locator(f"li[data-build='{build_id}']")
        expect(item).to_contain_text(f"Build {short}, as of 1 July 2025, 00:00 UTC")
        expect(item.locator("code")).to_have_attribute("title", build_id)
    shot(page, "privacy-center-builds")
    evidence = page.locator("#evidence")
    evidence.screenshot(path=str(ARTIFACTS / "privacy-center-datasets.png"))

    page.set_viewport_size({"width": 390, "height": 844})
    table = page.locator("#purpose-table")
    box = table.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    wrap = page.locator("#evidence .table-wrap")
    assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth"), "the table scrolls sideways"
    expect(row.locator("td[data-label='Datasets built']")).to_contain_text(ids[0][6:14])
    evidence.screenshot(path=str(ARTIFACTS / "privacy-center-datasets-390.png"))
    narrow(page, "privacy-center-builds")


def test_the_toggle_keeps_the_keyboard_on_the_switch(site: Site, page: Page) -> None:
    sign_in(page, site)
    switch = page.get_by_role("switch", name="Use my conversations to train models")
    switch.focus()
    page.keyboard.press("Enter")
    expect(page.locator(".notice.ok")).to_contain_text("Model training is now off")
    expect(switch).to_have_attribute("aria-checked", "false")
    expect(switch).to_be_focused()
    assert page.evaluate("document.activeElement !== document.body")
    shot(page, "privacy-center-toggle-focus", full_page=False)
    page.keyboard.press("Space")  # still on the switch: it turns back on
    expect(page.locator(".notice.ok")).to_contain_text("Model training is now on")
    expect(switch).to_have_attribute("aria-checked", "true")
    expect(switch).to_be_focused()


def test_the_dialog_copies_and_downloads_the_receipt_and_warns(
    site: Site, tmp_path: Path, page: Page
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    sign_in(page, site)
    open_dialog(page, site, "up", "m-l2")
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("#fb-stored")).to_contain_text("a lost receipt cannot be recovered")
    expect(dialog.locator("#fb-stored")).to_contain_text("for its whole retention, until")
    dialog.get_by_role("button", name="Send feedback").click()
    expect(dialog.locator("#feedback-done")).to_be_visible()
    receipt = dialog.locator("#fb-receipt").inner_text()
    keep = dialog.locator("#fb-keep")
    expect(keep).to_contain_text("a lost receipt cannot be recovered")
    expect(keep).to_contain_text(re.compile(r"for its whole retention, until \d+ \w+ \d{4}"))
    shot(page, "feedback-receipt-keep", full_page=False)

    dialog.get_by_role("button", name="Copy receipt").click()
    expect(dialog.locator("#fb-copy-status")).to_contain_text("copied")
    assert page.evaluate("navigator.clipboard.readText()") == receipt

    with page.expect_download() as download:
        dialog.get_by_role("button", name="Download receipt").click()
    saved = tmp_path / "receipt.txt"
    download.value.save_as(saved)
    assert re.fullmatch(
        r"traingate-receipt-\d{4}-\d{2}-\d{2}\.txt", download.value.suggested_filename
    )
    text = saved.read_text(encoding="utf-8")
    assert receipt in text.splitlines()
    assert "cannot be recovered" in text
    expect(dialog.locator("#fb-copy-status")).to_contain_text("saved as traingate-receipt-")

    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "feedback-receipt-keep-390", full_page=False)


def test_a_reused_login_link_says_it_was_used_and_how_to_get_another(
    site: Site, page: Page
) -> None:
    sign_in(page, site)
    browser = page.context.browser
    assert browser is not None
    other = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-GB")
    try:
        again = other.new_page()
        response = again.goto(site.login_link)
        assert response is not None and response.status == 401
        expect(again.get_by_role("alert")).to_contain_text("This login link was already used")
        expect(again.locator("#new-link")).to_contain_text("traingate session create --account")
        shot(again, "login-link-used-390")
        again.set_viewport_size({"width": 1280, "height": 900})
        shot(again, "login-link-used")
    finally:
        other.close()
    page.goto(f"{site.url}/conversations/{LISBON}")  # the first browser stays signed in
    expect(page.get_by_role("heading", level=1)).to_have_text("Two days in Lisbon")
