"""The command line: parse, call one method of ``Traingate``, format. Nothing else lives here.

Exit status: 0 success; 1 the operation ran but found a problem (rejected events, a failed
verification); 2 the command could not run (bad option, unusable settings, unknown item).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

import click

from traingate.app import Traingate
from traingate.auditing import cli_actor
from traingate.auth import ROLES
from traingate.build import ENGINES as BUILD_ENGINES
from traingate.build import FORMATS as BUILD_FORMATS
from traingate.errors import TraingateError
from traingate.settings import Settings
from traingate.timeutil import parse_instant

__all__ = ["cli", "main"]


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _fail(message: str) -> NoReturn:
    click.echo(f"traingate: error: {message}", err=True)
    sys.exit(2)


class _InstantType(click.ParamType):  # type: ignore[type-arg]
    name = "RFC3339"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_instant(str(value))
        except TraingateError as exc:
            self.fail(str(exc), param, ctx)


INSTANT = _InstantType()


@contextlib.contextmanager
def _open(ctx: click.Context) -> Iterator[Traingate]:
    settings: Settings = ctx.obj
    try:
        with Traingate.open(settings) as tg:
            yield tg
    except TraingateError as exc:
        _fail(str(exc))


@contextlib.contextmanager
def _lines(path: str) -> Iterator[IO[str]]:
    """Text lines of a file, of a .gz file, or of standard input (``-``). Bytes that are not
    UTF-8 become lone surrogates, so that their line is rejected and the others kept."""
    if path == "-":
        yield io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
        return
    file = Path(path)
    if not file.is_file():
        _fail(f"no such file: {path}")
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt", encoding="utf-8", errors="surrogateescape") as handle:
        yield handle


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_url",
    envvar="TRAINGATE_DB",
    metavar="URL",
    help="Database URL: sqlite:///PATH or postgresql://… "
    "[env TRAINGATE_DB; default sqlite:///traingate-data/traingate.sqlite]",
)
@click.option(
    "--key-file",
    envvar="TRAINGATE_KEY_FILE",
    metavar="PATH",
    help="Key file, created on first use with mode 0600 "
    "[env TRAINGATE_KEY_FILE; default traingate-data/keys.json]",
)
@click.option(
    "--policy",
    envvar="TRAINGATE_POLICY",
    metavar="LIST",
    help="The policies in force: bundled ids or policy files, comma-separated, each with an "
    "optional @RFC3339 effective date, e.g. consumer-2024,consumer-2025@2026-01-01T00:00:00Z "
    "[env TRAINGATE_POLICY; default consumer-2024 alone]",
)
@click.version_option(package_name="traingate")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, key_file: str | None, policy: str | None) -> None:
    """traingate: decide, with proof, which user data may train models."""
    ctx.obj = Settings.resolve(db_url=db_url, key_file=key_file, policy=policy)


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
    default=5000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Events per transaction.",
)
@click.pass_context
def ingest(ctx: click.Context, file: str, receipts_file: str | None, batch_size: int) -> None:
    """Ingest events from FILE (JSONL, optionally .gz; - for standard input).

    Prints {"accepted", "duplicates", "rejected", "errors"}; exit 1 when anything was rejected.
    """
    with _open(ctx) as tg, _lines(file) as lines:
        try:
            summary = tg.ingest(lines, batch_size=batch_size, actor=cli_actor())
        except UnicodeDecodeError as exc:
            _fail(f"{file} is not UTF-8 text: {exc}")
    if receipts_file and summary.receipts:
        path = Path(receipts_file)
        path.touch(mode=0o600, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            for line, event_id, receipt in summary.receipts:
                out.write(json.dumps({"line": line, "event_id": event_id, "receipt": receipt}))
                out.write("\n")
    _emit(summary.to_dict())
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
    with _open(ctx) as tg:
        result = tg.explain(conversation_id=conversation_id, purpose=purpose, as_of=as_of)
    _emit(result.to_dict())


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
    with _open(ctx) as tg:
        table = tg.policy_show(name=name)
    _emit(table)


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
    under B. A and B take what --policy takes (e.g. consumer-2024 and
    consumer-2024,consumer-2025@2026-01-01T00:00:00Z). Prints JSON; nothing is written."""
    with _open(ctx) as tg:
        result = tg.policy_diff(
            a=a, b=b, as_of=as_of, purposes=purposes, engine=engine, actor=cli_actor()
        )
    _emit(result.to_dict())


@cli.group()
def sample() -> None:
    """The bundled sample of real public conversations (OASST, HH-RLHF)."""


