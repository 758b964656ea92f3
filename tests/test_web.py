"""The pages in a real browser: Playwright drives Debian's chromium against the app served by
uvicorn on 127.0.0.1 (a fresh database per test).

Flows: toggle consent and see the answer change; thumbs-down with a comment and see the
receipt; delete that report with the receipt; delete a conversation and see it missing from
the next build; an admin starts a build and sees its manifest. A screenshot of every page is
saved under test-artifacts/web/. Without /usr/bin/chromium the tests skip, except with
CI=true, where they fail (at the import of tests/browser.py, which holds the helpers the
browser tests share; the ``site``, ``browser`` and ``page`` fixtures are conftest.py's).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.browser import (
    Site,
    admin_sign_in,
    build,
    open_dialog,
    serve_site,
    shot,
    sign_in,
)
from tests.support import ALICE, DINNER, LANDLORD, LISBON


@pytest.fixture
def backend_site(db_url: str, tmp_path: Path) -> Iterator[Site]:
    """The site on each backend (``db_url`` of conftest: SQLite and PostgreSQL)."""
    yield from serve_site(db_url, tmp_path)


def accept_dialogs(page: Page) -> None:
    def accept(dialog: Dialog) -> None:
        dialog.accept()

    page.on("dialog", accept)


# -- the end user ------------------------------------------------------------------------------


def answer(page: Page) -> str:
    return page.locator("#answer-title").inner_text()


def test_toggle_consent_changes_the_answer(page: Page, site: Site) -> None:
    sign_in(page, site)
    assert answer(page).startswith("Yes. Your conversations since 1 January 2024")
    expect(page.locator("#answer")).to_contain_text("via your privacy settings")
    expect(page.locator("#answer")).to_contain_text("opt_in")
    shot(page, "privacy-center-on")

    switch = page.get_by_role("switch", name="Use my conversations to train models")
    expect(switch).to_have_attribute("aria-checked", "true")
    switch.focus()  # keyboard: the switch is a real button
    page.keyboard.press("Enter")
    expect(page.locator(".notice.ok")).to_contain_text("Model training is now off")
    assert answer(page) == (
        "No. Your conversations are not used to train our models, except feedback you send."
    )
    expect(page.locator("#answer")).to_contain_text("consent_revoked")
    expect(switch).to_have_attribute("aria-checked", "false")
    shot(page, "privacy-center-off")

    switch.click()
    expect(switch).to_have_attribute("aria-checked", "true")
    assert answer(page).startswith("Yes. Your conversations since ")
    assert "1 January 2024" not in answer(page)  # a new grant covers new messages only


def test_thumbs_down_with_a_comment_shows_the_receipt_then_delete_it(
    page: Page, site: Site
) -> None:
    sign_in(page, site)
    page.goto(f"{site.url}/conversations/{LISBON}")
    shot(page, "conversation")
    open_dialog(page, site, "down", "m-l4")
    dialog = page.get_by_role("dialog")
    stored = dialog.locator("#fb-stored")
    for words in (
        "The entire conversation",
        "style and preferences",
        "For up to 10 years",
        "De-linked from your account",
        "Without raw integration content",
    ):
        expect(stored).to_contain_text(words)
    expect(dialog.get_by_label("Bad response")).to_be_checked()
    dialog.get_by_label("Not factually correct").check()
    dialog.get_by_label("Comment").fill("The queue at Martim Moniz is long at 8:30 too.")
    dialog.locator(".dialog-body").evaluate("body => { body.scrollTop = 0; }")
    shot(page, "feedback-dialog", full_page=False)
    dialog.get_by_role("button", name="Send feedback").click()

    expect(dialog.locator("#feedback-done")).to_be_visible()
    receipt = dialog.locator("#fb-receipt").inner_text()
    assert "." in receipt
    expect(dialog).to_contain_text("Stored until")
    expect(page.locator("#fb-done-title")).to_be_focused()
    shot(page, "feedback-receipt", full_page=False)
    held = page.evaluate("JSON.parse(localStorage.getItem('traingate.receipts'))")
    assert [entry["receipt"] for entry in held] == [receipt]
    with site.open() as tg:
        _, snapshot = tg.feedback.show(receipt)
    assert snapshot.rating == "down"
    assert snapshot.comment == "The queue at Martim Moniz is long at 8:30 too."
    assert snapshot.categories == ("not_factual",)
    assert len(snapshot.messages) == 4 and snapshot.rated_message_index == 3
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()

    page.goto(f"{site.url}/privacy#reports")
    report = page.locator(f"#report-list li[data-receipt='{receipt}']")
    expect(report).to_contain_text("The queue at Martim Moniz is long at 8:30 too.")
    expect(report).to_contain_text("kept until")
    expect(report).to_contain_text("4 messages stored")
    shot(page, "privacy-center-reports")
    accept_dialogs(page)
    report.get_by_role("button", name="Delete the report").click()
    expect(page.locator("#reports-status")).to_contain_text("was deleted")
    expect(page.locator("#report-list")).to_contain_text("This browser holds no receipts")
    assert page.evaluate("JSON.parse(localStorage.getItem('traingate.receipts'))") == []
    with site.open() as tg, pytest.raises(Exception, match="receipt"):
        tg.feedback.show(receipt)


def focused(page: Page) -> dict[str, str]:
    result: dict[str, str] = page.evaluate(
        """() => {
          const el = document.activeElement;
          const style = getComputedStyle(el);
          return {tag: el.tagName.toLowerCase(), role: el.getAttribute("role") || "",
                  rate: el.dataset.rate || "", outline: style.outlineStyle,
                  width: style.outlineWidth, inDialog: String(!!el.closest("dialog"))};
        }"""
    )
    return result


def tab_to(page: Page, wanted: dict[str, str], limit: int = 40) -> dict[str, str]:
    """Press Tab until the focused element has the ``wanted`` properties."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if all(now.get(key) == value for key, value in wanted.items()):
            return now
    raise AssertionError(f"Tab never reached {wanted}")


