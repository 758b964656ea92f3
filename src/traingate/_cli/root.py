"""The ``traingate`` group and its global options."""

from __future__ import annotations

import click

from traingate._core.policy import bundled_policy_ids, default_policy_id
from traingate._settings import Settings


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
    "optional @RFC3339 effective date, e.g. OLD,NEW@2026-01-01T00:00:00Z "
    f"(bundled: {', '.join(bundled_policy_ids())}) "
    f"[env TRAINGATE_POLICY; default {default_policy_id()} alone]",
)
@click.version_option(package_name="traingate")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, key_file: str | None, policy: str | None) -> None:
    """traingate: decide, with proof, which user data may train models."""
    ctx.obj = Settings.resolve(db_url=db_url, key_file=key_file, policy=policy)


def main() -> None:
    cli(prog_name="traingate")
