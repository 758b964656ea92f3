"""The HTTP API endpoint by endpoint, on SQLite and PostgreSQL (docs/api.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import Api, history, running_api
from tests.factories import Events, jsonl
from tests.support import run
from traingate._audit.log import AuditLog
from traingate._core.timeutil import parse_instant
from traingate._facade import Traingate
from traingate._facade.privacy import Privacy
from traingate._settings import Settings

T = Events.t


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[Api]:
    """The API over an empty store (conftest's ``api`` holds a history)."""
    with running_api(settings, tmp_path / "datasets") as running:
        yield running


def _mixed(e: Events) -> list[dict[str, Any]]:
    """Valid events with rejections in between: unknown type, bad time, foreign conversation,
    a conflicting event_id, and an exact duplicate."""
    events = history(e)
    bad_time = {**e.account("z", T(0)), "at": "2024-01-01"}
    foreign = e.message("m9", "c", "b", T(4))
    conflict = {**events[0], "email": "changed@example.com"}
    return [
        *events[:3],
        {"type": "nope", "event_id": "x1", "at": T(0)},
        bad_time,
        *events[3:],
        foreign,
        conflict,
        events[1],
    ]


def _summary(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in ("accepted", "duplicates", "rejected", "errors")}


def test_array_and_ndjson_bodies_give_the_summary_of_the_cli(
    api: Api, tmp_path: Path, ev: Events
) -> None:
    events = _mixed(ev)
    ndjson = "\n".join(jsonl(events)) + "\n"
    cli = run(["ingest", "-"], cwd=tmp_path, stdin=ndjson)
    assert cli.returncode == 1, cli.stderr
    expected = json.loads(cli.stdout)
    assert expected["rejected"] == 4 and expected["duplicates"] == 1

    by_ndjson = api.client.post(
        "/v1/events",
        content=ndjson.encode(),
        headers={**api.as_role("ingest"), "Content-Type": "application/x-ndjson"},
    )
    assert by_ndjson.status_code == 422
    assert _summary(by_ndjson.json()) == expected
    assert by_ndjson.json()["error"]["code"] == "events_rejected"

    other = Settings(db_url=f"sqlite:///{tmp_path / 'other.sqlite'}", key_file=tmp_path / "k2")
    with running_api(other, tmp_path / "ds2") as second:
        by_array = second.client.post("/v1/events", json=events, headers=second.as_role("ingest"))
    assert by_array.status_code == 422
    assert _summary(by_array.json()) == expected


def test_ndjson_counts_blank_lines_like_the_cli(api: Api, tmp_path: Path, ev: Events) -> None:
    lines = jsonl(history(ev))
    lines.insert(2, "")
    lines.insert(4, '{"type": "account.updated"')
    text = "\r\n".join(lines)
    cli = run(["ingest", "-"], cwd=tmp_path, stdin=text)
    done = api.client.post(
        "/v1/events",
        content=text.encode(),
        headers={**api.as_role("ingest"), "Content-Type": "application/x-ndjson; charset=utf-8"},
    )
    assert done.status_code == 422
    assert _summary(done.json()) == json.loads(cli.stdout)
    assert done.json()["errors"][0]["line"] == 5


def test_clean_ingest_is_200_and_resending_is_all_duplicates(api: Api, ev: Events) -> None:
    events = history(ev)
    first = api.ingest(events)
    assert first == {"accepted": len(events), "duplicates": 0, "rejected": 0, "errors": []}
    assert api.ingest(events)["duplicates"] == len(events)
    empty = api.client.post("/v1/events", json=[], headers=api.as_role("ingest"))
    assert empty.json() == {"accepted": 0, "duplicates": 0, "rejected": 0, "errors": []}


@pytest.mark.parametrize("kind", ["array", "ndjson"])
def test_more_than_10000_events_is_413_and_nothing_is_kept(api: Api, kind: str) -> None:
    e = Events()
    events = [e.account(f"acct{i}", T(0)) for i in range(10_001)]
    headers = api.as_role("ingest")
    if kind == "array":
        done = api.client.post("/v1/events", json=events, headers=headers)
    else:
        body = "\n".join(jsonl(events)).encode()
        headers["Content-Type"] = "application/x-ndjson"
        done = api.client.post("/v1/events", content=body, headers=headers)
    assert done.status_code == 413
    assert done.json()["error"]["code"] == "too_many_events"
    assert "10000" in done.json()["error"]["message"]
    assert "10001" in done.json()["error"]["message"]
    # exactly the limit is accepted (and the 413 kept nothing: all are new here)
    limit = api.client.post("/v1/events", json=events[:10_000], headers=api.as_role("ingest"))
    assert limit.status_code == 200, limit.text
    assert limit.json()["accepted"] == 10_000


def test_bad_bodies_have_json_errors(api: Api) -> None:
    headers = api.as_role("ingest")
    cases = [
        ({"content": b"{not json", "ct": "application/json"}, 400, "invalid_json"),
        ({"content": b'{"type": "x"}', "ct": "application/json"}, 422, "invalid_body"),
        ({"content": b"\xff\xfe", "ct": "application/x-ndjson"}, 422, "events_rejected"),
        ({"content": b"a,b", "ct": "text/csv"}, 415, "unsupported_media_type"),
    ]
    for case, status, code in cases:
        done = api.client.post(
            "/v1/events", content=case["content"], headers={**headers, "Content-Type": case["ct"]}
        )
        assert done.status_code == status, done.text
        assert done.json()["error"]["code"] == code


def test_events_with_receipts_then_feedback_by_receipt(api: Api, ev: Events) -> None:
    events = [*history(ev), ev.feedback("f1", "a", "c", "m2", T(4), comment="mail a@example.com")]
    done = api.client.post("/v1/events?receipts=true", json=events, headers=api.as_role("ingest"))
    assert done.status_code == 200
    [entry] = done.json()["receipts"]
    assert (entry["line"], entry["event_id"]) == (len(events), events[-1]["event_id"])
    shown = api.client.get(f"/v1/feedback/{entry['receipt']}", headers=api.as_user("a"))
    assert shown.status_code == 200
    assert shown.json()["snapshot"]["comment"] == "mail [email]"
    assert (
        "receipts"
        not in api.client.post("/v1/events", json=events, headers=api.as_role("ingest")).json()
    )


def test_feedback_submit_show_delete(api: Api, ev: Events) -> None:
    api.ingest(history(ev))
    report = ev.feedback(
        "f1", "a", "c", "m2", T(4), rating="down", comment="wrong", categories=["x"]
    )
    user = api.as_user("a")
    chosen = {k: v for k, v in report.items() if k not in ("event_id", "feedback_id", "at")}
    done = api.client.post("/v1/feedback", json=chosen, headers=user)  # the server dates it
    assert done.status_code == 201, done.text
    receipt = done.json()["receipt"]
    submitted, expires = done.json()["report"]["submitted_at"], done.json()["report"]["expires_at"]
    assert int(expires[:4]) == int(submitted[:4]) + 10 and expires[4:] == submitted[4:]
    backend = api.client.post("/v1/feedback", json=report, headers=api.as_role("ingest"))
    assert backend.status_code == 201, backend.text
    assert backend.json()["report"]["expires_at"] == "2034-01-05T12:00:00Z"

    shown = api.client.get(f"/v1/feedback/{receipt}", headers=user)
    assert shown.status_code == 200
    snapshot = shown.json()["snapshot"]
    assert [m["content"] for m in snapshot["messages"]] == ["write to me at [email]", "sure"]
    assert snapshot["rated_message_index"] == 1
    assert "a@example.com" not in shown.text and '"c"' not in shown.text

    again = api.client.post("/v1/feedback", json=report, headers=api.as_role("ingest"))
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "duplicate_feedback"

    deleted = api.client.delete(f"/v1/feedback/{receipt}", headers=user)
    assert deleted.json() == {"deleted": True, "report_id": receipt.split(".")[0]}
    for method in ("GET", "DELETE"):
        gone = api.client.request(method, f"/v1/feedback/{receipt}", headers=user)
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "receipt_not_found"


def test_feedback_rejections(api: Api, ev: Events) -> None:
    api.ingest(history(ev))
    headers = api.as_role("ingest")
    unknown_message = ev.feedback("f2", "a", "c", "nope", T(4))
    done = api.client.post("/v1/feedback", json=unknown_message, headers=headers)
    assert done.status_code == 422
    assert done.json()["rejected"] == 1 and "message_id" in done.json()["errors"][0]["error"]
    assert done.json()["error"]["code"] == "events_rejected"
    not_feedback = api.client.post("/v1/feedback", json=ev.account("q", T(0)), headers=headers)
    assert not_feedback.status_code == 422
    assert not_feedback.json()["error"]["code"] == "invalid_body"
    text = api.client.post(
        "/v1/feedback", content=b"x", headers={**headers, "Content-Type": "text/plain"}
    )
    assert text.status_code == 415
    forged = api.client.post(
        "/v1/feedback", json=ev.feedback("f3", "b", "d", "n2", T(4)), headers=api.as_user("a")
    )
    assert forged.status_code == 403


def test_explain_matches_the_library(api: Api, settings: Settings, ev: Events) -> None:
    api.ingest(history(ev))
    headers = api.as_role("privacy_officer")
    done = api.client.get(
        "/v1/conversations/c/explain",
        params={"purpose": "model_training", "as_of": T(9)},
        headers=headers,
    )
    assert done.status_code == 200
    with Traingate.open(settings) as tg:
        expected = tg.privacy.explain(
            conversation_id="c", purpose="model_training", as_of=parse_instant(T(9))
        )
    assert done.json() == expected.to_dict()
    assert [m["basis"] for m in done.json()["messages"]] == ["opt_in", "opt_in"]

    def error(params: dict[str, str], conversation: str = "c") -> tuple[int, str]:
        r = api.client.get(
            f"/v1/conversations/{conversation}/explain", params=params, headers=headers
        )
        return r.status_code, r.json()["error"]["code"]

    assert error({"purpose": "ads"}) == (422, "invalid_policy_value")
    assert error({"purpose": "research", "as_of": "2024-01-01"}) == (422, "invalid_time")
    assert error({}) == (422, "invalid_request")
    assert error({"purpose": "research"}, conversation="nope") == (404, "not_found")


def test_privacy_answers(api: Api, ev: Events) -> None:
    api.ingest(history(ev))
    officer = api.as_role("privacy_officer")

    def privacy(account: str, **params: str) -> dict[str, Any]:
        done = api.client.get(f"/v1/accounts/{account}/privacy", params=params, headers=officer)
        assert done.status_code == 200, done.text
        body: dict[str, Any] = done.json()
        return body

    a = privacy("a")
    assert a["purposes"]["model_training"] == {
        "used": True,
        "bases": ["opt_in"],
        "conversations": ["c"],
    }
    assert (a["plan"], a["plan_class"]) == ("free", "consumer")
    assert (a["consent"]["since"], a["consent"]["source"]) == (T(1), "privacy_settings")
    assert a["organization_consent"] is None
    assert [(c["conversation_id"], c["title"], c["messages"]) for c in a["conversations"]] == [
        ("c", "Trip plans", 2)
    ]
    bases = {b["id"]: (b["applies"], b["in_effect"]) for b in a["bases"]}
    assert bases["opt_in"] == (True, True)
    assert bases["organization_opt_in"] == (False, False)
    assert bases["feedback"] == (True, True)

    assert privacy("a", as_of=T(0))["purposes"]["model_training"]["used"] is False
    assert privacy("b")["purposes"]["model_training"]["used"] is False
    t = privacy("t")
    assert t["purposes"]["model_training"] == {
        "used": True,
        "bases": ["organization_opt_in"],
        "conversations": ["x"],
    }
    assert t["organization_id"] == "o"
    assert t["organization_consent"]["source"] == "development_partner_program"
    assert {b["id"]: b["applies"] for b in t["bases"]}["opt_in"] is False

    unknown = api.client.get("/v1/accounts/nobody/privacy", headers=officer)
    assert unknown.status_code == 404


def test_privacy_counts_conversations_per_build(
    api: Api, settings: Settings, tmp_path: Path, ev: Events
) -> None:
    api.ingest(history(ev))
    with Traingate.open(settings) as tg:
        result = tg.datasets.build(
            purpose="model_training", out=tmp_path / "b1", as_of=parse_instant(T(9))
        )
    body = api.client.get("/v1/accounts/a/privacy", headers=api.as_user("a")).json()
    [entry] = body["builds"]["model_training"]
    assert (entry["build_id"], entry["conversations"], entry["as_of"]) == (
        result.build_id,
        1,
        T(9),
    )
    assert body["conversations"][0]["builds"] == {"model_training": [result.build_id]}
    assert api.client.get("/v1/accounts/b/privacy", headers=api.as_user("b")).json()["builds"] == {}


def test_consent_toggle_writes_a_consent_event(api: Api, ev: Events) -> None:
    api.ingest(history(ev))
    user = api.as_user("a")
    off = api.client.put("/v1/accounts/a/consent", json={"granted": False}, headers=user)
    assert off.status_code == 200, off.text
    assert off.json()["purposes"]["model_training"]["used"] is False
    revoked_at = off.json()["consent"]["since"]
    assert off.json()["consent"]["history"][-1] == {
        "at": revoked_at,
        "granted": False,
        "source": "privacy_settings",
    }
    explained = api.client.get(
        "/v1/conversations/c/explain", params={"purpose": "model_training"}, headers=user
    ).json()
    assert {m["reasons"][0] for m in explained["messages"]} == {"consent_revoked"}

    on = api.client.put("/v1/accounts/a/consent", json={"granted": True}, headers=user)
    assert on.json()["consent"]["granted"] is True
    assert on.json()["purposes"]["model_training"]["used"] is False  # revoked stays revoked
    assert on.json()["consent"]["since"] > revoked_at  # a new grant covers new messages only
    bad = api.client.put("/v1/accounts/a/consent", json={"granted": "yes"}, headers=user)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"


def test_user_reads_and_deletes_own_conversation(api: Api, ev: Events) -> None:
    api.ingest(history(ev))
    user = api.as_user("a")
    read = api.client.get("/v1/conversations/c", headers=user)
    assert read.status_code == 200
    assert read.json()["title"] == "Trip plans"
    assert [m["message_id"] for m in read.json()["messages"]] == ["m1", "m2"]

    done = api.client.delete("/v1/conversations/c", headers=user)
    assert done.status_code == 200 and done.json()["deleted"] is True
    explained = api.client.get(
        "/v1/conversations/c/explain", params={"purpose": "model_training"}, headers=user
    ).json()
    assert {m["reasons"][0] for m in explained["messages"]} == {"conversation_deleted"}
    privacy = api.client.get("/v1/accounts/a/privacy", headers=user).json()
    assert privacy["conversations"][0]["deleted_at"] == done.json()["deleted_at"]


def test_purge(api: Api, ev: Events) -> None:
    api.ingest([*history(ev), ev.conversation_deleted("d", "b", T(5))])
    officer = api.as_role("privacy_officer")
    done = api.client.post("/v1/purge", json={"as_of": T(100)}, headers=officer)
    assert done.status_code == 200, done.text
    assert done.json()["as_of"] == T(100)
    assert (done.json()["conversations_purged"], done.json()["messages_purged"]) == (1, 2)
    now = api.client.post("/v1/purge", headers=officer)
    assert now.status_code == 200 and now.json()["conversations_purged"] == 0
    bad = api.client.post("/v1/purge", json={"as_of": "yesterday"}, headers=officer)
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_time")
    with Traingate.open(api.settings) as tg:
        entries = [e for e in AuditLog(tg.store.db, keys=tg.keys).entries() if e.action == "purge"]
    assert len(entries) == 2
    officer_id = api.token("privacy_officer").removeprefix("tgk_").split(".")[0]
    assert entries[0].actor == f"token:{officer_id}"


def test_framework_errors_are_json(api: Api) -> None:
    missing = api.client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": "not_found",
        "message": "no such resource: GET /v1/nothing",
    }
    wrong = api.client.patch("/v1/events")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    invalid = api.client.post("/v1/sessions", json={"nope": 1}, headers=api.as_role("ingest"))
    assert invalid.status_code == 422
    assert "account_id" in invalid.json()["error"]["message"]


