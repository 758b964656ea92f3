"""Commands over the audit log: verify, export."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from traingate.cli._common import emit, open_app
from traingate.cli.root import cli


@cli.group()
def audit() -> None:
    """The hash-chained audit log of what traingate did (docs/audit.md)."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Check every entry's keyed hash, the chain and the signed head. Prints a JSON summary;
    exit 0 when intact, 1 naming each problem (its seq and kind) when not."""
    with open_app(ctx) as tg:
        summary = tg.audit_verify()
    emit(summary)
    if not summary["ok"]:
        for problem in summary["problems"]:
            click.echo(
                f"traingate: audit: seq {problem['seq']}: {problem['kind']}: {problem['message']}",
                err=True,
            )
        sys.exit(1)


@audit.command("export")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write to FILE (replaced whole) instead of standard output.",
)
@click.option(
    "--after", default=0, show_default=True, type=click.IntRange(0, 2**62), help="Only seq > N."
)
@click.option(
    "--account",
    "accounts",
    multiple=True,
    metavar="ID",
    help="Only entries naming this account (by its keyed hash); repeatable.",
)
@click.option(
    "--organization",
    "organizations",
    multiple=True,
    metavar="ID",
    help="Only entries naming this organization; repeatable.",
)
@click.pass_context
def audit_export(
    ctx: click.Context,
    out: Path | None,
    after: int,
    accounts: tuple[str, ...],
    organizations: tuple[str, ...],
) -> None:
    """Write the audit log as JSON Lines, one entry a line, oldest first."""
    from traingate.audit import export_lines

    with open_app(ctx) as tg:
        entries = tg.audit_entries(after=after, accounts=accounts, organizations=organizations)
    if out is None:
        for line in export_lines(entries):
            click.echo(line)
        return
    partial = out.with_name(f".{out.name}.partial")
    with partial.open("w", encoding="utf-8") as handle:
        for line in export_lines(entries):
            handle.write(line + "\n")
    partial.replace(out)
