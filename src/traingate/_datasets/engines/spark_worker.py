"""What every function of the Spark engine that a Spark task runs does first (``task``).

PySpark's daemon runs a full ``gc.collect()`` in a reused Python worker after each of its
tasks (``pyspark/daemon.py``). The engine's tasks import traingate, DuckDB and pyarrow: about
100,000 objects, which that collection walked again after every task, ~60 ms each on a CI
core, for tasks that often take less. ``task`` freezes what is alive when a task starts
(``gc.freeze``: the modules the worker has imported and what the last task left, whose garbage
the daemon's collection has just freed), so the collection walks only the task's own objects.
Frozen objects are still freed when nothing refers to them; only a reference cycle among them
outlives its use, and what a task is handed (its plan) holds none.

The driver never runs these functions; Spark's Python workers alone do.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["task"]

P = ParamSpec("P")
R = TypeVar("R")


def task(function: Callable[P, R]) -> Callable[P, R]:
    """``function``, run by a Spark task, freezes the worker's objects first (above)."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        gc.freeze()
        return function(*args, **kwargs)

    return run