def test_openapi_and_docs_are_served(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert "/v1/events" in spec["paths"] and "FeedbackSubmitted" in spec["components"]["schemas"]
    assert api.client.get("/docs").status_code == 200


def test_concurrent_requests_are_safe(api: Api, ev: Events) -> None:
    from concurrent.futures import ThreadPoolExecutor

    api.ingest(history(ev))
    ingest, officer = api.as_role("ingest"), api.as_role("privacy_officer")
    batches = [
        [
            ev.account(f"p{i}", T(0)),
            ev.conversation(f"pc{i}", f"p{i}", T(1), incognito=i % 2 == 0),
            ev.message(f"pm{i}", f"pc{i}", f"p{i}", T(2)),
        ]
        for i in range(16)
    ]

    def work(i: int) -> tuple[int, int]:
        posted = api.client.post("/v1/events", json=batches[i], headers=ingest)
        read = api.client.get("/v1/accounts/a/privacy", headers=officer)
        return posted.status_code, read.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(work, range(16))) == {(200, 200)}
    for i in range(16):
        body = api.client.get(f"/v1/accounts/p{i}/privacy", headers=officer).json()
        [conversation] = body["conversations"]
        assert (conversation["conversation_id"], conversation["messages"]) == (f"pc{i}", 1)
        assert conversation["incognito"] is (i % 2 == 0)


def test_store_failures_are_503_without_details(
    api: Api, ev: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    from traingate._errors import StoreError

    def broken(self: Privacy, **kwargs: Any) -> Any:
        raise StoreError("SQLite /secret/path.sqlite: disk I/O error")

    monkeypatch.setattr(Privacy, "answer", broken)
    done = api.client.get("/v1/accounts/a/privacy", headers=api.as_role("privacy_officer"))
    assert done.status_code == 503
    assert done.json()["error"] == {
        "code": "store_unavailable",
        "message": "the store is unavailable; retry",
    }
