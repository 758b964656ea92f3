"""``traingate privacy``: one account's answer to "Is my data used for model training?"."""

from __future__ import annotations

import click

from traingate._cli.common import INSTANT, emit, open_app
from traingate._cli.root import cli


@cli.command("privacy")
@click.option("--account", "account_id", required=True, metavar="ID", help="The account's id.")
@click.option(
    "--as-of", type=INSTANT, default=None, help="RFC 3339 instant to answer as of [default: now]."
)
@click.pass_context
def privacy(ctx: click.Context, account_id: str, as_of: int | None) -> None:
    """Is the account's data used for model training? Its answer as JSON (SPEC §4).

    Key "purposes" maps every purpose of the policies in force to {"used", "bases",
    "conversations"}: the account's conversations
    with at least one message eligible for it as of the time (the messages a build of that
    purpose as of then holds), the bases of those messages, and whether there are any.
    Beside it: the policies used (id, version, sha256), the plan history, the consent of every
    setting the bases read, the account's conversations with how each purpose judges their
    messages and the builds holding them. Feedback reports are de-linked and never attributed
    to an account. An account the store has no record of gets "known": false and no use."""
    with open_app(ctx) as tg:
        report = tg.privacy.answer(account_id=account_id, as_of=as_of)
    emit(report.to_dict())
