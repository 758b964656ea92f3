"""Helpers shared by the commands: output, failure, instants, opening the facade, input."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from traingate._core.timeutil import parse_instant
from traingate._errors import TraingateError
from traingate._facade import Traingate
from traingate._settings import Settings


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


class GuardedLines:
    """The lines of a file until it cannot be read any further (a file named .gz that is not
    gzip, a truncated .gz, an I/O error): then the lines stop, and ``damage`` says why and
    after which line, so that whatever was read before is ingested and reported."""

    def __init__(self, path: str, handle: Iterable[str]) -> None:
        self.path = path
        self.handle = handle
        self.lines = 0
        self.damage: str | None = None

    def __iter__(self) -> Iterator[str]:
        try:
            for line in self.handle:
                self.lines += 1
                yield line
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.damage = (
                f"{self.path} cannot be read past line {self.lines}: {reason or type(exc).__name__}"
                f"; the {self.lines} lines before it were ingested"
            )


@contextlib.contextmanager
def event_lines(path: str) -> Iterator[GuardedLines]:
    """Text lines of a file, of a .gz file, or of standard input (``-``). Bytes that are not
    UTF-8 become lone surrogates, so that their line is rejected and the others kept. A file
    that cannot be read to its end gives the lines before the damage (``GuardedLines``)."""
    if path == "-":
        stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
        yield GuardedLines("standard input", stdin)
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
        yield GuardedLines(path, handle)


def receipt_value(value: str) -> str:
    """A receipt from the option, or from standard input with ``-`` (keeps it out of ps)."""
    return sys.stdin.readline().strip() if value == "-" else value
