"""The command line as outside tests use it: real processes, SPEC §4 output and exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import Events, jsonl
from tests.support import run, run_process

T = Events.t


def history() -> list[str]:
    e = Events()
    return jsonl(
        [
            e.account("a", T(0)),
            e.consent("a", T(1), True),
            e.conversation("c", "a", T(1)),
            e.message("m1", "c", "a", T(2)),
            e.message("m2", "c", "a", T(3), role="assistant"),
            e.consent("a", T(4), False),
            e.message("m3", "c", "a", T(5)),
        ]
    )


def test_ingest_and_explain_on_the_default_store(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(history()) + "\n")
    done = run_process(["ingest", str(events)], cwd=tmp_path)  # the real entry point
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"accepted": 7, "duplicates": 0, "rejected": 0, "errors": []}
    data = tmp_path / "traingate-data"
    assert (data / "traingate.sqlite").is_file()
    key_mode = stat.S_IMODE((data / "keys.json").stat().st_mode)
    assert key_mode == 0o600
    # the consent was revoked at day 4, so as of day 3 m1/m2 are in, as of day 9 nothing is
    early = run(
        ["explain", "--conversation", "c", "--purpose", "model_training", "--as-of", T(3)],
        cwd=tmp_path,
    )
    assert early.returncode == 0, early.stderr
    messages = json.loads(early.stdout)["messages"]
    assert [(m["message_id"], m["eligible"], m["basis"]) for m in messages] == [
        ("m1", True, "opt_in"),
        ("m2", True, "opt_in"),
    ]
    late = run(
        ["explain", "--conversation", "c", "--purpose", "model_training", "--as-of", T(9)],
        cwd=tmp_path,
    )
    decided = [(m["eligible"], m["reasons"]) for m in json.loads(late.stdout)["messages"]]
    assert decided == [
        (False, ["consent_revoked"]),
        (False, ["consent_revoked"]),
        (False, ["no_consent"]),
    ]


def test_ingest_from_stdin_with_rejections_exits_1(tmp_path: Path) -> None:
    lines = history()
    lines.insert(1, '{"type": "account.updated", "event_id": "bad", "at": "2024-01-01"}')
    done = run_process(["ingest", "-"], cwd=tmp_path, stdin="\n".join(lines))  # exit status 1
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    assert (summary["accepted"], summary["duplicates"], summary["rejected"]) == (7, 0, 1)
    assert summary["errors"][0]["line"] == 2
    assert summary["errors"][0]["event_id"] == "bad"
    assert "'at'" in summary["errors"][0]["error"]
    again = run(["ingest", "-"], cwd=tmp_path, stdin="\n".join(lines))
    assert json.loads(again.stdout)["duplicates"] == 7


def test_db_and_key_file_from_environment(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "x.sqlite"
    keys = tmp_path / "k" / "keys.json"
    env = {"TRAINGATE_DB": f"sqlite:///{db}", "TRAINGATE_KEY_FILE": str(keys)}
    done = run(["ingest", "-"], cwd=tmp_path, env=env, stdin="\n".join(history()))
    assert done.returncode == 0, done.stderr
    assert db.is_file() and keys.is_file()
    assert not (tmp_path / "traingate-data").exists()


def test_group_readable_key_file_is_refused(tmp_path: Path) -> None:
    assert run(["ingest", "-"], cwd=tmp_path, stdin=history()[0]).returncode == 0
    key_file = tmp_path / "traingate-data" / "keys.json"
    key_file.chmod(0o640)
    done = run(["ingest", "-"], cwd=tmp_path, stdin=history()[0])
    assert done.returncode == 2
    assert "readable by group or others" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "--conversation", "nope", "--purpose", "model_training"], "not in the store"),
        (["explain", "--conversation", "c", "--purpose", "ads"], "unknown purpose 'ads'"),
        (
            ["explain", "--conversation", "c", "--purpose", "research", "--as-of", "2024-01-01"],
            "not an RFC 3339",
        ),
        (["ingest", "missing.jsonl"], "no such file"),
        (["ingest", "traingate-data"], "traingate-data is a directory, not a file of events"),
        (["--db", "mysql://x/y", "ingest", "-"], "unsupported database URL"),
        (
            ["--db", "sqlite:///traingate-data/keys.json/db.sqlite", "ingest", "-"],
            "cannot open the SQLite store traingate-data/keys.json/db.sqlite: [Errno 17]",
        ),
        (
            ["--db", "sqlite:///traingate-data/keys.json", "ingest", "-"],
            "cannot open the SQLite store traingate-data/keys.json: file is not a database",
        ),
    ],
)
def test_clear_errors(tmp_path: Path, args: list[str], message: str) -> None:
    run(["ingest", "-"], cwd=tmp_path, stdin="\n".join(history()))
    done = run(args, cwd=tmp_path, stdin="")
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_pipe_is_read_as_a_file(tmp_path: Path) -> None:
    """``traingate ingest <(zcat events.jsonl.gz)``: the shell passes a pipe's path."""
    read, write = os.pipe()
    os.set_inheritable(read, True)
    with os.fdopen(write, "w") as sink:
        sink.write("\n".join(history()))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "traingate", "ingest", f"/dev/fd/{read}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            pass_fds=(read,),
            env={k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")},
        )
    finally:
        os.close(read)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accepted"] == 7


def test_gzip_file_and_sample_path(tmp_path: Path) -> None:
    import gzip

    events = tmp_path / "events.jsonl.gz"
    events.write_bytes(gzip.compress("\n".join(history()).encode()))
    done = run(["ingest", str(events)], cwd=tmp_path)
    assert json.loads(done.stdout)["accepted"] == 7
    path = run(["sample", "path"], cwd=tmp_path).stdout.strip()
    assert path.endswith(".jsonl.gz") and Path(path).is_file()
