"""Docs live beside the code and must say what it does: generated references are current, and
every command, option, setting, event type and policy rule is documented."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest

from traingate._cli import cli
from traingate._core.events import EVENT_TYPES
from traingate._core.policy import bundled_policy, bundled_policy_ids
from traingate._settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "tools" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _walk(command: click.Command, path: str) -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found.extend(_walk(sub, f"{path} {name}"))
    return found


def test_generated_references_are_current() -> None:
    gen = _gen_docs()
    assert (DOCS / "cli.md").read_text() == gen.cli_markdown(), "run python tools/gen_docs.py"
    assert (DOCS / "events.md").read_text() == gen.events_markdown(), "run python tools/gen_docs.py"


@pytest.mark.parametrize(("path", "command"), _walk(cli, "traingate"))
def test_every_command_and_option_is_documented(path: str, command: click.Command) -> None:
    text = (DOCS / "cli.md").read_text()
    assert f"## `{path}`" in text
    section = text.split(f"## `{path}`", 1)[1].split("\n## ", 1)[0]
    for param in command.params:
        if isinstance(param, click.Option):
            for flag in param.opts:
                assert flag in section, f"{flag} of {path} is not in docs/cli.md"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_setting_is_documented(name: str) -> None:
    assert f"`{name}`" in (DOCS / "settings.md").read_text()


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_is_documented(event_type: str) -> None:
    assert f"## `{event_type}`" in (DOCS / "events.md").read_text()


@pytest.mark.parametrize("policy_id", bundled_policy_ids())
def test_every_policy_rule_is_documented(policy_id: str) -> None:
    """Each shipped policy has its page under docs/policies/ naming every basis, retention
    rule and reason it has, and docs/policy.md links it."""
    assert f"(policies/{policy_id}.md)" in (DOCS / "policy.md").read_text()
    text = (DOCS / "policies" / f"{policy_id}.md").read_text()
    policy = bundled_policy(policy_id)
    ids = [b.id for b in policy.bases] + [r.id for r in policy.retention] + list(policy.rules)
    for rule_id in ids:
        assert f"`{rule_id}`" in text, f"rule {rule_id} is not in docs/policies/{policy_id}.md"


def test_readme_shows_exactly_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", setup, flags=re.S)
    assert [b.strip() for b in blocks] == ["make demo", "make test"]


def test_every_guarantee_names_tests_that_exist() -> None:
    text = (DOCS / "guarantees.md").read_text()
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)
    assert len(named) >= 20
    for file, test in named:
        source = ROOT / file
        assert source.is_file(), f"{file} does not exist"
        assert re.search(rf"^def {test}\(", source.read_text(), flags=re.M), f"{file}::{test}"


def test_every_doc_is_reachable_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\(docs/([\w-]+\.md)\)", readme))
    for doc in DOCS.glob("*.md"):
        assert doc.name in linked, f"docs/{doc.name} is not linked from README.md"


def test_every_environment_variable_read_is_a_documented_setting() -> None:
    """Every TRAINGATE_* name the code reads (CLI envvars and direct reads) is in SETTINGS."""
    names: set[str] = set()
    for _path, command in _walk(cli, "traingate"):
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                names.add(envvar)
    for source in (ROOT / "src" / "traingate").rglob("*.py"):
        names.update(re.findall(r"\b(TRAINGATE_[A-Z_]+)\b", source.read_text()))
    assert names - set(SETTINGS) == set(), "add them to settings.SETTINGS and docs/settings.md"


def _use_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    use = readme.split("\n## Use\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", use, flags=re.S)


def _workdir(tmp_path: Path) -> Path:
    """A directory laid out as the repository after `make demo`: .venv/bin/traingate and
    examples/ (the store starts empty: the block's ingest accepts rather than counts
    duplicates)."""
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "traingate").symlink_to(Path(sys.executable).parent / "traingate")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


def test_readme_use_block_runs_as_written(tmp_path: Path) -> None:
    """Issue 17, point 4: the README's "Use" block runs as written, and its explain names
    eligible messages (the serve/PostgreSQL block is the one not run)."""
    first, second = _use_blocks()
    assert "serve" in second and "serve" not in first
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")}
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", first],
        cwd=_workdir(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    out = ran.stdout
    assert '"accepted": 41' in out and '"rejected": 0' in out
    conversation = re.search(r"--conversation (\S+)", first)
    assert conversation and conversation.group(1) in out  # privacy lists the id explain takes
    assert '"eligible": true' in out and '"basis": "opt_in"' in out
    assert '"ok": true' in out  # verify
    assert '"builds": [\n    {' in out  # lineage: the build just made holds it


def test_library_example_runs(tmp_path: Path) -> None:
    """Issue 17, point 8: docs/library.md's example runs, and the public API is the
    package's ``__all__``."""
    import traingate

    text = (DOCS / "library.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    ran = subprocess.run(
        [sys.executable, "-c", block],
        cwd=_workdir(tmp_path),
        env={k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0] == "{'accepted': 41, 'duplicates': 0, 'rejected': 0, 'errors': []}"
    assert lines[1].startswith("True ('opt_in',) ('oasst-tree-")
    assert any(line.endswith(" True opt_in") for line in lines)
    assert lines[-2].endswith(" True")  # records, verified
    assert lines[-1].startswith("not found:")
    for name in traingate.__all__:
        assert f"`{name}`" in text, f"{name} of traingate.__all__ is not in docs/library.md"
        assert getattr(traingate, name) is not None


def test_everything_but_the_public_api_is_private_by_name() -> None:
    """Issue 17, point 8: every module of the package but ``traingate`` itself and its
    ``__main__`` lies under a name with a leading underscore, so that nothing outside
    ``traingate.__all__`` reads as public."""
    import pkgutil

    import traingate

    public = [
        module.name
        for module in pkgutil.walk_packages(traingate.__path__, prefix="traingate.")
        if module.name != "traingate.__main__"
        and not any(part.startswith("_") for part in module.name.split(".")[1:])
    ]
    assert public == []
    top = {module.name for module in pkgutil.iter_modules(traingate.__path__)}
    assert len(top) > 10 and all(name.startswith("_") for name in top)
