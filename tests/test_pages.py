"""The pages without a browser: FastAPI's TestClient against the app factory (SQLite), and the
privacy answer's words for every state of an account (both backends)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.factories import Events
from tests.support import ALICE, BOB, DINNER, LISBON, csrf_of, world
from traingate._facade import Traingate
from traingate._server import create_app
from traingate._settings import Settings
from traingate._web.answer import answer_for
from traingate._web.words import policy_rules


class Site:
    """The app over a fresh SQLite store holding ``world()`` and Bob's one conversation."""

    def __init__(self, tmp_path: Path) -> None:
        self.settings = Settings(
            db_url=f"sqlite:///{tmp_path / 'data' / 'traingate.sqlite'}",
            key_file=tmp_path / "keys.json",
        )
        ev = Events(prefix="bob")
        bob = [
            ev.account(BOB, ev.t(0)),
            ev.message("m-b1", "conv-bob", BOB, ev.t(1), "user", "Bob's secret plan"),
        ]
        with self.open() as tg:
            summary = tg.events.ingest([json.dumps(e) for e in [*world(), *bob]])
            assert summary.rejected == 0, summary.errors
            self.tokens = {
                role: tg.access.create_token(role=role).token
                for role in ("analyst", "privacy_officer", "ingest")
            }
        self.app = create_app(settings=self.settings, datasets_dir=tmp_path / "datasets")

    def open(self) -> Traingate:
        return Traingate.open(self.settings)

    def login_path(self, account_id: str = ALICE) -> str:
        with self.open() as tg:
            return tg.access.create_session(account_id=account_id).login_path


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(site.app) as client:
        yield client


def signed_in(client: TestClient, site: Site) -> str:
    """Sign Alice in; return the CSRF token of her privacy center."""
    response = client.get(site.login_path())
    assert response.status_code == 200
    return csrf_of(response.text)


def answer_title(html: str) -> str:
    match = re.search(r'<h2 id="answer-title">(.*?)</h2>', html)
    assert match
    return match.group(1)


# -- signing in ------------------------------------------------------------------------------


def test_the_login_link_sets_an_httponly_lax_cookie_and_works_once(
    client: TestClient, site: Site
) -> None:
    link = site.login_path()
    response = client.get(link, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/privacy"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("traingate_session=tgs_")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert link.removeprefix("/login/") not in cookie  # exchanged for a fresh session
    assert client.get("/privacy").status_code == 200

    again = TestClient(site.app).get(link, follow_redirects=False)
    assert again.status_code == 401
    assert again.headers["content-type"].startswith("text/html")
    assert "not valid" in again.text


def test_without_a_session_the_pages_say_how_to_sign_in(client: TestClient) -> None:
    for path in ("/privacy", f"/conversations/{LISBON}"):
        response = client.get(path)
        assert response.status_code == 401
        assert "login link" in response.text
    assert client.get("/", follow_redirects=False).headers["location"] == "/privacy"


def test_signing_out_revokes_the_session(client: TestClient, site: Site) -> None:
    csrf = signed_in(client, site)
    session = client.cookies["traingate_session"]
    response = client.post("/logout", data={"csrf": csrf})
    assert response.status_code == 200 and "signed out" in response.text
    with site.open() as tg, pytest.raises(Exception, match="not valid"):
        tg.access.authenticate(session)


def test_pages_carry_security_headers_and_stay_out_of_the_openapi_document(
    client: TestClient, site: Site
) -> None:
    signed_in(client, site)
    response = client.get("/privacy")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in response.text  # no inline script: the CSP forbids it
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if not p.startswith("/v1/")]
    css = client.get("/static/traingate.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/static/../app.py").status_code == 404


# -- the privacy center ------------------------------------------------------------------------


def test_the_toggle_writes_a_consent_event_and_the_answer_changes(
    client: TestClient, site: Site
) -> None:
    csrf = signed_in(client, site)
    page = client.get("/privacy").text
    assert (
        answer_title(page)
        == "Yes. Your conversations since 1 January 2024 are used to train our models."
    )
    assert 'aria-checked="true"' in page

    response = client.post("/privacy/consent", data={"csrf": csrf, "granted": "false"})
    assert response.status_code == 200
    assert "Model training is now off" in response.text
    assert answer_title(response.text).startswith("No. Your conversations are not used")
    for rule_id in ("default_deny", "no_consent", "consent_revoked", "feedback"):
        assert f"<span>{rule_id}</span>" in response.text
    with site.open() as tg:
        report = tg.privacy.answer(account_id=ALICE)
    assert not report.consent.granted and report.consent.source == "privacy_settings"

    bad = client.post("/privacy/consent", data={"csrf": csrf, "granted": "maybe"})
    assert bad.status_code == 422 and "Granted must be true or false" in bad.text