def test_everything_works_from_the_keyboard_with_visible_focus(page: Page, site: Site) -> None:
    sign_in(page, site)
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    box = page.locator(".skip-link").bounding_box()
    assert box is not None and box["y"] >= 0  # it shows itself when focused
    page.keyboard.press("Enter")
    switch = tab_to(page, {"role": "switch"})
    assert switch["outline"] == "solid" and switch["width"] == "3px"
    page.keyboard.press("Space")
    expect(page.locator(".notice.ok")).to_contain_text("now off")

    page.goto(f"{site.url}/conversations/{LISBON}")
    thumb = tab_to(page, {"rate": "up"})
    assert thumb["outline"] == "solid"
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_be_visible()
    assert focused(page)["inDialog"] == "true"
    expect(page.get_by_role("dialog").get_by_label("Good response")).to_be_focused()
    shot(page, "feedback-dialog-keyboard", full_page=False)
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.locator("button[data-rate=up][data-message=m-l2]")).to_be_focused()


# -- the admin console -------------------------------------------------------------------------


def records(site: Site, manifest: dict[str, Any], build_page: Page) -> list[dict[str, Any]]:
    directory = Path(build_page.locator("#build-path").inner_text())
    assert directory.parent == site.datasets.absolute()
    rows: list[dict[str, Any]] = []
    for entry in manifest["files"]:
        lines = (directory / entry["path"]).read_text(encoding="utf-8").splitlines()
        rows.extend(json.loads(line) for line in lines)
    return rows


