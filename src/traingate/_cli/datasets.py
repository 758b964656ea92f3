"""Commands over datasets: build, verify, the message lake, lineage."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from traingate._audit.actions import cli_actor
from traingate._cli.common import INSTANT, emit, fail, open_app, receipt_value
from traingate._cli.root import cli
from traingate._datasets import ENGINES as BUILD_ENGINES
from traingate._datasets import FORMATS as BUILD_FORMATS
from traingate._datasets import SHAPES as BUILD_SHAPES


@cli.group()
def dataset() -> None:
    """Dataset builds: what a purpose may use as of a time, de-identified, with a signed
    manifest (docs/builds.md)."""


@dataset.command("build")
@click.option("--purpose", required=True, metavar="P", help="The purpose the dataset serves.")
@click.option(
    "--as-of", type=INSTANT, default=None, help="RFC 3339 instant to build as of [default: now]."
)
@click.option(
    "--out",
    required=True,
    metavar="DIR",
    type=click.Path(path_type=Path),
    help="The directory to create; it must not exist (it appears whole or not at all).",
)
@click.option(
    "--format",
    "record_format",
    type=click.Choice(BUILD_FORMATS),
    default=BUILD_FORMATS[0],
    show_default=True,
    help="Record files: Parquet or JSON Lines.",
)
@click.option(
    "--shape",
    type=click.Choice(BUILD_SHAPES),
    default=BUILD_SHAPES[0],
    show_default=True,
    help="Rows: records (SPEC §4); chat (TRL messages); kto (TRL prompt/completion/label, "
    "feedback reports); openai (OpenAI fine-tuning messages). Same de-identified records "
    "(docs/builds.md).",
)
@click.option(
    "--engine",
    type=click.Choice(BUILD_ENGINES),
    default=BUILD_ENGINES[0],
    show_default=True,
    help="duckdb: the bulk evaluator; spark: the same compiled policy in Spark tasks "
    "(docs/scale.md); scalar: the reference, message by message (slow).",
)
@click.option(
    "--messages",
    metavar="SOURCE",
    default=None,
    help="Read the messages from parquet:PATH, a lake partitioned by date (docs/lake.md), "
    "instead of the store; the ledgers still come from the store [default: the store].",
)
@click.option(
    "--spark-master",
    metavar="URL",
    envvar="TRAINGATE_SPARK_MASTER",
    default=None,
    help="Spark master of --engine spark [env TRAINGATE_SPARK_MASTER; default: local[2]].",
)
@click.option(
    "--since",
    metavar="BUILD_ID",
    default=None,
    help="An incremental build: start from that earlier build of the same purpose and "
    "policies (Parquet records), read only what changed since, and write the records a full "
    "build would (docs/builds.md) [default: a full build].",
)
@click.pass_context
def dataset_build(
    ctx: click.Context,
    purpose: str,
    as_of: int | None,
    out: Path,
    record_format: str,
    shape: str,
    engine: str,
    messages: str | None,
    spark_master: str | None,
    since: str | None,
) -> None:
    """Build DIR/manifest.json, DIR/data/part-*, DIR/README.md (dataset card) and
    DIR/croissant.json: every record PURPOSE may use, in --shape. Prints a summary (build id,
    DIR as an absolute path, counts, exclusions, files) as JSON."""
    from traingate._datasets.progress import terminal_progress

    with open_app(ctx) as tg, terminal_progress() as progress:
        result = tg.datasets.build(
            purpose=purpose,
            out=out,
            as_of=as_of,
            format=record_format,
            shape=shape,
            engine=engine,
            progress=progress,
            actor=cli_actor(),
            messages=messages,
            spark_master=spark_master,
            since=since,
        )
    emit(result.to_dict())


@cli.group()
def lake() -> None:
    """The message lake: messages as Parquet partitioned by date, a source for builds
    (docs/lake.md)."""


@lake.command("export")
@click.option(
    "--out",
    required=True,
    metavar="PATH",
    type=click.Path(path_type=Path),
    help="The lake directory to create; it must not exist (it appears whole or not at all).",
)
@click.option(
    "--as-of", type=INSTANT, default=None, help="Only messages at or before this instant."
)
@click.pass_context
def lake_export(ctx: click.Context, out: Path, as_of: int | None) -> None:
    """Write the store's messages as PATH/date=YYYY-MM-DD/part-*.parquet, from one read
    snapshot. The lake holds messages as they are (identifiable): keep it as the store.
    Prints the path and counts as JSON."""
    with open_app(ctx) as tg:
        result = tg.datasets.export_lake(out=out, as_of=as_of, actor=cli_actor())
    emit(result.to_dict())


@dataset.command("verify")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path))
@click.pass_context
def dataset_verify(ctx: click.Context, directory: Path) -> None:
    """Check DIR against its manifest: signature, every file's sha256 and rows, the counts.
    Exit 0 when intact; 1, naming each change, when not (or when DIR does not exist or is a
    file). DIR is printed as an absolute path, as `dataset build` prints it."""
    with open_app(ctx) as tg:
        result = tg.datasets.verify(path=directory)
    emit(result.to_dict())
    if not result.ok:
        for problem in result.problems:
            click.echo(f"traingate: verify: {problem}", err=True)
        sys.exit(1)


@cli.command()
@click.option("--conversation", "conversation_id", metavar="ID", help="A conversation id.")
@click.option("--receipt", metavar="R", help="A feedback receipt (- reads standard input).")
@click.pass_context
def lineage(ctx: click.Context, conversation_id: str | None, receipt: str | None) -> None:
    """List the dataset builds holding data of a conversation or of a feedback report. A
    conversation neither in the store nor in any build is an error (exit 2, as explain)."""
    if (conversation_id is None) == (receipt is None):
        fail("give exactly one of --conversation ID and --receipt R")
    with open_app(ctx) as tg:
        result = tg.datasets.lineage(
            conversation_id=conversation_id,
            receipt=receipt_value(receipt) if receipt is not None else None,
        )
        if conversation_id is not None and not result.builds:
            # lineage outlives purge; unknown only when neither the store nor a build holds it
            tg.privacy.conversation_owner(
                conversation_id
            )  # NotFoundError: "... is not in the store"
    emit(result.to_dict())
