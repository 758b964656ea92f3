"""The grep test: no id of a shipped policy is written in ``src/traingate`` outside the policy
files (issue 15). A policy's meaning lives in its file; code reads it from the ``Policy`` /
``PolicySet`` and reason ids from ``vocabulary.toml`` (``policy.vocabulary``).

What is collected, from every shipped policy file: its id, its purposes, plans, basis ids,
retention rule ids and reason ids (``[rules.<id>]``).

Where it is looked for:

- ``*.py``: every string constant, parsed with ``ast`` (docstrings, f-string parts and implicitly
  concatenated strings included; comments are not strings and are not read);
- ``*.html``, ``*.js``, ``*.css``: every line, as text.

How an id matches. An id that contains ``_``, ``-`` or a digit (``opt_in``, ``consumer-2024``,
``model_training``) matches as a whole word anywhere: not preceded or followed by a letter, a
digit, ``_`` or ``-``. An id that is a plain English word (``free``, ``go``, ``plus``, ``team``,
``research``, ...) matches when it is a value, not prose: a Python string constant that is
exactly the id, or the id quoted in the text (``'free'``, ``"free"``, ```free```,
````free````). Reason: these words are ordinary prose ("snapshots go to the vault", "plus its
keys", "free text") and HTML/CSS/JS syntax (``max="1"``, ``max-width``, ``function api()``);
when code compares against them or sends them, they are written as values, and quoted.

Exceptions, each with its reason (``EXCEPTIONS``):

- ``feedback`` is the basis id of every shipped policy and also SPEC vocabulary: the record
  ``kind`` (§4), the event type ``feedback.submitted`` (§2), the mechanism ``kind = "feedback"``
  (§5) and the routes ``/v1/feedback``. It is never matched.
- ``model_training`` in the store's one migration default: ``ALTER TABLE consents ADD COLUMN
  setting ... DEFAULT 'model_training'`` gives consent rows stored before settings existed the
  one setting SPEC §2 names. It is a setting name there (SPEC vocabulary), not a purpose.
- Not collected, so never matched (they are not ids but vocabulary): the ``safety.flagged``
  event's ``policy`` value ``usage_policy`` (SPEC §2; a flag basis's ``flag_policy`` parameter,
  not an id), conversation modes, roles, plan classes ``consumer`` / ``commercial``, consent
  scopes ``account`` / ``organization``, mechanism kinds.

Nothing here is marked xfail: a failure names each file and line, the id and which policy it
belongs to.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from traingate._core.policy import bundled_policy, bundled_policy_ids

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "traingate"
TEXT_SUFFIXES = (".html", ".js", ".css")
WORD = r"A-Za-z0-9_\-"


def shipped_ids() -> dict[str, list[str]]:
    """Every id of every shipped policy, with what it is (``plan of chatgpt-2025``, ...)."""
    found: dict[str, list[str]] = {}
    for policy_id in bundled_policy_ids():
        policy = bundled_policy(policy_id)
        kinds: dict[str, list[str]] = {
            "policy id": [policy.id],
            "purpose": list(policy.purposes),
            "plan": list(policy.plans),
            "basis": [b.id for b in policy.bases],
            "retention rule": [r.id for r in policy.retention],
            "reason": list(policy.rules),
        }
        for kind, names in kinds.items():
            for name in names:
                found.setdefault(name, []).append(f"{kind} of {policy_id}")
    return found


@dataclass(frozen=True)
class Exception_:
    """An id allowed where ``applies(path, text, line)`` says so, for ``reason``: ``text`` is
    the string (Python) or line (other files) it is in, ``line`` that source line."""

    id: str
    reason: str
    applies: Callable[[Path, str, str], bool]


EXCEPTIONS = (
    Exception_(
        "feedback",
        "SPEC vocabulary: record kind, event type feedback.submitted, mechanism kind, routes",
        lambda path, text, line: True,
    ),
    Exception_(
        "model_training",
        "the consent setting of the one migration default for rows stored before settings",
        lambda path, text, line: (
            path == SRC / "_store" / "schema.py"
            and text.startswith("ALTER TABLE consents ADD COLUMN setting")
        ),
    ),
    Exception_(
        "max",
        "the field of pyarrow.compute.min_max's result, not a plan",
        lambda path, text, line: (
            path == SRC / "_datasets" / "engines" / "duckdb.py"
            and re.search(r"\bbounds\[\"max\"\]", line) is not None
        ),
    ),
)


def _is_word(name: str) -> bool:
    return re.fullmatch(r"[a-z]+", name) is not None


def _pattern(name: str) -> re.Pattern[str]:
    if _is_word(name):  # a value, quoted: 'free', "free", `free`, ``free``
        return re.compile(rf"(['\"`]){re.escape(name)}\1")
    return re.compile(rf"(?<![{WORD}]){re.escape(name)}(?![{WORD}])")


@dataclass(frozen=True)
class Hit:
    path: Path
    line: int
    id: str
    text: str

    def __str__(self) -> str:
        where = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{where}:{self.line}: {self.id!r} in {self.text.strip()[:90]!r}"


class Scanner:
    """Finds the ids in strings (Python) and lines (templates, JS, CSS)."""

    def __init__(self, ids: dict[str, list[str]]) -> None:
        self.patterns = {name: _pattern(name) for name in ids}

    def _allowed(self, path: Path, name: str, text: str, line: str) -> bool:
        return any(e.id == name and e.applies(path, text, line) for e in EXCEPTIONS)

    def in_text(
        self, path: Path, text: str, first_line: int, source_line: str | None = None
    ) -> Iterator[Hit]:
        lines = text.splitlines() or [""]
        for name, pattern in self.patterns.items():
            if self._allowed(path, name, text, text if source_line is None else source_line):
                continue
            for match in pattern.finditer(text):
                offset = text.count("\n", 0, match.start())
                yield Hit(path, first_line + offset, name, lines[min(offset, len(lines) - 1)])

    def in_python(self, path: Path, source: str) -> Iterator[Hit]:
        source_lines = source.splitlines()
        for node in ast.walk(ast.parse(source, filename=str(path))):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            value: str = node.value
            number = getattr(node, "lineno", 1)
            line = source_lines[number - 1] if number <= len(source_lines) else ""
            if value in self.patterns and _is_word(value):
                if not self._allowed(path, value, value, line):
                    yield Hit(path, number, value, line)
                continue
            yield from self.in_text(path, value, number, line)

    def in_file(self, path: Path) -> Iterator[Hit]:
        source = path.read_text(encoding="utf-8")
        if path.suffix == ".py":
            yield from self.in_python(path, source)
        else:
            for number, line in enumerate(source.splitlines(), 1):
                yield from self.in_text(path, line, number)


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*") if p.is_file() and p.suffix in (".py", *TEXT_SUFFIXES))


def test_no_shipped_policy_id_in_src() -> None:
    ids = shipped_ids()
    scanner = Scanner(ids)
    hits = sorted(
        {h for path in _sources() for h in scanner.in_file(path)},
        key=lambda h: (str(h.path), h.line, h.id),
    )
    report = "\n".join(f"{hit}  [{', '.join(ids[hit.id])}]" for hit in hits)
    if hits:
        pytest.fail(f"{len(hits)} shipped policy ids written in src/traingate:\n{report}")


# -- the scanner itself ----------------------------------------------------------------------


IDS = {"free": ["plan"], "go": ["plan"], "opt_in": ["basis"], "consumer-2024": ["policy id"]}


def _python_hits(source: str) -> list[tuple[int, str]]:
    path = SRC / "example.py"
    return [(h.line, h.id) for h in Scanner(IDS).in_python(path, source)]


def _text_hits(source: str, name: str = "example.html") -> list[tuple[int, str]]:
    path = SRC / "_web" / "templates" / name
    return [
        (h.line, h.id)
        for number, line in enumerate(source.splitlines(), 1)
        for h in Scanner(IDS).in_text(path, line, number)
    ]


def test_the_scanner_finds_ids_in_python_strings() -> None:
    source = (
        'PLAN = "free"\n'
        "def f(x):\n"
        '    """Decide. ``opt_in`` is an example."""\n'
        '    return f"{x} under opt_in" + "consumer-2024.toml"\n'
        "# opt_in in a comment is not a string\n"
        "opt_in = 1\n"
        's = """line one\n'
        'and the policy consumer-2024"""\n'
    )
    assert sorted(_python_hits(source)) == [
        (1, "free"),
        (3, "opt_in"),
        (4, "consumer-2024"),
        (4, "opt_in"),
        (8, "consumer-2024"),
    ]


