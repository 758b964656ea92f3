"""Commands over the vault and retention: feedback by receipt, key rotation, purge."""

from __future__ import annotations

import click

from traingate._audit.actions import cli_actor
from traingate._cli.common import INSTANT, emit, open_app, receipt_value
from traingate._cli.root import cli


@cli.group()
def feedback() -> None:
    """Feedback reports in the vault, by receipt (the holder's only handle on a report)."""


@feedback.command("show")
@click.option("--receipt", required=True, metavar="R", help="The receipt (- reads standard input).")
@click.pass_context
def feedback_show(ctx: click.Context, receipt: str) -> None:
    """Print the stored, de-identified snapshot a receipt names."""
    with open_app(ctx) as tg:
        info, snapshot = tg.feedback.show(receipt_value(receipt), actor=cli_actor())
    emit({"report": info.to_dict(), "snapshot": snapshot.to_dict()})


@feedback.command("delete")
@click.option("--receipt", required=True, metavar="R", help="The receipt (- reads standard input).")
@click.pass_context
def feedback_delete(ctx: click.Context, receipt: str) -> None:
    """Delete the report a receipt names: its data key and ciphertext are destroyed."""
    with open_app(ctx) as tg:
        info = tg.feedback.delete(receipt_value(receipt), actor=cli_actor())
    emit({"deleted": True, "report_id": info.report_id})


@cli.group()
def keys() -> None:
    """The key file's master keys."""


@keys.command("rotate")
@click.option("--retire-old", is_flag=True, help="Then destroy every older master key.")
@click.pass_context
def keys_rotate(ctx: click.Context, retire_old: bool) -> None:
    """Add a new master key and re-wrap every report's data key under it (payloads untouched).

    Run it while no other traingate process writes. Prints the new key id and counts.
    """
    with open_app(ctx) as tg:
        result = tg.feedback.rotate_keys(retire_old=retire_old, actor=cli_actor())
    emit(result.to_dict())


@cli.command()
@click.option(
    "--as-of", type=INSTANT, default=None, help="RFC 3339 instant to purge as of [default: now]."
)
@click.pass_context
def purge(ctx: click.Context, as_of: int | None) -> None:
    """Delete expired feedback reports (crypto-shredding), messages whose content expired under
    the policy's retention rules, and the data of conversations and accounts deleted more than
    deleted_after (30 days unless the policy says otherwise) before the as-of time. Prints the
    counts as JSON."""
    with open_app(ctx) as tg:
        counts = tg.retention.purge(as_of=as_of, actor=cli_actor())
    emit(counts.to_dict())
