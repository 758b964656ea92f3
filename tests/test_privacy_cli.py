"""``traingate privacy --account ID [--as-of T]`` (SPEC §4) as a user runs it: the JSON of
``account_privacy``, an unknown account answered (not a traceback), an as-of outside the SPEC §2
range refused naming the range."""

from __future__ import annotations

import json
from pathlib import Path

from tests.factories import Events, jsonl
from tests.support import NOT_USED, PURPOSES, moved_between_plans, run

T = Events.t


def _ingested(tmp_path: Path, policy: str | None = None) -> dict[str, str]:
    env = {"TRAINGATE_POLICY": policy} if policy else {}
    done = run(
        ["ingest", "-"],
        cwd=tmp_path,
        env=env,
        stdin="\n".join(jsonl(moved_between_plans(Events()))),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return env


def test_privacy_prints_every_purpose_and_the_evidence(tmp_path: Path) -> None:
    env = _ingested(tmp_path)
    done = run(["privacy", "--account", "a1", "--as-of", T(200)], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert list(answer["purposes"]) == list(PURPOSES)
    assert answer["purposes"]["model_training"] == {
        "used": True,
        "bases": ["organization_opt_in"],
        "conversations": ["c1", "c2"],
    }
    assert (answer["account_id"], answer["as_of"], answer["known"]) == ("a1", T(200), True)
    [policy] = answer["policies"]
    assert policy["id"] == "consumer-2024" and len(policy["sha256"]) == 64
    assert [p["plan"] for p in answer["plan_history"]] == ["team", "free"]
    settings = {(c["scope"], c["subject"], c["setting"]) for c in answer["consents"]}
    assert settings == {
        ("account", "a1", "model_training"),
        ("organization", "org-1", "model_training"),
    }
    c1 = answer["conversations"][0]
    assert c1["conversation_id"] == "c1" and c1["builds"] == {}
    # the default as-of is now
    now = json.loads(run(["privacy", "--account", "a1"], cwd=tmp_path, env=env).stdout)
    assert now["purposes"]["model_training"]["conversations"] == ["c1", "c2"]


def test_several_policies_are_named(tmp_path: Path) -> None:
    env = _ingested(tmp_path, f"consumer-2024,consumer-2025@{T(50)}")
    done = run(["privacy", "--account", "a1", "--as-of", T(200)], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert [p["id"] for p in answer["policies"]] == ["consumer-2024", "consumer-2025"]
    assert answer["purposes"]["model_training"]["conversations"] == ["c1", "c2"]


def test_an_unknown_account_gets_a_clear_answer(tmp_path: Path) -> None:
    _ingested(tmp_path)
    done = run(["privacy", "--account", "nobody"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["known"] is False and answer["plan"] is None
    assert answer["purposes"] == {p: NOT_USED for p in PURPOSES}


def test_an_as_of_outside_the_range_is_refused(tmp_path: Path) -> None:
    _ingested(tmp_path)
    for bad in ("9000-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2024-01-01"):
        done = run(["privacy", "--account", "a1", "--as-of", bad], cwd=tmp_path)
        assert done.returncode == 2, (bad, done.stdout)
        assert "Traceback" not in done.stderr
    assert "9000-01-01T00:00:00Z" in done.stderr or "RFC 3339" in done.stderr
    done = run(["privacy", "--account", "a1", "--as-of", "9000-01-01T00:00:00Z"], cwd=tmp_path)
    assert "1970-01-01T00:00:00Z" in done.stderr and "9000-01-01T00:00:00Z" in done.stderr
    missing = run(["privacy"], cwd=tmp_path)
    assert missing.returncode == 2 and "--account" in missing.stderr
