"""``traingate dataset build``, ``dataset verify`` and ``lineage`` as outside tests use them:
real processes on the default store, SPEC §4 layout and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from tests.factories import Events, jsonl
from tests.support import run

T = Events.t


def test_build_verify_and_lineage_from_the_command_line(tmp_path: Path) -> None:
    e = Events()
    events = [
        e.account("a", T(0)),
        e.consent("a", T(1), True),
        e.conversation("c", "a", T(1), custom_style={"voice": "a@b.example"}),
        e.message("m1", "c", "a", T(2), content="mail me: x@y.example"),
        e.message("m2", "c", "a", T(3), role="assistant", content="no"),
        e.feedback("f", "a", "c", "m2", T(4), rating="down"),
    ]
    (tmp_path / "events.jsonl").write_text("\n".join(jsonl(events)) + "\n")
    assert run(["ingest", "events.jsonl"], cwd=tmp_path).returncode == 0

    built = run(
        ["dataset", "build", "--purpose", "model_training", "--as-of", T(10), "--out", "ds"],
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    summary = json.loads(built.stdout)
    assert summary["counts"]["records"] == 2
    assert summary["path"] == str(tmp_path / "ds")
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == [
        "README.md", "croissant.json", "data", "manifest.json"  # the card, Croissant (issue 16)
    ]  # fmt: skip
    rows = pq.read_table(tmp_path / "ds" / "data" / "part-00000.parquet").to_pylist()
    assert [r["kind"] for r in rows] == ["conversation", "feedback"]
    assert rows[0]["messages"][0]["content"] == "mail me: [email]"
    assert built.stderr == ""  # no progress bar when not a terminal

    jsonl_built = run(
        ["dataset", "build", "--purpose", "research", "--as-of", T(10), "--out", "dj",
         "--format", "jsonl", "--engine", "duckdb"],
        cwd=tmp_path,
    )  # fmt: skip
    assert jsonl_built.returncode == 0, jsonl_built.stderr
    lines = (tmp_path / "dj" / "data" / "part-00000.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["feedback"]

    for directory in ("ds", "dj"):
        verified = run(["dataset", "verify", directory], cwd=tmp_path)
        assert verified.returncode == 0, verified.stderr
        assert json.loads(verified.stdout)["ok"] is True

    again = run(["dataset", "build", "--purpose", "model_training", "--out", "ds"], cwd=tmp_path)
    assert again.returncode == 2
    assert "already exists" in again.stderr

    lineage = run(["lineage", "--conversation", "c"], cwd=tmp_path)
    assert lineage.returncode == 0, lineage.stderr
    assert [b["path"] for b in json.loads(lineage.stdout)["builds"]] == [str(tmp_path / "ds")]

    part = tmp_path / "ds" / "data" / "part-00000.parquet"
    part.write_bytes(part.read_bytes()[:-1] + b"\x00")
    tampered = run(["dataset", "verify", "ds"], cwd=tmp_path)
    assert tampered.returncode == 1
    assert "data/part-00000.parquet: sha256 differs" in tampered.stderr


def test_progress_bar_only_on_a_terminal() -> None:
    import io

    from traingate._datasets.progress import terminal_progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with terminal_progress(stream=io.StringIO()) as quiet:
        assert quiet is None
    screen = Terminal()
    with terminal_progress(stream=screen) as bar:
        assert bar is not None
        bar.start(10)
        bar.advance(4)
        bar.advance(6)


def test_verify_and_lineage_say_what_the_path_or_id_is(tmp_path: Path) -> None:
    """Issue 17, point 7: a file, a missing directory and an unknown conversation are named as
    such; build and verify print the dataset's path the same way (absolute)."""
    (tmp_path / "README.md").write_text("# not a dataset\n")
    a_file = run(["dataset", "verify", "README.md"], cwd=tmp_path)
    assert a_file.returncode == 1
    assert "a file, not a dataset directory" in a_file.stderr
    assert "Not a directory" not in a_file.stderr
    assert json.loads(a_file.stdout)["path"] == str(tmp_path / "README.md")

    missing = run(["dataset", "verify", "nope/"], cwd=tmp_path)
    assert missing.returncode == 1
    assert f"{tmp_path / 'nope'}: no such directory" in missing.stderr
    assert "manifest.json" not in missing.stderr

    (tmp_path / "empty").mkdir()
    empty = run(["dataset", "verify", "empty"], cwd=tmp_path)
    assert empty.returncode == 1
    assert "is " + str(tmp_path / "empty") + " a dataset directory?" in empty.stderr

    e = Events()
    events = [e.account("a", T(0)), e.conversation("c", "a", T(1)), e.message("m", "c", "a", T(2))]
    (tmp_path / "events.jsonl").write_text("\n".join(jsonl(events)) + "\n")
    assert run(["ingest", "events.jsonl"], cwd=tmp_path).returncode == 0
    unknown = run(["lineage", "--conversation", "nope"], cwd=tmp_path)
    explained = run(
        ["explain", "--conversation", "nope", "--purpose", "model_training"], cwd=tmp_path
    )
    assert unknown.returncode == explained.returncode == 2
    assert unknown.stdout == ""
    assert "conversation 'nope' is not in the store" in unknown.stderr
    assert "conversation 'nope' is not in the store" in explained.stderr
    known = run(["lineage", "--conversation", "c"], cwd=tmp_path)
    assert known.returncode == 0, known.stderr
    assert json.loads(known.stdout)["builds"] == []

    built = run(["dataset", "build", "--purpose", "model_training", "--out", "ds"], cwd=tmp_path)
    verified = run(["dataset", "verify", "./ds/"], cwd=tmp_path)
    assert built.returncode == verified.returncode == 0, built.stderr + verified.stderr
    assert json.loads(verified.stdout)["path"] == json.loads(built.stdout)["path"]
    assert json.loads(verified.stdout)["path"] == str(tmp_path / "ds")