@sample.command("load")
@click.pass_context
def sample_load(ctx: click.Context) -> None:
    """Ingest the bundled sample events (safe to run again: all duplicates the second time)."""
    from traingate.sample.importer import sample_events_path

    with _open(ctx) as tg, gzip.open(sample_events_path(), "rt", encoding="utf-8") as lines:
        summary = tg.ingest(lines, actor=cli_actor())
    _emit(summary.to_dict())
    sys.exit(0 if summary.rejected == 0 else 1)


@sample.command("path")
def sample_path() -> None:
    """Print the path of the bundled sample events file (JSONL, gzip)."""
    from traingate.sample.importer import sample_events_path

    click.echo(str(sample_events_path()))


@cli.group()
def feedback() -> None:
    """Feedback reports in the vault, by receipt (the holder's only handle on a report)."""


def _receipt(value: str) -> str:
    """A receipt from the option, or from standard input with ``-`` (keeps it out of ps)."""
    return sys.stdin.readline().strip() if value == "-" else value


@feedback.command("show")
@click.option("--receipt", required=True, metavar="R", help="The receipt (- reads standard input).")
@click.pass_context
def feedback_show(ctx: click.Context, receipt: str) -> None:
    """Print the stored, de-identified snapshot a receipt names."""
    with _open(ctx) as tg:
        info, snapshot = tg.feedback_show(_receipt(receipt), actor=cli_actor())
    _emit({"report": info.to_dict(), "snapshot": snapshot.to_dict()})


@feedback.command("delete")
@click.option("--receipt", required=True, metavar="R", help="The receipt (- reads standard input).")
@click.pass_context
def feedback_delete(ctx: click.Context, receipt: str) -> None:
    """Delete the report a receipt names: its data key and ciphertext are destroyed."""
    with _open(ctx) as tg:
        info = tg.feedback_delete(_receipt(receipt), actor=cli_actor())
    _emit({"deleted": True, "report_id": info.report_id})


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
    with _open(ctx) as tg:
        result = tg.rotate_keys(retire_old=retire_old, actor=cli_actor())
    _emit(result.to_dict())


@cli.command()
@click.option(
    "--as-of", type=INSTANT, default=None, help="RFC 3339 instant to purge as of [default: now]."
)
@click.pass_context
def purge(ctx: click.Context, as_of: int | None) -> None:
    """Delete expired feedback reports (crypto-shredding) and the data of conversations and
    accounts deleted more than 30 days before the as-of time. Prints the counts as JSON."""
    with _open(ctx) as tg:
        counts = tg.purge(as_of=as_of, actor=cli_actor())
    _emit(counts.to_dict())


@cli.group()
def audit() -> None:
    """The hash-chained audit log of what traingate did (docs/audit.md)."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Check every entry's keyed hash, the chain and the signed head. Prints a JSON summary;
    exit 0 when intact, 1 naming each problem (its seq and kind) when not."""
    with _open(ctx) as tg:
        summary = tg.audit_verify()
    _emit(summary)
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

    with _open(ctx) as tg:
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


def main() -> None:
    cli(prog_name="traingate")


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
@click.pass_context
def dataset_build(
    ctx: click.Context,
    purpose: str,
    as_of: int | None,
    out: Path,
    record_format: str,
    engine: str,
    messages: str | None,
    spark_master: str | None,
) -> None:
    """Build DIR/manifest.json and DIR/data/part-*: every record PURPOSE may use. Prints a
    summary (build id, counts, exclusions, files) as JSON."""
    from traingate.build.progress import terminal_progress

    with _open(ctx) as tg, terminal_progress() as progress:
        result = tg.build_dataset(
            purpose=purpose,
            out=out,
            as_of=as_of,
            format=record_format,
            engine=engine,
            progress=progress,
            actor=cli_actor(),
            messages=messages,
            spark_master=spark_master,
        )
    _emit(result.to_dict())


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
    with _open(ctx) as tg:
        result = tg.export_lake(out=out, as_of=as_of, actor=cli_actor())
    _emit(result.to_dict())


@dataset.command("verify")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path))
@click.pass_context
def dataset_verify(ctx: click.Context, directory: Path) -> None:
    """Check DIR against its manifest: signature, every file's sha256 and rows, the counts.
    Exit 0 when intact; 1, naming each change, when not."""
    with _open(ctx) as tg:
        result = tg.verify_dataset(path=directory)
    _emit(result.to_dict())
    if not result.ok:
        for problem in result.problems:
            click.echo(f"traingate: verify: {problem}", err=True)
        sys.exit(1)


