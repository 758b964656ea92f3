"""``policy diff`` on a fixed scenario, checked by hand, and the ``policy`` commands.

The scenario is ingested under the default (consumer-2024 alone): account ``a`` (free, opted
in) has a plain conversation ``c`` and an incognito one ``i``, each with a message just before
and just after 2026-01-01 (SWITCH), and three feedback reports. The diff asks what putting
consumer-2025 in force from SWITCH would change: under it an incognito chat is covered by no
basis, so its content is kept 30 days (retention ``always``), and a chat covered by ``opt_in``
5 years; its reports are kept 5 years, not 10.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.factories import Events, jsonl, switched_ranges
from tests.support import run
from traingate._core.policy import bundled_policy, default_policy
from traingate._core.timeutil import parse_instant
from traingate._datasets.records import conversation_record_id, feedback_record_id
from traingate._facade import Traingate

SWITCH = "2026-01-01T00:00:00Z"
VERSIONS = f"consumer-2024,consumer-2025@{SWITCH}"
BEFORE = "2025-12-31T23:59:59Z"
AFTER = "2026-01-01T00:00:01Z"
AS_OF = "2026-06-01T00:00:00Z"
LATE = "2031-06-01T00:00:00Z"  # after P5Y of the reports of the switch, before P10Y


def scenario() -> list[dict[str, Any]]:
    e = Events()
    return [
        e.account("a", "2025-06-01T00:00:00Z"),
        e.consent("a", "2025-06-01T00:00:00Z", True),
        e.conversation("c", "a", "2025-06-02T00:00:00Z"),
        e.conversation("i", "a", "2025-06-02T00:00:00Z", incognito=True),
        e.message("c-before", "c", "a", BEFORE),
        e.message("c-after", "c", "a", AFTER),
        e.message("i-before", "i", "a", BEFORE),
        e.message("i-after", "i", "a", AFTER),
        e.feedback("f1", "a", "c", "c-before", BEFORE, comment="r-c-before"),
        e.feedback("f2", "a", "c", "c-after", AFTER, comment="r-c-after"),
        e.feedback("f3", "a", "i", "i-after", AFTER, comment="r-i-after"),
    ]


def side(policy_id: str, basis: str | None, *rules: str) -> dict[str, Any]:
    return {
        "policy": {"id": policy_id, "version": bundled_policy(policy_id).version},
        "eligible": basis is not None,
        "basis": basis,
        "rules": list(rules) or [basis],
    }


OPT_IN_2024 = side("consumer-2024", "opt_in")
EXPIRED_2025 = side("consumer-2025", None, "content_expired")
INCOGNITO_2025 = side("consumer-2025", None, "mode_excluded")
FEEDBACK_2024 = side("consumer-2024", "feedback")
FEEDBACK_2025 = side("consumer-2025", "feedback")


@pytest.fixture
def loaded(tg: Traingate) -> Traingate:
    summary = tg.events.ingest(jsonl(scenario()))
    assert summary.rejected == 0, summary.errors
    return tg


def report_id(tg: Traingate, comment: str) -> str:
    for report in tg.vault.reports(as_of=parse_instant(AS_OF)):
        if report.snapshot.comment == comment:
            return feedback_record_id(tg.keys.signing_key, report.record_key)
    raise AssertionError(comment)


def i_record(tg: Traingate, change: str, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {
        "record_id": conversation_record_id(tg.keys.signing_key, "i", "opt_in"),
        "kind": "conversation",
        "conversation_id": "i",
        "basis": "opt_in",
        "change": "change",
        "items": [
            {"item": "message", "message_id": "i-after", "at": AFTER, "change": change}
            | {"a": a, "b": b}
        ],
    }


def report_record(
    tg: Traingate, comment: str, change: str, a: dict[str, Any], b: dict[str, Any]
) -> dict[str, Any]:
    return {
        "record_id": report_id(tg, comment),
        "kind": "feedback",
        "basis": "feedback",
        "change": change,
        "items": [{"item": "report", "change": change, "a": a, "b": b}],
    }


@pytest.mark.store
def test_diff_of_putting_consumer_2025_in_force(loaded: Traingate) -> None:
    tg = loaded
    result = tg.datasets.policy_diff(
        a="consumer-2024", b=VERSIONS, as_of=parse_instant(AS_OF), purposes=["model_training"]
    ).to_dict()
    assert result == {
        "a": [
            {
                "id": "consumer-2024",
                "version": default_policy().version,
                "sha256": default_policy().sha256,
                "effective_from": "2024-01-01T00:00:00Z",
                "from": None,
                "until": None,
            }
        ],
        "b": switched_ranges(SWITCH),
        "as_of": AS_OF,
        "purposes": [
            {
                "purpose": "model_training",
                "counts": {
                    "records": {"enter": 0, "leave": 1, "change": 1},
                    "messages": {"enter": 0, "leave": 1},
                    "reports": {"enter": 0, "leave": 1},
                },
                "records": [
                    # i keeps its record (i-before, under consumer-2024) but loses i-after,
                    # which no basis covers: kept 30 days, expired by as-of.
                    i_record(tg, "leave", OPT_IN_2024, EXPIRED_2025),
                    # The report on i after the switch is excluded; the others stay.
                    report_record(
                        tg,
                        "r-i-after",
                        "leave",
                        FEEDBACK_2024,
                        INCOGNITO_2025,
                    ),
                ],
            }
        ],
    }
    entries = [e for e in tg.audit.log.entries() if e.action == "policy.diff"]
    assert len(entries) == 1
    details = entries[0].to_dict()["details"]
    assert details["counts"]["model_training"]["records"]["leave"] == 1
    assert details["b"] == ["consumer-2024@2024-01-01T00:00:00Z", f"consumer-2025@{SWITCH}"]


def c_record(tg: Traingate, change: str, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {
        **i_record(tg, change, a, b),
        "record_id": conversation_record_id(tg.keys.signing_key, "c", "opt_in"),
        "conversation_id": "c",
        "items": [
            {"item": "message", "message_id": "c-after", "at": AFTER, "change": change}
            | {"a": a, "b": b}
        ],
    }


@pytest.mark.store
def test_diff_after_the_shorter_retention_and_in_reverse(loaded: Traingate) -> None:
    """Past SWITCH + P5Y: c-after's content (kept 5 years while opt_in covers it) has expired
    too, and so has the report on it (P5Y); in reverse, both come back."""
    tg = loaded
    forward = tg.datasets.policy_diff(
        a="consumer-2024", b=VERSIONS, as_of=parse_instant(LATE), purposes=["model_training"]
    ).to_dict()["purposes"][0]
    expired = side("consumer-2025", None, "feedback_expired")
    assert forward["counts"] == {
        "records": {"enter": 0, "leave": 2, "change": 2},
        "messages": {"enter": 0, "leave": 2},
        "reports": {"enter": 0, "leave": 2},
    }
    assert forward["records"][:2] == [
        c_record(tg, "leave", OPT_IN_2024, EXPIRED_2025),
        i_record(tg, "leave", OPT_IN_2024, EXPIRED_2025),
    ]
    assert sorted(forward["records"][2:], key=lambda r: r["record_id"]) == sorted(
        [
            report_record(tg, "r-c-after", "leave", FEEDBACK_2024, expired),
            report_record(tg, "r-i-after", "leave", FEEDBACK_2024, INCOGNITO_2025),
        ],
        key=lambda r: r["record_id"],
    )
    backward = tg.datasets.policy_diff(
        a=VERSIONS, b="consumer-2024", as_of=parse_instant(LATE), purposes=["model_training"]
    ).to_dict()["purposes"][0]
    assert backward["counts"] == {
        "records": {"enter": 2, "leave": 0, "change": 2},
        "messages": {"enter": 2, "leave": 0},
        "reports": {"enter": 2, "leave": 0},
    }
    assert backward["records"][:2] == [
        c_record(tg, "enter", EXPIRED_2025, OPT_IN_2024),
        i_record(tg, "enter", EXPIRED_2025, OPT_IN_2024),
    ]


@pytest.mark.store
def test_diff_of_equal_policies_and_every_purpose(loaded: Traingate) -> None:
    tg = loaded
    same = tg.datasets.policy_diff(a="consumer-2024", b="consumer-2024", as_of=parse_instant(AS_OF))
    assert [p.purpose for p in same.purposes] == list(default_policy().purposes)
    assert all(p.records == () for p in same.purposes)
    every = tg.datasets.policy_diff(
        a="consumer-2024", b=VERSIONS, as_of=parse_instant(AS_OF), engine="scalar"
    )
    counts = {p.purpose: p.counts()["records"] for p in every.purposes}
    assert counts["model_training"] == {"enter": 0, "leave": 1, "change": 1}
    # Feedback serves these purposes too: the incognito report leaves each of them.
    for purpose in ("safety_model_training", "service_analytics", "research", "behavior_research"):
        assert counts[purpose] == {"enter": 0, "leave": 1, "change": 0}
    assert counts["safety_review"] == {"enter": 0, "leave": 0, "change": 0}


# -- the command line ------------------------------------------------------------------------


def test_policy_commands(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text("\n".join(jsonl(scenario())) + "\n")
    assert run(["ingest", "events.jsonl"], cwd=tmp_path).returncode == 0

    diff = run(
        ["policy", "diff", "consumer-2024", VERSIONS, "--as-of", AS_OF, "--purpose", "research"],
        cwd=tmp_path,
    )
    assert diff.returncode == 0, diff.stderr
    out = json.loads(diff.stdout)
    assert [p["purpose"] for p in out["purposes"]] == ["research"]
    assert out["purposes"][0]["counts"]["reports"] == {"enter": 0, "leave": 1}

    shown = json.loads(run(["--policy", VERSIONS, "policy", "show"], cwd=tmp_path).stdout)
    assert [(p["id"], p["from"], p["until"]) for p in shown["in_force"]] == [
        ("consumer-2024", None, SWITCH),
        ("consumer-2025", SWITCH, None),
    ]
    assert [p["id"] for p in shown["policies"]] == ["consumer-2024", "consumer-2025"]
    one = json.loads(run(["policy", "show", "consumer-2025"], cwd=tmp_path).stdout)
    assert one["in_force"] is None  # not in force under the default setting
    assert one["bases"][1]["exclude_modes"] == ["incognito"]
    assert one["bases"][-1]["retention"] == "P5Y"
    assert "consent_scope" not in one["bases"][0]  # parameters of other kinds are left out

    explained = run(
        ["--policy", VERSIONS, "explain", "--conversation", "i", "--purpose", "model_training",
         "--as-of", AS_OF],
        cwd=tmp_path,
    )  # fmt: skip
    assert explained.returncode == 0, explained.stderr
    messages = json.loads(explained.stdout)["messages"]
    assert [(m["basis"], m["reasons"], m["policy"]["id"]) for m in messages] == [
        ("opt_in", [], "consumer-2024"),
        (None, ["content_expired"], "consumer-2025"),
    ]
    from_env = run(["policy", "show"], cwd=tmp_path, env={"TRAINGATE_POLICY": VERSIONS})
    assert len(json.loads(from_env.stdout)["in_force"]) == 2

    bad = run(["--policy", "consumer-2025@2026-01-01", "policy", "show"], cwd=tmp_path)
    assert bad.returncode == 2
    assert "effective date" in bad.stderr