def test_the_scanner_leaves_prose_and_longer_words_alone() -> None:
    source = (
        '"snapshots go to the vault, free of ids"\n'
        '"opt_in_later and no_opt_in and consumer-20245"\n'
        '"freedom", "going"\n'
    )
    assert _python_hits(source) == []


def test_the_scanner_finds_quoted_values_in_templates_and_js() -> None:
    source = (
        "{% if plan == 'free' %}free text{% endif %}\n"
        '<p class="x">go back</p> <span data-basis="opt_in">\n'
        'if (plan === "go") { return `consumer-2024`; }\n'
        ".card { max-width: 1px; }\n"
    )
    assert _text_hits(source) == [(1, "free"), (2, "opt_in"), (3, "go"), (3, "consumer-2024")]


def test_exceptions_apply_only_where_they_say() -> None:
    scanner = Scanner({"feedback": ["basis"], "model_training": ["purpose"]})
    schema = SRC / "_store" / "schema.py"
    migration = "ALTER TABLE consents ADD COLUMN setting TEXT NOT NULL DEFAULT 'model_training'"
    assert list(scanner.in_text(schema, migration, 1)) == []
    assert [h.id for h in scanner.in_text(SRC / "_cli/demo.py", migration, 1)] == ["model_training"]
    assert [h.id for h in scanner.in_text(schema, "WHERE purpose = 'model_training'", 1)] == [
        "model_training"
    ]
    assert list(scanner.in_python(SRC / "x.py", 'KIND = "feedback"\n')) == []
    plans = Scanner({"max": ["plan"]})
    duckdb = SRC / "_datasets" / "engines" / "duckdb.py"
    assert list(plans.in_python(duckdb, 'hi = bounds["max"].as_py()\n')) == []
    assert [h.id for h in plans.in_python(duckdb, 'if plan == "max": pass\n')] == ["max"]


def test_every_shipped_id_is_collected() -> None:
    ids = shipped_ids()
    for policy_id in bundled_policy_ids():
        policy = bundled_policy(policy_id)
        assert policy_id in ids
        assert set(policy.plans) | set(policy.purposes) | set(policy.rules) <= set(ids)
        assert {b.id for b in policy.bases} | {r.id for r in policy.retention} <= set(ids)
    assert {"improve_model_setting", "training_setting", "temporary_chat_retention"} <= set(ids)
    assert "usage_policy" not in ids, "a flag_policy value is vocabulary, not an id"
