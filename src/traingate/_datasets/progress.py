"""Progress of a build: a rich progress bar on a terminal, nothing otherwise."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import IO, Protocol

__all__ = ["Progress", "terminal_progress"]


class Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, messages: int) -> None: ...


class _RichProgress:
    def __init__(self, progress: object, description: str) -> None:
        from rich.progress import Progress as RichProgress

        assert isinstance(progress, RichProgress)
        self._progress = progress
        self._task = progress.add_task(description, total=None)

    def start(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def advance(self, messages: int) -> None:
        self._progress.advance(self._task, messages)


@contextlib.contextmanager
def terminal_progress(
    description: str = "messages", *, stream: IO[str] | None = None
) -> Iterator[Progress | None]:
    """A progress bar on ``stream`` (standard error) when it is a terminal, else None."""
    out = sys.stderr if stream is None else stream
    if not out.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import (
        Progress as RichProgress,
    )

    with RichProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=out),
        transient=True,
    ) as progress:
        yield _RichProgress(progress, description)
