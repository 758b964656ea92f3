"""Generate the reference docs that must never drift from the code.

    python tools/gen_docs.py          # rewrite docs/cli.md and docs/events.md
    python tools/gen_docs.py --only events  # rewrite one of them (cli or events)
    python tools/gen_docs.py --check  # exit 1 when either is out of date (used by the tests)

docs/cli.md comes from the Click commands' own help; docs/events.md from the pydantic event
models. Prose lives in the other docs; these two are references.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parent.parent
CLI_DOC = ROOT / "docs" / "cli.md"
EVENTS_DOC = ROOT / "docs" / "events.md"


def _commands(
    command: click.Command, path: tuple[str, ...], parent: click.Context | None = None
) -> Iterator[tuple[tuple[str, ...], click.Command, click.Context]]:
    """Each command with the context it runs in: a child of its group's, as when invoked, so
    that what it inherits (``-h`` beside ``--help``) shows. Click caches a command's help
    option from the first context it sees, so a context of its own would make this text depend
    on what ran before in the process."""
    ctx = click.Context(command, info_name=path[-1], parent=parent, **command.context_settings)
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from _commands(command.commands[name], (*path, name), ctx)


def cli_markdown() -> str:
    from traingate._cli import cli

    out = [
        "# Command-line reference",
        "",
        "Generated from the commands' own help by `python tools/gen_docs.py`; a test fails when",
        "it is out of date. Global options go before the command: "
        "`traingate --db URL ingest FILE`.",
        "",
    ]
    for path, command, ctx in _commands(cli, ("traingate",)):
        out.append(f"## `{' '.join(path)}`")
        out.append("")
        out.append("```text")
        out.append(command.get_help(ctx).rstrip())
        out.append("```")
        out.append("")
    return "\n".join(out)


def _schema_type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        fields = ", ".join(defs[name]["properties"])
        return f"object {{{fields}}}"
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " or ".join(f"`{value}`" for value in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_schema_type(option, defs) for option in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_schema_type(prop.get('items', {}), defs)}"
    return {
        "string": "string",
        "boolean": "boolean",
        "object": "object",
        "null": "null",
        "integer": "integer",
    }.get(kind, kind)


# What the models cannot say of a field: the rules checked against the policies and the store.
_NOTES: dict[str, tuple[str, ...]] = {
    "account.updated": (
        "`plan` must be a plan some configured policy declares (`[plans]`); `organization_id` is",
        "required for a commercial plan and must be null for a consumer plan.",
    ),
    "consent.updated": (
        "`setting` must be a setting some configured policy declares (`[settings]`, SPEC §5);",
        "consent is kept per scope, subject and setting. `account_id` is required for scope",
        "`account`, `organization_id` for scope `organization`; the other must be absent or null.",
    ),
    "conversation.updated": (
        '`mode` (SPEC §5): `"incognito": true` is the same as `"mode": "incognito"`, `false` as',
        "`standard`; both keys disagreeing is rejected. A conversation's mode is set by the first",
        "accepted event naming the conversation, in file order (`standard` when that event gives",
        "none or is not a `conversation.updated`, e.g. a message or a flag); a later event giving",
        "another mode is rejected, one giving none keeps it.",
    ),
}


def events_markdown() -> str:
    from traingate._core.events import AnyEvent

    out = [
        "# Event reference",
        "",
        "Generated from the event models (`src/traingate/_core/events.py`) by "
        "`python tools/gen_docs.py`.",
        "Every event is one JSON object per line (or in an HTTP body). Types are strict: a",
        "boolean must be `true`/`false`, a string a JSON string. Unknown fields are rejected.",
        "`at` is RFC 3339 `YYYY-MM-DDTHH:MM:SS[.fraction]` followed by `Z` or `+HH:MM`/`-HH:MM`,",
        "stored as UTC microseconds (digits past the sixth of a fraction are dropped), and must",
        "fall, in UTC, in [1970-01-01T00:00:00Z, 9000-01-01T00:00:00Z): outside it the line is",
        "rejected (and only that line).",
        "No string, value or key at any depth, may hold NUL (`\\u0000`) or a lone surrogate,",
        "and every number must fit a double; free-form objects (`custom_style`, `preferences`)",
        "nest at most 64 levels of objects and arrays. Such an event is rejected on every backend.",
        "",
    ]
    for model in typing.get_args(AnyEvent):
        kind = typing.get_args(model.model_fields["type"].annotation)[0]
        out.append(f"## `{kind}`")
        out.append("")
        out.append("| field | type | required |")
        out.append("|---|---|---|")
        schema = model.model_json_schema(mode="validation")
        defs = schema.get("$defs", {})
        for name, info in model.model_fields.items():
            if name == "type":
                continue
            if name == "at":
                type_name = "RFC 3339 date-time string"
            else:
                type_name = _schema_type(schema["properties"][name], defs)
            required = "yes" if info.is_required() else "no"
            out.append(f"| `{name}` | {type_name} | {required} |")
        out.append("")
        if kind in _NOTES:
            out.extend(_NOTES[kind])
            out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when a doc is out of date")
    parser.add_argument("--only", choices=("cli", "events"), help="one doc only")
    args = parser.parse_args()
    stale = []
    docs = {"cli": (CLI_DOC, cli_markdown), "events": (EVENTS_DOC, events_markdown)}
    for name, (path, make) in docs.items():
        if args.only not in (None, name):
            continue
        text = make()
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.write_text(text)
    for path in stale:
        print(f"{path.relative_to(ROOT)} is out of date: run python tools/gen_docs.py")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
