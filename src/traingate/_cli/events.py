"""Commands over events: ingest, explain, the bundled sample."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import click

from traingate._audit.actions import cli_actor
from traingate._cli.common import INSTANT, emit, event_lines, fail, open_app
from traingate._cli.root import cli
from traingate._ingest import DEFAULT_BATCH


@cli.command()
@click.argument("file", metavar="FILE")
@click.option(
    "--receipts",
    "receipts_file",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="Append the receipt of every accepted feedback report to PATH (JSONL, 0600).",
)
@click.option(
    "--batch-size",
    default=DEFAULT_BATCH,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Events per transaction.",
)
@click.option(
    "--workers",
    envvar="TRAINGATE_INGEST_WORKERS",
    default=None,
    type=click.IntRange(0, 64),
    help="Processes parsing the lines past the first 20,000, while this one checks and writes;"
    " 0 parses every line here [env TRAINGATE_INGEST_WORKERS; default: one less than the"
    " machine's cores, at most 4].",
)
@click.pass_context
def ingest(
    ctx: click.Context, file: str, receipts_file: str | None, batch_size: int, workers: int | None
) -> None:
    """Ingest events from FILE (JSONL, optionally .gz; - for standard input).

    Prints {"accepted", "duplicates", "rejected", "errors"}; exit 1 when anything was rejected.
    """
    with open_app(ctx) as tg, event_lines(file) as lines:
        try:
            summary = tg.events.ingest(
                lines, batch_size=batch_size, workers=workers, actor=cli_actor()
            )
        except UnicodeDecodeError as exc:
            fail(f"{file} is not UTF-8 text: {exc}")
    if receipts_file and summary.receipts:
        path = Path(receipts_file)
        path.touch(mode=0o600, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            for line, event_id, receipt in summary.receipts:
                out.write(json.dumps({"line": line, "event_id": event_id, "receipt": receipt}))
                out.write("\n")
    emit(summary.to_dict())
    if lines.damage is not None:
        fail(lines.damage)  # after the summary of what was read before it: exit 2
    sys.exit(0 if summary.rejected == 0 else 1)


@cli.command()
@click.option(
    "--conversation",
    "conversation_id",
    required=True,
    metavar="ID",
    help="The conversation to explain.",
)
@click.option("--purpose", required=True, metavar="P", help="The purpose to decide for.")
@click.option(
    "--as-of", type=INSTANT, default=None, help="RFC 3339 instant to decide as of [default: now]."
)
@click.pass_context
def explain(ctx: click.Context, conversation_id: str, purpose: str, as_of: int | None) -> None:
    """Explain, message by message, whether a conversation may serve PURPOSE, and why."""
    with open_app(ctx) as tg:
        result = tg.privacy.explain(conversation_id=conversation_id, purpose=purpose, as_of=as_of)
    emit(result.to_dict())


@cli.group()
def sample() -> None:
    """The bundled sample of real public conversations (OASST, HH-RLHF)."""


@sample.command("load")
@click.pass_context
def sample_load(ctx: click.Context) -> None:
    """Ingest the bundled sample events (safe to run again: all duplicates the second time)."""
    from traingate._sample.importer import sample_events_path

    with open_app(ctx) as tg, gzip.open(sample_events_path(), "rt", encoding="utf-8") as lines:
        summary = tg.events.ingest(lines, actor=cli_actor())
    emit(summary.to_dict())
    sys.exit(0 if summary.rejected == 0 else 1)


@sample.command("path")
def sample_path() -> None:
    """Print the path of the bundled sample events file (JSONL, gzip)."""
    from traingate._sample.importer import sample_events_path

    click.echo(str(sample_events_path()))
