"""Build engines: ``duckdb`` (the bulk evaluator) and ``scalar`` (the reference)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traingate.build import ENGINES
from traingate.errors import BuildError

if TYPE_CHECKING:
    from traingate.build.engine import Engine

__all__ = ["engine_named"]


def engine_named(name: str) -> Engine:
    """The engine called ``name``, with its default settings."""
    if name == "duckdb":
        from traingate.build.engines.duckdb import DuckDBEngine

        return DuckDBEngine()
    if name == "scalar":
        from traingate.build.engines.scalar import ScalarEngine

        return ScalarEngine()
    raise BuildError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
