"""Helpers shared by the commands: output, failure, instants, opening the facade, input."""

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
from traingate.errors import TraingateError
from traingate.settings import Settings
from traingate.timeutil import parse_instant


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def fail(message: str) -> NoReturn:
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
def open_app(ctx: click.Context) -> Iterator[Traingate]:
    settings: Settings = ctx.obj
    try:
        with Traingate.open(settings) as tg:
            yield tg
    except TraingateError as exc:
        fail(str(exc))


@contextlib.contextmanager
def event_lines(path: str) -> Iterator[IO[str]]:
    """Text lines of a file, of a .gz file, or of standard input (``-``). Bytes that are not
    UTF-8 become lone surrogates, so that their line is rejected and the others kept."""
    if path == "-":
        yield io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
        return
    file = Path(path)
    if not file.exists():
        fail(f"no such file: {path}")
    if file.is_dir():
        fail(f"{path} is a directory, not a file of events")
    opener = gzip.open if file.suffix == ".gz" else open
    try:  # a pipe (``<(zcat events.gz)``) or a device is read as it comes
        handle = opener(file, "rt", encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    with handle:
        yield handle


def receipt_value(value: str) -> str:
    """A receipt from the option, or from standard input with ``-`` (keeps it out of ps)."""
    return sys.stdin.readline().strip() if value == "-" else value
