"""The privacy center in a real browser for an account that moved between plans and
organizations, as the demo's acct-0001: on ``team`` with its organization opted in, then on
``free`` without opt-in. Two of its conversations stay eligible for model training under the
organization's consent, so the headline must not be "No", and it must name them; turning the
account's own setting on must not claim that earlier conversations are unused.

Screenshots go to test-artifacts/web/ and /tmp/privacy-*.png. Without /usr/bin/chromium the
tests skip, except with CI=true, where they fail (tests/browser.py).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser import ARTIFACTS, serve, shot
from tests.factories import Events
from traingate._core.policy import Policy
from traingate._facade import Traingate
from traingate._settings import Settings

ACCOUNT = "acct-0001"
TEAM_CHATS = {"hh-1147": "Vendor contract review", "hh-2210": "Quarterly roadmap"}


def history() -> list[dict[str, object]]:
    ev = Events("h")
    return [
        ev.account(ACCOUNT, "2024-03-01T09:00:00Z", plan="team", organization_id="org-001"),
        ev.consent(
            "org-001",
            "2024-03-01T09:00:00Z",
            granted=True,
            scope="organization",
            source="development_partner_program",
        ),
        ev.conversation("hh-1147", ACCOUNT, "2024-05-02T10:00:00Z", title=TEAM_CHATS["hh-1147"]),
        ev.message("m-1", "hh-1147", ACCOUNT, "2024-05-02T10:00:00Z"),
        ev.message("m-2", "hh-1147", ACCOUNT, "2024-05-02T10:00:05Z", role="assistant"),
        ev.conversation("hh-2210", ACCOUNT, "2024-08-20T15:00:00Z", title=TEAM_CHATS["hh-2210"]),
        ev.message("m-3", "hh-2210", ACCOUNT, "2024-08-20T15:00:00Z"),
        ev.account(ACCOUNT, "2024-10-16T00:00:00Z", plan="free"),
        ev.conversation("hh-3001", ACCOUNT, "2025-02-01T08:00:00Z", title="Birthday ideas"),
        ev.message("m-4", "hh-3001", ACCOUNT, "2025-02-01T08:00:00Z"),
        ev.message("m-5", "hh-3001", ACCOUNT, "2025-02-01T08:00:09Z", role="assistant"),
    ]


@pytest.fixture
def login(tmp_path: Path) -> Iterator[str]:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'data' / 'traingate.sqlite'}",
        key_file=tmp_path / "keys" / "keys.json",
    )
    with Traingate.open(settings) as tg:
        summary = tg.events.ingest([json.dumps(e) for e in history()])
        assert summary.rejected == 0, summary.errors
        link = tg.access.create_session(account_id=ACCOUNT).login_path
        tg.datasets.build(purpose="model_training", out=tmp_path / "built", format="jsonl")
    for url in serve(settings, tmp_path / "datasets"):
        yield url + link


def snapshot(tab: Page, name: str) -> None:
    shot(tab, name)
    shutil.copyfile(ARTIFACTS / f"{name}.png", Path("/tmp") / f"{name}.png")


def test_a_past_organization_consent_is_the_answer(login: str, page: Page) -> None:
    _past_organization_consent(page, login)


def _past_organization_consent(page: Page, login: str) -> None:
    page.goto(login)
    headline = page.locator("#answer-title")
    expect(headline).to_contain_text("Yes.")
    assert not headline.inner_text().startswith("No")
    assert headline.inner_text().startswith("Yes. 2 of your conversations are used")
    answer = page.locator("#answer")
    for cid, title in TEAM_CHATS.items():
        expect(answer).to_contain_text(f"“{title}” ({cid})")
    expect(answer).to_contain_text("organization_opt_in")
    expect(answer).to_contain_text("the Team plan of organization org-001")
    assert answer.get_attribute("data-used") == "hh-1147 hh-2210"
    row = page.locator('#purpose-table tr[data-purpose="model_training"]')
    for cid in TEAM_CHATS:
        expect(row).to_contain_text(cid)
    expect(row).not_to_contain_text("hh-3001")
    expect(row).to_contain_text("2 of yours")  # the build made now holds exactly those two
    for cid in TEAM_CHATS:
        item = page.locator(f'li[data-conversation="{cid}"]')
        expect(item).to_contain_text("Used now for Model training")
        expect(item).to_contain_text("In 1 dataset: Model training")
    expect(page.locator('li[data-conversation="hh-3001"]')).not_to_contain_text("Used now")
    switch = page.get_by_role("switch", name="Use my conversations to train models")
    expect(switch).to_have_attribute("aria-checked", "false")
    snapshot(page, "privacy-acct-0001")

    # the account's own setting on: the old conversations are still named, nothing claims
    # that conversations before today are unused
    switch.click()
    expect(page.locator(".notice.ok")).to_contain_text("Model training is now on")
    expect(switch).to_have_attribute("aria-checked", "true")
    expect(headline).to_contain_text("Yes. 2 of your conversations are used")
    assert "Conversations from before" not in answer.inner_text()
    for reason in answer.locator("ul.reasons li").all_inner_texts():
        if "not used" in reason:
            assert not any(title in reason for title in TEAM_CHATS.values()), reason
    for cid in TEAM_CHATS:
        expect(answer).to_contain_text(f"({cid})")
    snapshot(page, "privacy-acct-0001-on")


def test_the_console_lists_every_policy_in_force(tmp_path: Path, page: Page) -> None:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'data' / 'traingate.sqlite'}",
        key_file=tmp_path / "keys" / "keys.json",
        policy="consumer-2024,consumer-2025@2025-09-28T00:00:00Z",
    )
    with Traingate.open(settings) as tg:
        token = tg.access.create_token(role="analyst", name="ana").token
        policies = tg.policies.policies
    for url in serve(settings, tmp_path / "datasets"):
        _console_policies(page, url=url, token=token, policies=policies)


def _console_policies(page: Page, *, url: str, token: str, policies: tuple[Policy, ...]) -> None:
    page.goto(f"{url}/admin/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{url}/admin/policy")
    for policy in policies:
        article = page.locator(f"#policy-{policy.id}")
        expect(article).to_contain_text(policy.title)
        for basis in policy.bases:
            expect(article).to_contain_text(basis.text)
        for rule in policy.retention:
            expect(article).to_contain_text(rule.text)
        for reason in policy.reason_ids():
            expect(article).to_contain_text(policy.rules[reason].text)
    newest = page.locator(f"#policy-{policies[-1].id}")
    expect(newest).to_contain_text("exclude_modes")
    expect(newest).to_contain_text("incognito")
    expect(newest).to_contain_text("5 years")
    snapshot(page, "privacy-admin-policy")
