"""Build engines: ``duckdb`` (the bulk evaluator), ``spark`` (the same compiled policy in
Spark tasks) and ``scalar`` (the reference)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traingate._datasets import ENGINES
from traingate._errors import BuildError

if TYPE_CHECKING:
    from traingate._datasets.engines.base import Engine

__all__ = ["engine_named"]


def engine_named(name: str, *, spark_master: str | None = None) -> Engine:
    """The engine called ``name``, with its default settings. ``spark_master``: the Spark
    master URL (default ``TRAINGATE_SPARK_MASTER``, else ``local[2]``)."""
    if name == "duckdb":
        from traingate._datasets.engines.duckdb import DuckDBEngine

        return DuckDBEngine()
    if name == "spark":
        from traingate._datasets.engines.spark import SparkEngine
        from traingate._settings import spark_master_url

        return SparkEngine(master=spark_master or spark_master_url())
    if name == "scalar":
        from traingate._datasets.engines.scalar import ScalarEngine

        return ScalarEngine()
    raise BuildError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