def test_an_admin_starts_a_build_and_sees_its_manifest(
    page: Page, site: Site, console_errors: list[str]
) -> None:
    admin_sign_in(page, site, "tgk_not-a-real-token")
    expect(page.locator("#login-error")).to_contain_text("not valid")
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]
    console_errors.clear()
    shot(page, "admin-login")
    page.get_by_label("API token").fill(site.analyst)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{site.url}/admin/builds")
    shot(page, "admin-builds-empty")

    manifest = build(page, site)
    assert manifest["purpose"] == "model_training"
    assert manifest["counts"]["by_basis"]["opt_in"] == {"records": 3, "messages": 8}
    expect(page.locator("#manifest-records")).to_have_text("3")
    shot(page, "admin-build")

    page.goto(f"{site.url}/admin/builds")
    row = page.locator("#builds-table tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator(".verify")).to_contain_text("verified")
    shot(page, "admin-builds")


def test_a_deleted_conversation_is_missing_from_the_next_build(
    browser: Browser, page: Page, site: Site
) -> None:
    admin_sign_in(page, site, site.analyst)
    before = build(page, site)
    assert before["counts"]["records"] == 3
    assert "broken heater" in json.dumps(records(site, before, page), ensure_ascii=False)

    user = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        their = user.new_page()
        sign_in(their, site)
        accept_dialogs(their)
        item = their.locator(f"li[data-conversation={LANDLORD}]")
        expect(item).to_contain_text("In 1 dataset: Model training")
        item.get_by_role("button", name="Delete conversation Reply to my landlord").click()
        expect(their.locator(".notice.ok")).to_contain_text("The conversation was deleted")
        expect(item).to_contain_text("Deleted")
        expect(item.get_by_role("button")).to_have_count(0)
        shot(their, "privacy-center-deleted")
    finally:
        user.close()

    after = build(page, site)
    assert after["counts"]["records"] == 2
    assert after["exclusions"]["messages"]["by_reason"]["conversation_deleted"] == 2
    texts = json.dumps(records(site, after, page), ensure_ascii=False)
    assert "broken heater" not in texts
    assert "tram 28" in texts


def test_the_privacy_officer_explains_reads_the_policy_and_retention(
    page: Page, site: Site
) -> None:
    with site.open() as tg:
        tg.feedback.submit(account_id=ALICE, conversation_id=DINNER, message_id="m-d2", rating="up")
        tg.events.delete_conversation(conversation_id=DINNER, account_id=ALICE)
    admin_sign_in(page, site, site.officer)
    expect(page).to_have_url(f"{site.url}/admin/explain")
    page.get_by_label("Conversation id").fill(LISBON)
    page.get_by_label("As of").fill("2024-06-01T00:00:00Z")
    page.get_by_role("button", name="Explain").click()
    table = page.locator("#explain-table")
    expect(table.locator("tbody tr")).to_have_count(4)
    expect(table).to_contain_text("opt_in")
    expect(table).to_contain_text("R2")
    shot(page, "admin-explain")

    page.get_by_role("link", name="Policy").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("consumer-2024")
    for rule_id in ("usage_policy_flag", "opt_in", "organization_opt_in", "feedback"):
        expect(page.locator("table.matrix thead")).to_contain_text(rule_id)
    shot(page, "admin-policy")

    page.get_by_role("link", name="Retention").click()
    expect(page.locator("#pending-table")).to_contain_text(DINNER)
    expect(page.locator("#expiry-table")).to_contain_text(str(datetime.now(UTC).year + 10))
    expect(page.locator("#last-purge")).to_contain_text("No purge")
    page.get_by_role("button", name="Purge now").click()
    expect(page.locator(".notice.ok")).to_contain_text("The purge ran")
    expect(page.locator("#last-purge")).to_contain_text("token:")
    expect(page.locator("#last-purge")).to_contain_text("Expired reports")
    shot(page, "admin-retention")


# -- every backend --------------------------------------------------------------------------


def test_main_flow_on_every_backend(browser: Browser, page: Page, backend_site: Site) -> None:
    """Consent, feedback with its receipt, deleting it, deleting a conversation, and a build,
    on SQLite and on PostgreSQL."""
    site = backend_site
    sign_in(page, site)
    accept_dialogs(page)
    page.get_by_role("switch").click()
    expect(page.locator("#answer-title")).to_contain_text("No.")
    page.get_by_role("switch").click()
    expect(page.locator("#answer-title")).to_contain_text("Yes.")

    open_dialog(page, site, "up", "m-l2")
    page.get_by_role("dialog").get_by_label("Helpful", exact=True).check()
    page.get_by_role("dialog").get_by_role("button", name="Send feedback").click()
    expect(page.locator("#feedback-done")).to_be_visible()
    receipt = page.locator("#fb-receipt").inner_text()
    page.goto(f"{site.url}/privacy")
    page.locator(f"li[data-receipt='{receipt}']").get_by_role("button").click()
    expect(page.locator("#reports-status")).to_contain_text("was deleted")

    page.locator(f"li[data-conversation={DINNER}]").get_by_role("button").click()
    expect(page.locator(".notice.ok")).to_contain_text("deleted")

    admin = browser.new_context()
    try:
        console = admin.new_page()
        admin_sign_in(console, site, site.analyst)
        manifest = build(console, site)
        # the re-grant covers new messages only: nothing of Alice's is eligible any more
        assert manifest["counts"]["records"] == 0
        assert manifest["exclusions"]["messages"]["by_reason"]["consent_revoked"] == 6
    finally:
        admin.close()


def test_the_console_builds_the_shape_chosen(page: Page, site: Site) -> None:
    """The build form's Shape select (issue 16): the job builds that shape."""
    admin_sign_in(page, site, site.analyst)
    page.goto(f"{site.url}/admin/builds")
    expect(page.get_by_label("Shape")).to_have_value("records")
    page.get_by_label("Purpose").select_option("model_training")
    page.get_by_label("Shape").select_option("chat")
    page.get_by_role("button", name="Start build").click()
    expect(page.locator("#status-badge")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#verification")).to_contain_text("verified")
    manifest = json.loads(page.locator("#manifest pre.json").text_content() or "")
    assert manifest["shape"]["name"] == "chat"
    assert [d["path"] for d in manifest["documents"]] == ["README.md", "croissant.json"]
    expect(page.locator("#build-shape")).to_have_text("chat")
    expect(page.locator("tr.document")).to_have_count(2)  # the card and croissant.json
    shot(page, "admin-build-chat")