@cli.command()
@click.option("--conversation", "conversation_id", metavar="ID", help="A conversation id.")
@click.option("--receipt", metavar="R", help="A feedback receipt (- reads standard input).")
@click.pass_context
def lineage(ctx: click.Context, conversation_id: str | None, receipt: str | None) -> None:
    """List the dataset builds holding data of a conversation or of a feedback report."""
    if (conversation_id is None) == (receipt is None):
        _fail("give exactly one of --conversation ID and --receipt R")
    with _open(ctx) as tg:
        result = tg.lineage(
            conversation_id=conversation_id,
            receipt=_receipt(receipt) if receipt is not None else None,
        )
    _emit(result.to_dict())


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--datasets-dir",
    envvar="TRAINGATE_DATASETS_DIR",
    default="traingate-data/datasets",
    show_default=True,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where builds started over the API are written [env TRAINGATE_DATASETS_DIR].",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="Log every request line (off: paths carry receipts and login links).",
)
@click.option(
    "--pool-size",
    envvar="TRAINGATE_POOL_SIZE",
    default=4,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Store connections kept open for requests [env TRAINGATE_POOL_SIZE].",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    datasets_dir: Path,
    access_log: bool,
    pool_size: int,
) -> None:
    """Run the HTTP API (OpenAPI at /docs) with uvicorn. See docs/api.md."""
    import uvicorn

    from traingate.api import create_app

    try:
        app = create_app(settings=ctx.obj, datasets_dir=datasets_dir, pool_size=pool_size)
    except TraingateError as exc:
        _fail(str(exc))
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")


@cli.group()
def token() -> None:
    """API bearer tokens (roles: ingest, analyst, privacy_officer)."""


@token.command("create")
@click.option(
    "--role",
    required=True,
    type=click.Choice(ROLES),
    help="What the token may do (docs/api.md).",
)
@click.option("--name", metavar="N", help="A label for the token (who holds it).")
@click.pass_context
def token_create(ctx: click.Context, role: str, name: str | None) -> None:
    """Create a token and print it once: only its hash is stored."""
    with _open(ctx) as tg:
        issued = tg.create_token(role=role, name=name, actor=cli_actor())
    _emit(issued.to_dict())


@cli.group()
def session() -> None:
    """End-user sessions (the demo's login links)."""


@session.command("create")
@click.option("--account", "account_id", required=True, metavar="ID", help="The account.")
@click.option(
    "--ttl",
    default=86_400,
    show_default=True,
    type=click.IntRange(60, 30 * 86_400),
    help="Seconds the session lasts.",
)
@click.pass_context
def session_create(ctx: click.Context, account_id: str, ttl: int) -> None:
    """Open a session for ACCOUNT and print it with its login link path (/login/...)."""
    with _open(ctx) as tg:
        issued = tg.create_session(account_id=account_id, ttl=ttl * 1_000_000, actor=cli_actor())
    _emit(issued.to_dict())


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--datasets-dir",
    envvar="TRAINGATE_DATASETS_DIR",
    default="traingate-data/datasets",
    show_default=True,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo datasets (and builds started in the console) are written.",
)
@click.option("--no-serve", is_flag=True, help="Prepare everything, print it, and exit.")
@click.pass_context
def demo(ctx: click.Context, host: str, port: int, datasets_dir: Path, no_serve: bool) -> None:
    """The main job on the bundled real sample: ingest it, build and verify a model_training and
    a safety_model_training dataset, then serve the privacy center and the admin console and
    print where to look. Safe to run again; Ctrl-C stops the server."""
    from traingate.demo import DEMO_AS_OF, prepare_demo

    with _open(ctx) as tg:
        plan = prepare_demo(tg, datasets_dir=datasets_dir)
    base = f"http://{host}:{port}"
    ingest = plan.ingest
    click.echo(
        f"Sample: {ingest.accepted} events accepted, {ingest.duplicates} already there, "
        f"{ingest.rejected} rejected."
    )
    for dataset in plan.datasets:
        state = "verified" if dataset.verified else "FAILED VERIFICATION"
        how = "existing" if dataset.reused else "built"
        click.echo(
            f"Dataset {dataset.purpose} as of {DEMO_AS_OF}: {dataset.records} records, "
            f"{how}, {state}: {dataset.path}"
        )
    click.echo("\nPrivacy center, signed in as:")
    for user in plan.users:
        click.echo(f"  {user.kind} ({user.account_id}, {user.plan}): {base}{user.login_path}")
        click.echo(f"      {user.answer}")
    click.echo(f"\nAdmin console: {base}/admin  (sign in with token {plan.admin_token})")
    click.echo(f"API docs:      {base}/docs")
    if no_serve:
        return
    click.echo("\nServing; press Ctrl-C to stop.\n")
    ctx.invoke(serve, host=host, port=port, datasets_dir=datasets_dir, access_log=False)
