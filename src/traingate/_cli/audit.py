"""Commands over the audit log: verify, export."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from traingate._cli.common import emit, open_app
from traingate._cli.root import cli


@cli.group()
def audit() -> None:
    """The hash-chained audit log of what traingate did (docs/audit.md)."""


def _head(value: str | None) -> tuple[int, str | None] | None:
    if value is None:
        return None
    seq, _, digest = value.partition(":")
    if not seq.isdigit() or (digest and len(digest) != 64):
        raise click.BadParameter("give SEQ or SEQ:HASH, as verify prints its head")
    return int(seq), digest or None


@audit.command("verify")
@click.option(
    "--expect-head",
    metavar="SEQ[:HASH]",
    help="A head recorded earlier (the head's seq and hash a verify printed): the log must "
    "still reach it, with that hash. Catches a log wiped whole, head and all.",
)
@click.pass_context
def audit_verify(ctx: click.Context, expect_head: str | None) -> None:
    """Check every entry's keyed hash, the chain and the signed head. Prints a JSON summary;
    exit 0 when intact, 1 naming each problem (its seq and kind) when not. An empty log with
    no head is intact but says so (a warning): pass --expect-head to tell it from a wiped one."""
    expected = _head(expect_head)
    with open_app(ctx) as tg:
        summary = tg.audit.verify(expect_head=expected)
    emit(summary)
    if "warning" in summary:
        click.echo(f"traingate: audit: warning: {summary['warning']}", err=True)
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
    from traingate._audit.log import export_lines

    with open_app(ctx) as tg:
        entries = tg.audit.entries(after=after, accounts=accounts, organizations=organizations)
    if out is None:
        for line in export_lines(entries):
            click.echo(line)
        return
    partial = out.with_name(f".{out.name}.partial")
    with partial.open("w", encoding="utf-8") as handle:
        for line in export_lines(entries):
            handle.write(line + "\n")
    partial.replace(out)
