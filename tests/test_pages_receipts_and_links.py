"""Issue 17, point 5, through FastAPI's TestClient: the receipt warnings under a policy whose
feedback basis sets no retention limit (the report then stays until it is deleted), and a
reused login link that says it was used and how to get another."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from tests.factories import Events
from tests.support import csrf_of
from traingate._facade import Traingate
from traingate._server import create_app
from traingate._settings import Settings


def test_no_limit_receipts_warn_and_a_used_link_says_so(tmp_path: Path) -> None:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'data' / 'traingate.sqlite'}",
        key_file=tmp_path / "keys.json",
        policy="chatgpt-2025",  # feedback on every plan, no retention limit
    )
    ev = Events()
    events = [
        ev.account("acct-nolimit", ev.t(0), plan="free"),
        ev.conversation("conv-nolimit", "acct-nolimit", ev.t(1), title="No limit"),
        ev.message("m-1", "conv-nolimit", "acct-nolimit", ev.t(1), "user", "Hello"),
        ev.message("m-2", "conv-nolimit", "acct-nolimit", ev.t(2), "assistant", "Hi"),
    ]
    with Traingate.open(settings) as tg:
        assert tg.policy.feedback_basis is not None
        assert tg.policy.feedback_basis.retention is None
        assert tg.events.ingest([json.dumps(e) for e in events]).rejected == 0
        link = tg.access.create_session(account_id="acct-nolimit").login_path
    app = create_app(settings=settings, datasets_dir=tmp_path / "datasets")
    with TestClient(app) as client:
        assert client.get(link).status_code == 200
        page = client.get("/conversations/conv-nolimit").text
        assert "a lost receipt cannot be recovered" in page
        assert "the report then stays until it is deleted (the policy sets no time limit)" in page
        assert 'id="fb-lost-stays"' in page

        stored = client.post(
            "/conversations/conv-nolimit/feedback",
            data={"csrf": csrf_of(page), "message_id": "m-2", "rating": "up", "comment": "ok"},
            headers={"Accept": "text/html"},
        )
        assert stored.status_code == 201
        assert "A lost receipt cannot be recovered" in stored.text
        assert "stays until it is deleted (the policy sets no time limit)" in stored.text

        again = TestClient(app).get(link, follow_redirects=False)
        assert again.status_code == 401
        assert "This login link was already used" in again.text
        assert "traingate session create --account ACCOUNT" in again.text

        never = TestClient(app).get("/login/tgs_AAAAAAAAAAAAAAAA." + "A" * 43)
        assert never.status_code == 401
        assert "already used" not in never.text and "not valid" in never.text
