"""Commands that serve or hand out access: serve, tokens, sessions, the demo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from traingate._access.credentials import ROLES
from traingate._audit.actions import cli_actor
from traingate._cli.common import emit, fail, open_app
from traingate._cli.root import cli
from traingate._core.timeutil import format_instant
from traingate._errors import TraingateError


def _listen_options(command: Callable[..., None]) -> Callable[..., None]:
    """--host, --port and --datasets-dir, as serve and demo take them."""
    for option in reversed(
        (
            click.option(
                "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
            ),
            click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535)),
            click.option(
                "--datasets-dir",
                envvar="TRAINGATE_DATASETS_DIR",
                default="traingate-data/datasets",
                show_default=True,
                metavar="DIR",
                type=click.Path(file_okay=False, path_type=Path),
                help="Where builds started over the API (and the demo's datasets) are written"
                " [env TRAINGATE_DATASETS_DIR].",
            ),
        )
    ):
        command = option(command)
    return command


@cli.command()
@_listen_options
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

    from traingate._server import create_app

    try:
        app = create_app(settings=ctx.obj, datasets_dir=datasets_dir, pool_size=pool_size)
    except TraingateError as exc:
        fail(str(exc))
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
    with open_app(ctx) as tg:
        issued = tg.access.create_token(role=role, name=name, actor=cli_actor())
    emit(issued.to_dict())


@token.command("list")
@click.pass_context
def token_list(ctx: click.Context) -> None:
    """List every token, live or revoked: id, role, name, created, revoked (no secrets)."""
    with open_app(ctx) as tg:
        tokens = tg.access.tokens()
    emit({"tokens": [t.to_dict() for t in tokens]})


# An id that begins with '-' (one in 64 of those made before new ids stopped beginning with
# one) is taken as the id, whatever letters follow: no option of this command has a short
# name (not even -h, which would match any id holding an 'h'), and unknown ones are ids.
@token.command(
    "revoke", context_settings={"ignore_unknown_options": True, "help_option_names": ["--help"]}
)
@click.argument("token_id", metavar="TOKEN_ID")
@click.pass_context
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke the token TOKEN_ID (the token_id of token create and token list, not the
    secret) at once: every later request with it is refused. Exit 2 when no live token has
    that id. An id may begin with '-' (so -h is an id here, not help). See
    docs/operations.md for rotating a token."""
    with open_app(ctx) as tg:
        revoked = tg.access.revoke_token(token_id=token_id, actor=cli_actor())
    emit(revoked.to_dict())


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
    with open_app(ctx) as tg:
        issued = tg.access.create_session(
            account_id=account_id, ttl=ttl * 1_000_000, actor=cli_actor()
        )
    emit(issued.to_dict())


@cli.command()
@_listen_options
@click.option("--no-serve", is_flag=True, help="Prepare everything, print it, and exit.")
@click.pass_context
def demo(ctx: click.Context, host: str, port: int, datasets_dir: Path, no_serve: bool) -> None:
    """The main job on the bundled real sample: ingest it, build and verify a dataset for
    each purpose that both conversations and feedback serve (the training purposes), then
    serve the privacy center and the admin console and print where to look. Safe to run
    again; Ctrl-C stops the server."""
    from traingate._cli.demo import DEMO_AS_OF, prepare_demo

    with open_app(ctx) as tg:
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
    click.echo("\nPrivacy center, signed in as (each link works once):")
    for user in plan.users:
        click.echo(f"  {user.kind} ({user.account_id}, {user.plan}): {base}{user.login_path}")
        click.echo(f"      {user.answer}")
    if plan.users:
        valid = format_instant(min(user.expires_at for user in plan.users))
        click.echo(f"  The links are valid until {valid}; run the demo again for new ones.")
    click.echo(f"\nAdmin console: {base}/admin  (sign in with the token of the role a page needs)")
    for console in plan.console_tokens:
        click.echo(f"  {console.role} ({', '.join(console.pages)}): {console.token}")
    click.echo("  Start a build and watch it (Builds) with the analyst token.")
    click.echo(f"API docs:      {base}/docs  (ReDoc: {base}/redoc)")
    if no_serve:
        return
    click.echo("\nServing; press Ctrl-C to stop.\n")
    ctx.invoke(serve, host=host, port=port, datasets_dir=datasets_dir, access_log=False)
