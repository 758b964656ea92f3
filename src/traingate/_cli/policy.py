"""Commands over policies: show, diff."""

from __future__ import annotations

import click

from traingate._audit.actions import cli_actor
from traingate._cli.common import INSTANT, emit, open_app
from traingate._cli.root import cli
from traingate._datasets import ENGINES as BUILD_ENGINES


@cli.group("policy")
def policy_group() -> None:
    """The policies in force, and what changing them would change (docs/policy.md)."""


@policy_group.command("show")
@click.argument("name", metavar="[ID]", required=False)
@click.pass_context
def policy_show(ctx: click.Context, name: str | None) -> None:
    """Print the policies in force (each with the time range it decides), or one policy: an
    id in force, a bundled id or a policy file. JSON: plans, purposes, bases in order of
    precedence, exclusions, reasons for denial with their texts, sha256."""
    with open_app(ctx) as tg:
        table = tg.datasets.policy_show(name=name)
    emit(table)


@policy_group.command("diff")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option(
    "--as-of", type=INSTANT, default=None, help="RFC 3339 instant to decide as of [default: now]."
)
@click.option(
    "--purpose",
    "purposes",
    multiple=True,
    metavar="P",
    help="Only this purpose (repeatable) [default: every purpose].",
)
@click.option(
    "--engine",
    type=click.Choice(BUILD_ENGINES),
    default=BUILD_ENGINES[0],
    show_default=True,
    help="The engine deciding every message (the scalar evaluator gives the reasons).",
)
@click.pass_context
def policy_diff(
    ctx: click.Context, a: str, b: str, as_of: int | None, purposes: tuple[str, ...], engine: str
) -> None:
    """Which records of a build would enter, leave or change if policies B replaced A, and
    why: every changed message and report with its policy, basis and rule ids under A and
    under B. A and B take what --policy takes (e.g. OLD and OLD,NEW@2026-01-01T00:00:00Z, with
    OLD and NEW bundled ids or policy files). Prints JSON; nothing is written."""
    with open_app(ctx) as tg:
        result = tg.datasets.policy_diff(
            a=a, b=b, as_of=as_of, purposes=purposes, engine=engine, actor=cli_actor()
        )
    emit(result.to_dict())
