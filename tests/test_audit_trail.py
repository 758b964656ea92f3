"""The audit trail: every operation that changes or reveals data appends its entry, naming its
actor, in the transaction of what it records; `traingate audit verify|export`; the API's
audit routes; token use, counted cheaply. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import history, running_api
from tests.factories import Events, jsonl
from tests.support import run
from traingate._audit.actions import ACTIONS, cli_actor, subject_key
from traingate._audit.log import AuditEntry
from traingate._core.timeutil import parse_instant
from traingate._errors import StoreError
from traingate._facade import Traingate
from traingate._settings import Settings

T = Events.t


def _entries(tg: Traingate, action: str | None = None) -> list[AuditEntry]:
    return [e for e in tg.audit.log.entries() if action is None or e.action == action]


def _details(entry: AuditEntry) -> dict[str, Any]:
    details: dict[str, Any] = json.loads(entry.details)
    return details


def test_ingest_batches_and_consent_changes(tg: Traingate, ev: Events) -> None:
    events = history(ev)
    summary = tg.events.ingest(jsonl(events), actor="token:abc", batch_size=5)
    assert summary.rejected == 0
    batches = _entries(tg, "ingest.batch")
    assert [_details(e)["accepted"] for e in batches] == [5, 5, 2]  # one per transaction
    by_type: dict[str, int] = {}
    for entry in batches:
        for kind, n in _details(entry)["by_type"].items():
            by_type[kind] = by_type.get(kind, 0) + n
    assert by_type == {
        "account.updated": 3,
        "consent.updated": 2,
        "conversation.updated": 2,
        "message.created": 5,
    }
    consents = _entries(tg, "consent.change")
    assert [(_details(e)["scope"], _details(e)["granted"]) for e in consents] == [
        ("account", True),
        ("organization", True),
    ]
    first = _details(consents[0])
    assert first["subject_key"] == subject_key(tg.keys, scope="account", subject="a")
    assert {e.actor for e in _entries(tg)} == {"token:abc"}
    # the log names no account, organization or e-mail
    text = "\n".join(e.details for e in _entries(tg))
    for raw in ('"a"', '"o"', "example.com"):
        assert raw not in text
    # re-sending changes nothing and writes nothing
    again = tg.events.ingest(jsonl(events))
    assert again.duplicates == len(events)
    assert len(_entries(tg)) == len(batches) + len(consents)
    assert tg.audit.verify()["ok"]


def test_a_batch_that_fails_leaves_no_entry(tg: Traingate, ev: Events) -> None:
    class Broken:
        def put(self, **_: Any) -> str:
            raise StoreError("the vault is down")

    events = [*history(ev), ev.feedback("f1", "a", "c", "m2", T(5))]
    original = tg.vault
    tg.vault = Broken()  # type: ignore[assignment]
    try:
        with pytest.raises(StoreError):
            tg.events.ingest(jsonl(events))
    finally:
        tg.vault = original
    assert _entries(tg) == []
    assert tg.store.db.execute("SELECT COUNT(*) FROM events")[0][0] == 0


def test_vault_purge_build_tokens_and_sessions(tg: Traingate, ev: Events, tmp_path: Path) -> None:
    summary = tg.events.ingest(
        jsonl([*history(ev), ev.feedback("f1", "a", "c", "m2", T(5), comment="hi")])
    )
    receipt = summary.receipts[0][2]
    info, _ = tg.feedback.show(receipt, actor="session:s1")
    tg.feedback.delete(receipt, actor="session:s1")
    later = parse_instant("2040-01-01T00:00:00Z")
    counts = tg.retention.purge(as_of=later, actor="system")
    built = tg.datasets.build(
        purpose="model_training", out=tmp_path / "ds", as_of=later, format="jsonl", actor="cli:x"
    )
    token = tg.access.create_token(role="analyst", name="nightly", actor="cli:root")
    session = tg.access.create_session(account_id="a", actor=f"token:{token.token_id}")

    def one(action: str) -> tuple[str, dict[str, Any]]:
        [entry] = _entries(tg, action)
        return entry.actor, _details(entry)

    uses = [(e.actor, _details(e)) for e in _entries(tg, "vault.uses")]
    today = uses[0][1]["day"]
    assert uses == [
        ("session:s1", {"day": today, "reads": 1, "deletions": 0}),
        ("session:s1", {"day": today, "reads": 0, "deletions": 1}),
    ]  # without a server's tally, one count each; never the report (docs/audit.md)
    assert info.report_id not in json.dumps(uses)
    assert one("purge") == ("system", counts.to_dict())
    actor, build = one("dataset.build")
    manifest = (tmp_path / "ds" / "manifest.json").read_bytes()
    assert actor == "cli:x"
    assert build["build_id"] == built.build_id
    assert build["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert build["counts"] == built.manifest["counts"]
    assert (build["purpose"], build["as_of"]) == ("model_training", built.manifest["as_of"])
    assert one("token.create") == (
        "cli:root",
        {"token_id": token.token_id, "role": "analyst", "name": "nightly"},
    )
    actor, opened = one("session.create")
    assert actor == f"token:{token.token_id}"
    assert opened["session_id"] == session.session_id
    assert "account_key" not in opened  # nothing joins a session to its account (issue 19)
    text = "\n".join(e.details for e in _entries(tg))
    for secret in (receipt, token.token, session.token, receipt.split(".")[1]):
        assert secret not in text
    assert set(e.action for e in _entries(tg)) <= set(ACTIONS)
    assert tg.audit.verify()["ok"]


def test_export_filters_by_account(tg: Traingate, ev: Events) -> None:
    tg.events.ingest(jsonl(history(ev)))
    tg.events.record_consent(account_id="b", granted=True, actor="session:sb")
    mine = tg.audit.entries(accounts=["b"])
    assert [e.action for e in mine] == ["consent.change"]
    assert mine[0].actor == "session:sb"
    assert [e.action for e in tg.audit.entries(organizations=["o"])] == ["consent.change"]
    assert tg.audit.entries(accounts=["nobody"]) == []
    everything = tg.audit.entries()
    assert [e.seq for e in tg.audit.entries(after=2, limit=2)] == [3, 4]
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))


def test_cli_actor_names_the_os_user() -> None:
    assert cli_actor().startswith("cli:") and len(cli_actor()) > 4


def test_cli_audit_verify_and_export(tmp_path: Path, ev: Events) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(jsonl(history(ev))) + "\n")
    assert run(["ingest", str(events)], cwd=tmp_path).returncode == 0
    assert run(["token", "create", "--role", "analyst"], cwd=tmp_path).returncode == 0
    verified = run(["audit", "verify"], cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    summary = json.loads(verified.stdout)
    assert summary["ok"] and summary["entries"] == 4 and summary["problems"] == []
    assert summary["actions"] == {"consent.change": 2, "ingest.batch": 1, "token.create": 1}
    exported = run(["audit", "export"], cwd=tmp_path)
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3, 4]
    assert all(e["actor"].startswith("cli:") for e in lines)
    out = tmp_path / "audit.jsonl"
    assert (
        run(["audit", "export", "--out", str(out), "--account", "a"], cwd=tmp_path).returncode == 0
    )
    [only] = [json.loads(line) for line in out.read_text().splitlines()]
    assert only["action"] == "consent.change" and only["details"]["scope"] == "account"

    settings = Settings.resolve(
        db_url=f"sqlite:///{tmp_path / 'traingate-data' / 'traingate.sqlite'}",
        key_file=tmp_path / "traingate-data" / "keys.json",
    )
    with Traingate.open(settings) as tg:
        tg.store.db.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        tg.store.db.execute("DELETE FROM audit_log WHERE seq = 4")
    broken = run(["audit", "verify"], cwd=tmp_path)
    assert broken.returncode == 1
    assert not json.loads(broken.stdout)["ok"]
    assert "seq 2: edited" in broken.stderr and "seq 4: truncated" in broken.stderr


def test_api_audit_routes_and_actors(settings: Settings, tmp_path: Path, ev: Events) -> None:
    with running_api(settings, tmp_path / "datasets") as api:
        api.ingest(history(ev))
        user = api.as_user("a")
        done = api.client.put("/v1/accounts/a/consent", json={"granted": False}, headers=user)
        assert done.status_code == 200
        officer = api.as_role("privacy_officer")
        verified = api.client.get("/v1/audit/verify", headers=officer).json()
        assert verified["ok"] and verified["problems"] == []
        page = api.client.get("/v1/audit/entries", params={"limit": 3}, headers=officer).json()
        assert len(page["entries"]) == 3 and page["next_after"] == 3
        rest = api.client.get("/v1/audit/entries", params={"after": 3}, headers=officer).json()
        assert rest["entries"][0]["seq"] == 4
        assert api.client.get("/v1/audit/verify", headers=api.as_role("analyst")).status_code == 403
        with Traingate.open(settings) as tg:
            entries = list(tg.audit.log.entries())
        ingest_id = api.token("ingest").removeprefix("tgk_").split(".")[0]
        batch = next(e for e in entries if e.action == "ingest.batch")
        assert batch.actor == f"token:{ingest_id}"
        opened = next(e for e in entries if e.action == "session.create")
        assert opened.actor == f"token:{ingest_id}"
        session_id = _details(opened)["session_id"]
        change = [e for e in entries if e.action == "consent.change"][-1]
        assert change.actor == f"session:{session_id}"
        assert _details(change)["granted"] is False


def test_token_use_is_counted_cheaply(settings: Settings, tmp_path: Path, ev: Events) -> None:
    with running_api(settings, tmp_path / "datasets") as api:
        analyst = api.as_role("analyst")
        for _ in range(5):
            assert api.client.get("/v1/me", headers=analyst).status_code == 200
        assert api.client.get("/v1/datasets/job-x", headers=analyst).status_code == 404
        with Traingate.open(settings) as tg:
            uses = [_details(e) for e in _entries(tg, "token.use")]
        # within a window only the first use of each route is written at once
        analyst_id = api.token("analyst").removeprefix("tgk_").split(".")[0]
        mine = [u for u in uses if u["token_id"] == analyst_id]
        assert [(u["method"], u["route"], u["uses"]) for u in mine] == [
            ("GET", "/v1/me", 1),
            ("GET", "/v1/datasets/{dataset_id}", 1),
        ]
        assert all(u["role"] == "analyst" for u in mine)
    # shutting the app down writes the uses counted since
    with Traingate.open(settings) as tg:
        uses = [_details(e) for e in _entries(tg, "token.use")]
        assert tg.audit.verify()["ok"]
    me = [u for u in uses if u["token_id"] == analyst_id and u["route"] == "/v1/me"]
    assert sum(u["uses"] for u in me) == 5


def test_the_pages_name_their_callers(settings: Settings, tmp_path: Path, ev: Events) -> None:
    from traingate._web.session import csrf_token

    with running_api(settings, tmp_path / "datasets") as api:
        api.ingest(history(ev))
        link = api.session("a")
        assert api.client.get(f"/login/{link}", follow_redirects=False).status_code == 303
        cookie = api.client.cookies["traingate_session"]
        done = api.client.post(
            "/privacy/consent",
            data={"csrf": csrf_token(cookie), "granted": "false"},
            follow_redirects=False,
        )
        assert done.status_code == 303
        api.client.cookies.clear()
        with Traingate.open(settings) as tg:
            entries = list(tg.audit.log.entries())
    link_id = link.removeprefix("tgs_").split(".")[0]
    cookie_id = cookie.removeprefix("tgs_").split(".")[0]
    exchanged = [e for e in entries if e.action == "session.create"][-1]
    assert exchanged.actor == f"session:{link_id}"
    assert _details(exchanged)["session_id"] == cookie_id
    change = [e for e in entries if e.action == "consent.change"][-1]
    assert change.actor == f"session:{cookie_id}" and _details(change)["granted"] is False