def test_forms_need_the_csrf_token_and_our_origin(client: TestClient, site: Site) -> None:
    csrf = signed_in(client, site)
    missing = client.post("/privacy/consent", data={"granted": "false"})
    assert missing.status_code == 403 and "reload the page" in missing.text
    foreign = client.post(
        "/privacy/consent",
        data={"csrf": csrf, "granted": "false"},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403 and "another site" in foreign.text
    wrong_type = client.post(
        "/privacy/consent", content=b'{"granted": false}', headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 422
    with site.open() as tg:
        assert tg.privacy.answer(account_id=ALICE).consent.granted  # nothing was written


def test_another_accounts_conversation_is_not_found(client: TestClient, site: Site) -> None:
    csrf = signed_in(client, site)
    assert client.get("/conversations/conv-bob").status_code == 404
    assert client.get("/conversations/no-such").status_code == 404
    response = client.post("/conversations/conv-bob/delete", data={"csrf": csrf})
    assert response.status_code == 404
    assert "Bob's secret plan" not in client.get("/privacy").text


def test_deleting_a_conversation_writes_the_event(client: TestClient, site: Site) -> None:
    csrf = signed_in(client, site)
    response = client.post(f"/conversations/{DINNER}/delete", data={"csrf": csrf})
    assert response.status_code == 200 and "The conversation was deleted" in response.text
    with site.open() as tg:
        dinner = next(
            c
            for c in tg.privacy.answer(account_id=ALICE).conversations
            if c.title == "Weeknight dinner ideas"
        )
    assert dinner.deleted_at is not None
    page = client.get(f"/conversations/{DINNER}").text
    assert "You deleted this conversation" in page and "data-rate" not in page


def test_the_conversation_offers_thumbs_on_assistant_messages_only(
    client: TestClient, site: Site
) -> None:
    signed_in(client, site)
    page = client.get(f"/conversations/{LISBON}").text
    assert re.findall(r'data-rate="down" data-message="([^"]+)"', page) == ["m-l2", "m-l4"]
    assert "<dialog" in page and "The entire conversation" in page
    assert "until " in page and "10 years" in page
    assert "google drive, an integration" in page.lower()


def test_feedback_answers_the_receipt_as_json_or_as_a_page(client: TestClient, site: Site) -> None:
    csrf = signed_in(client, site)
    form = {
        "csrf": csrf,
        "message_id": "m-l2",
        "rating": "down",
        "comment": "  Tram 28 is slow.  ",
        "categories": ["not_factual", "unhelpful"],
    }
    response = client.post(
        f"/conversations/{LISBON}/feedback", data=form, headers={"Accept": "application/json"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["rating"] == "down"
    assert body["report"]["expires_at"][:4] == str(int(body["report"]["submitted_at"][:4]) + 10)
    with site.open() as tg:
        _, snapshot = tg.feedback.show(body["receipt"])
    assert snapshot.comment == "Tram 28 is slow."
    assert snapshot.categories == ("not_factual", "unhelpful")
    assert snapshot.rated_message_index == 1
    # the receipt API reads it with the session cookie, as the privacy center's script does
    shown = client.get(f"/v1/feedback/{body['receipt']}")
    assert shown.status_code == 200 and shown.json()["snapshot"]["rating"] == "down"

    page = client.post(
        f"/conversations/{LISBON}/feedback", data={**form, "rating": "up", "categories": []}
    )
    assert page.status_code == 201 and 'id="stored-receipt"' in page.text

    wrong = client.post(
        f"/conversations/{LISBON}/feedback",
        data={**form, "rating": "up"},  # thumbs-down categories on a thumbs up
        headers={"Accept": "application/json"},
    )
    assert wrong.status_code == 422
    assert "unknown categories" in wrong.json()["error"]["message"]
    refused = client.post(
        f"/conversations/{LISBON}/feedback",
        data={**form, "message_id": "m-r2"},  # a message of another conversation
        headers={"Accept": "application/json"},
    )
    assert refused.status_code == 422 and "error" in refused.json()


# -- the admin console ---------------------------------------------------------------------------


def admin(client: TestClient, token: str) -> str:
    """Sign in to the console; return the CSRF token of its first page."""
    response = client.post("/admin/login", data={"token": token, "next": "/admin"})
    assert response.status_code == 200, response.text
    return csrf_of(response.text)


def test_the_console_admits_analysts_and_privacy_officers_only(
    client: TestClient, site: Site
) -> None:
    login = client.get("/admin", follow_redirects=False)
    assert login.headers["location"] == "/admin/login?next=/admin"
    for token, message in (
        ("tgk_nothing", "not valid"),
        (site.tokens["ingest"], "analyst or privacy_officer"),
    ):
        response = client.post("/admin/login", data={"token": token})
        assert response.status_code == 401 and message in response.text
    session = site.login_path().removeprefix("/login/")
    assert client.post("/admin/login", data={"token": session}).status_code == 401

    admin(client, site.tokens["analyst"])
    assert client.get("/admin/explain").status_code == 403
    assert client.get("/admin/retention").status_code == 403
    cookie = next(c for c in client.cookies.jar if c.name == "traingate_admin")
    assert cookie.path == "/admin"
    # the console's token is never sent to the API or the end-user pages
    assert client.get("/v1/datasets").status_code == 401


def test_an_analyst_builds_and_verifies_from_the_console(client: TestClient, site: Site) -> None:
    csrf = admin(client, site.tokens["analyst"])
    bad = client.post(
        "/admin/builds",
        data={"csrf": csrf, "purpose": "model_training", "as_of": "yesterday", "format": "jsonl"},
    )
    assert bad.status_code == 422 and "As-of: " in bad.text
    started = client.post(
        "/admin/builds",
        data={"csrf": csrf, "purpose": "model_training", "as_of": "", "format": "jsonl"},
        follow_redirects=False,
    )
    assert started.status_code == 303
    job = started.headers["location"]
    deadline = time.monotonic() + 60
    while (state := client.get(f"{job}/status").json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert state["status"] == "succeeded", state
    page = client.get(job).text
    assert 'id="manifest"' in page and "opt_in" in page
    verification = client.get(f"{job}/verify").json()
    assert verification == {**verification, "ok": True, "problems": []}
    listed = client.get("/admin/builds").text
    assert state["build_id"] in listed


def test_the_explain_page_names_the_rules_of_the_cli(client: TestClient, site: Site) -> None:
    admin(client, site.tokens["privacy_officer"])
    response = client.get(
        "/admin/explain",
        params={
            "conversation_id": LISBON,
            "purpose": "safety_review",
            "as_of": "2024-06-01T00:00:00Z",
        },
    )
    with site.open() as tg:
        expected = tg.privacy.explain(conversation_id=LISBON, purpose="safety_review", as_of=None)
    rule_ids = {r["id"] for m in expected.to_dict()["messages"] for r in m["rules"]}
    assert rule_ids == {"no_active_flag"}
    assert response.status_code == 200
    assert response.text.count("<span>no_active_flag</span>") == 4
    assert "0 of 4 eligible" in response.text
    missing = client.get("/admin/explain", params={"conversation_id": "nope"})
    assert missing.status_code == 422 and "nope" in missing.text


def test_the_policy_page_lists_every_rule(client: TestClient, site: Site) -> None:
    admin(client, site.tokens["analyst"])
    page = client.get("/admin/policy").text
    with site.open() as tg:
        rules = policy_rules(tg.policy)
        purposes = list(tg.policy.purposes)
    for rule_id, ref in rules.items():
        assert f"<span>{rule_id}</span>" in page
        assert ref.text.replace("'", "&#39;") in page
    for purpose in purposes:
        assert f"<code>{purpose}</code>" in page


def test_the_retention_page_shows_pending_deletions_and_the_last_purge(
    client: TestClient, site: Site
) -> None:
    with site.open() as tg:
        tg.events.delete_conversation(conversation_id=DINNER, account_id=ALICE)
    csrf = admin(client, site.tokens["privacy_officer"])
    page = client.get("/admin/retention").text
    assert DINNER in page and "No purge is recorded" in page
    response = client.post("/admin/purge", data={"csrf": csrf})
    assert response.status_code == 200 and "The purge ran" in response.text
    assert "token:" in response.text and "Conversations purged" in response.text


# -- the answer, for every state of an account (both backends) --------------------------------


def _answer(tg: Traingate, account_id: str) -> tuple[str, str, set[str]]:
    result = answer_for(tg.privacy.answer(account_id=account_id), tg.policy)
    return result.tone, result.headline, {r.id for r in result.rules}


@pytest.mark.store
def test_the_answer_for_each_state_of_an_account(tg: Traingate, ev: Events) -> None:
    t = ev.t
    events = [
        ev.account("never", t(0)),
        ev.account("opted", t(0), plan="pro"),
        ev.consent("opted", t(5), granted=True, source="trusted_tester_program"),
        ev.account("revoked", t(0)),
        ev.consent("revoked", t(1), granted=True),
        ev.consent("revoked", t(2), granted=False),
        ev.account("team", t(0), plan="team", organization_id="org-1"),
        ev.consent("org-1", t(3), granted=True, scope="organization"),
        ev.account("lonely", t(0), plan="enterprise", organization_id="org-2"),
        ev.consent("lonely", t(1), granted=True),  # account scope: no effect on this plan
        ev.account("gone", t(0)),
        ev.message("m-g", "c-g", "gone", t(1)),
        ev.flag("f-1", "c-g", t(2)),
        ev.account_deleted("gone", t(3)),
        ev.message("m-x", "c-x", "ghost", t(1)),  # no account.updated: plan unknown
    ]
    assert tg.events.ingest([json.dumps(e) for e in events]).rejected == 0

    tone, headline, rules = _answer(tg, "never")
    assert tone == "no" and "except feedback you send" in headline
    assert {"default_deny", "no_consent", "feedback"} <= rules and "consent_revoked" not in rules

    tone, headline, rules = _answer(tg, "opted")
    assert tone == "yes" and "since 6 January 2024" in headline and "opt_in" in rules
    assert (
        "the Trusted Tester program"
        in answer_for(tg.privacy.answer(account_id="opted"), tg.policy).summary
    )

    tone, _, rules = _answer(tg, "revoked")
    assert tone == "no" and "consent_revoked" in rules

    tone, headline, rules = _answer(tg, "team")
    assert tone == "org" and "organization opted in" in headline.lower()
    assert {"organization_opt_in", "account_scope_consent_ignored"} <= rules

    tone, headline, rules = _answer(tg, "lonely")
    assert tone == "org" and "has not opted in" in headline
    assert "account_scope_consent_ignored" in rules

    tone, _, rules = _answer(tg, "gone")
    assert tone == "no" and "account_deleted" in rules and "usage_policy_flag" not in rules

    tone, _, rules = _answer(tg, "ghost")
    assert tone == "no" and rules == {"unknown_account"}


@pytest.mark.store
def test_retention_status_counts_expiries_pending_deletions_and_the_last_purge(
    tg: Traingate, ev: Events
) -> None:
    from traingate._core.timeutil import parse_instant

    t = ev.t
    events = [
        ev.account("a", t(0)),
        ev.message("m-1", "c-1", "a", t(1)),
        ev.message("m-2", "c-1", "a", t(1, 1), role="assistant"),
        ev.feedback("fb-1", "a", "c-1", "m-2", t(2)),
        ev.message("m-3", "c-2", "a", t(3)),
        ev.conversation_deleted("c-2", "a", t(4)),
    ]
    assert tg.events.ingest([json.dumps(e) for e in events]).rejected == 0
    as_of = parse_instant(t(10))
    status = tg.retention.status(as_of=as_of)
    assert status.reports_stored == 1
    assert [(e.month, e.reports, e.expired) for e in status.expiries] == [("2034-01", 1, False)]
    assert [(p.kind, p.subject, p.messages) for p in status.pending] == [("conversation", "c-2", 1)]
    assert not status.pending[0].overdue(as_of)
    assert status.last_purge is None

    later = parse_instant("2034-01-03T12:00:01Z")  # the report expired, c-2 is long due
    assert tg.retention.status(as_of=later).expiries[0].expired
    counts = tg.retention.purge(actor="test", as_of=later)
    assert counts.expired_reports == 1 and counts.messages_purged == 1
    after = tg.retention.status(as_of=later)
    assert after.reports_stored == 0 and after.pending == ()
    assert after.last_purge is not None and after.last_purge.actor == "test"
    assert after.last_purge.details["expired_reports"] == 1
    assert after.to_dict()["last_purge"]["details"]["messages_purged"] == 1
