"""The console of issue 17 (point 6) in chromium: a privacy officer finds conversations by id
prefix or account, explain writes dates out, the manifest's "Left out, by rule" stands clear
of the counts, and the retention page groups reports by month. Screenshots, at 1280 and at
390 px, go to test-artifacts/web/ beside tests/test_web.py's."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser import Site, admin_sign_in, build, shot
from tests.support import ALICE, DINNER, LANDLORD, LISBON

# Each test takes conftest.py's fresh site and a fresh page of the session's chromium.

RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def narrow(page: Page, name: str) -> None:
    """The same page at 390 px: nothing wider than the viewport, then a screenshot."""
    page.set_viewport_size({"width": 390, "height": 844})
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 390, f"{name} is {overflow} px wide at 390"
    shot(page, f"{name}-390")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_the_privacy_officer_finds_a_conversation_and_reads_dates(site: Site, page: Page) -> None:
    admin_sign_in(page, site, site.officer)
    expect(page).to_have_url(f"{site.url}/admin/explain")
    search = page.get_by_label("Search by id prefix or account")
    search.fill("conv-l")
    page.get_by_role("button", name="Find").click()
    found = page.locator("#found-table tbody tr")
    expect(found).to_have_count(2)
    expect(found.nth(0)).to_contain_text(LANDLORD)
    expect(found.nth(1)).to_contain_text(LISBON)
    expect(page.locator("#found-table")).not_to_contain_text(DINNER)
    shot(page, "admin-explain-search")

    page.get_by_label("Search by id prefix or account").fill(ALICE)
    page.get_by_role("button", name="Find").click()
    expect(found).to_have_count(3)
    expect(page.locator("#found-table")).to_contain_text(ALICE)
    narrow(page, "admin-explain-search")

    page.get_by_label("Search by id prefix or account").fill("conv-nobody")
    page.get_by_role("button", name="Find").click()
    expect(page.locator("#found")).to_contain_text("No conversation has an id beginning with")

    page.get_by_label("Search by id prefix or account").fill(ALICE)
    page.get_by_role("button", name="Find").click()
    page.get_by_role("link", name=LISBON).click()
    table = page.locator("#explain-table")
    expect(table.locator("tbody tr")).to_have_count(4)
    times = table.locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert all(re.fullmatch(r"\d{1,2} [A-Z][a-z]+ \d{4}, \d{2}:\d{2} UTC", t) for t in times), times
    heading = page.locator("#result-title").locator("xpath=../..").inner_text()
    assert not RFC3339.search(heading), heading
    assert re.search(r"as of \d{1,2} [A-Z][a-z]+ \d{4}, \d{2}:\d{2} UTC", heading), heading
    shot(page, "admin-explain-dates")
    narrow(page, "admin-explain-dates")


def test_manifest_heading_stands_clear_and_retention_names_months(site: Site, page: Page) -> None:
    with site.open() as tg:
        tg.feedback.submit(account_id=ALICE, conversation_id=DINNER, message_id="m-d2", rating="up")
    admin_sign_in(page, site, site.analyst)
    build(page, site)
    summary = page.locator(".manifest-summary").bounding_box()
    caption = page.get_by_text("Left out, by rule", exact=True).bounding_box()
    assert summary is not None and caption is not None
    assert caption["y"] >= summary["y"] + summary["height"] + 16, (summary, caption)
    as_of = page.locator("#manifest dl.facts time").inner_text()
    assert re.fullmatch(r"\d{1,2} [A-Z][a-z]+ \d{4}, \d{2}:\d{2} UTC", as_of), as_of
    shot(page, "admin-build-manifest")
    narrow(page, "admin-build-manifest")

    page.context.clear_cookies()
    admin_sign_in(page, site, site.officer)
    page.get_by_role("link", name="Retention").click()
    months = page.locator("#expiry-table tbody tr td:first-child").all_inner_texts()
    assert months and all(re.fullmatch(r"[A-Z][a-z]+ \d{4}", m) for m in months), months
    shot(page, "admin-retention-months")
    narrow(page, "admin-retention-months")
