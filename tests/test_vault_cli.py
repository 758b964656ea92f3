"""The vault's commands as outside users run them: feedback show/delete, keys rotate, purge."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.factories import Events, jsonl
from tests.support import run

T = Events.t


def _ok(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_feedback_show_delete_rotate_and_purge(db_url: str, tmp_path: Path) -> None:
    env = {"TRAINGATE_DB": db_url, "TRAINGATE_KEY_FILE": str(tmp_path / "keys.json")}
    e = Events()
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            jsonl(
                [
                    e.account("a", T(0), email="a.person@example.org"),
                    e.message("m1", "c", "a", T(1), content="hi, I am a.person@example.org"),
                    e.feedback("f1", "a", "c", "m1", T(2), rating="up", comment="nice"),
                    e.feedback("f2", "a", "c", "m1", T(3), comment="second"),
                    e.conversation_deleted("c", "a", T(4)),
                ]
            )
        )
        + "\n"
    )
    receipts_file = tmp_path / "receipts.jsonl"
    _ok(run(["ingest", str(events), "--receipts", str(receipts_file)], cwd=tmp_path, env=env))
    first, second = (json.loads(line)["receipt"] for line in receipts_file.read_text().splitlines())

    shown = _ok(run(["feedback", "show", "--receipt", first], cwd=tmp_path, env=env))
    assert shown["snapshot"]["messages"][0]["content"] == "hi, I am [email]"
    assert shown["snapshot"]["rating"] == "up"
    assert shown["report"]["submitted_at"] == T(2)
    assert shown["report"]["expires_at"] == "2034-01-03T12:00:00Z"

    wrong = first[:-1] + ("A" if first[-1] != "A" else "B")
    refused = run(["feedback", "show", "--receipt", wrong], cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "receipt" in refused.stderr

    rotated = _ok(run(["keys", "rotate", "--retire-old"], cwd=tmp_path, env=env))
    assert rotated["rewrapped"] == 2 and len(rotated["retired"]) == 1
    keys = json.loads((tmp_path / "keys.json").read_text())
    assert [k["id"] for k in keys["master_keys"]] == [rotated["master_key_id"]]
    again = run(["feedback", "show", "--receipt", "-"], cwd=tmp_path, env=env, stdin=first)
    assert _ok(again)["report"]["master_key_id"] == rotated["master_key_id"]

    deleted = _ok(run(["feedback", "delete", "--receipt", first], cwd=tmp_path, env=env))
    assert deleted["deleted"] is True
    gone = run(["feedback", "show", "--receipt", first], cwd=tmp_path, env=env)
    assert gone.returncode == 2

    # the conversation was deleted on day 4: purged after day 34; the report stays until 2034
    assert _ok(run(["purge", "--as-of", T(34)], cwd=tmp_path, env=env)) == {
        "as_of": T(34),
        "expired_reports": 0,
        "conversations_purged": 0,
        "messages_purged": 0,
        "accounts_purged": 0,
        "messages_expired": 0,
    }
    counts = _ok(run(["purge", "--as-of", T(35)], cwd=tmp_path, env=env))
    assert counts["conversations_purged"] == 1 and counts["messages_purged"] == 1
    assert _ok(run(["feedback", "show", "--receipt", second], cwd=tmp_path, env=env))
    counts = _ok(run(["purge", "--as-of", "2034-01-04T12:00:00Z"], cwd=tmp_path, env=env))
    assert counts["expired_reports"] == 1 and counts["conversations_purged"] == 0
    # default as-of is the wall clock: nothing left to purge now
    assert _ok(run(["purge"], cwd=tmp_path, env=env))["expired_reports"] == 0


def test_purge_rejects_a_bad_as_of(tmp_path: Path) -> None:
    done = run(["purge", "--as-of", "2024-01-01"], cwd=tmp_path, env={})
    assert done.returncode == 2
    assert "RFC 3339" in done.stderr


def test_purge_deletes_expired_content_and_shows_reports_without_expiry(
    db_url: str, tmp_path: Path
) -> None:
    """Under consumer-2025 a plain chat's content expires 30 days after each message: ``purge``
    counts it under ``messages_expired``. Under a policy whose feedback basis has no
    retention, ``feedback show`` says ``expires_at: null``."""
    from tests.support import variant_text

    e = Events()
    events = tmp_path / "events.jsonl"
    at = "2025-10-02T12:00:00Z"
    events.write_text(
        "\n".join(
            jsonl(
                [
                    e.account("a", "2025-10-01T00:00:00Z"),
                    e.message("m1", "c", "a", at, content="gone in thirty days"),
                    e.message("m2", "c", "a", "2025-10-03T12:00:00Z", content="a day later"),
                    e.feedback("f1", "a", "c", "m2", "2025-10-03T12:00:01Z", comment="ok"),
                ]
            )
        )
        + "\n"
    )
    keep = tmp_path / "keep.toml"
    keep.write_text(variant_text("keep-feedback", keep_feedback=True), encoding="utf-8")
    env = {
        "TRAINGATE_DB": db_url,
        "TRAINGATE_KEY_FILE": str(tmp_path / "keys.json"),
        "TRAINGATE_POLICY": f"{keep},consumer-2025@2025-10-01T00:00:00Z",
    }
    receipts_file = tmp_path / "receipts.jsonl"
    _ok(run(["ingest", str(events), "--receipts", str(receipts_file)], cwd=tmp_path, env=env))
    [receipt] = (json.loads(line)["receipt"] for line in receipts_file.read_text().splitlines())
    shown = _ok(run(["feedback", "show", "--receipt", receipt], cwd=tmp_path, env=env))
    assert shown["report"]["expires_at"] == "2030-10-03T12:00:01Z"  # consumer-2025's P5Y

    first = _ok(run(["purge", "--as-of", "2025-11-01T12:00:00Z"], cwd=tmp_path, env=env))
    assert first["messages_expired"] == 1 and first["messages_purged"] == 0
    again = _ok(run(["purge", "--as-of", "2025-11-01T12:00:00Z"], cwd=tmp_path, env=env))
    assert again["messages_expired"] == 0
    second = _ok(run(["purge", "--as-of", "2025-11-02T12:00:00Z"], cwd=tmp_path, env=env))
    assert second["messages_expired"] == 1

    env["TRAINGATE_POLICY"] = str(keep)  # the no-limit policy alone: the stored P5Y stays
    shown = _ok(run(["feedback", "show", "--receipt", receipt], cwd=tmp_path, env=env))
    assert shown["report"]["expires_at"] == "2030-10-03T12:00:01Z"
    more = tmp_path / "more.jsonl"
    more.write_text(
        "\n".join(
            jsonl(
                [
                    e.message("m3", "c", "a", "2025-12-01T12:00:00Z", content="later"),
                    e.feedback("f2", "a", "c", "m3", "2025-12-01T12:00:01Z"),
                ]
            )
        )
        + "\n"
    )
    receipts_more = tmp_path / "receipts-more.jsonl"
    _ok(run(["ingest", str(more), "--receipts", str(receipts_more)], cwd=tmp_path, env=env))
    [kept] = (json.loads(line)["receipt"] for line in receipts_more.read_text().splitlines())
    shown = _ok(run(["feedback", "show", "--receipt", kept], cwd=tmp_path, env=env))
    assert shown["report"]["expires_at"] is None
