"""Helpers of the build tests (no tests here): run a build in memory, read a dataset back,
walk every string of a record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from traingate._datasets.builder import produce
from traingate._datasets.engines.base import BuildRequest, Engine, Tally
from traingate._datasets.engines.duckdb import DuckDBEngine
from traingate._datasets.engines.scalar import ScalarEngine
from traingate._facade import Traingate

__all__ = ["Built", "all_strings", "read_dataset", "run_engine"]


@dataclass(frozen=True)
class Built:
    records: list[dict[str, Any]]
    messages: Tally
    reports: Tally
    decisions: list[tuple[str, int, str | None, str | None, int]]


def run_engine(
    tg: Traingate, *, purpose: str, as_of: int, engine: Engine | str = "duckdb"
) -> Built:
    """Every record of a build, in output order, with its decisions, without writing files."""
    if isinstance(engine, str):
        engine = DuckDBEngine() if engine == "duckdb" else ScalarEngine()
    request = BuildRequest(policy=tg.policies, purpose=purpose, as_of=as_of, keep_decisions=True)
    records: list[dict[str, Any]] = []
    messages, reports = Tally(), Tally()
    decisions: list[tuple[str, int, str | None, str | None, int]] = []
    steps = produce(store=tg.store, vault=tg.vault, keys=tg.keys, request=request, engine=engine)
    for step in steps:
        records.extend(step.records.to_pylist())
        messages, reports = messages + step.messages, reports + step.reports
        if step.decisions is not None:
            decisions.extend(
                (r["conversation_id"], r["seq"], r["basis"], r["reason"], r["policy"])
                for r in step.decisions.to_pylist()
            )
    return Built(records=records, messages=messages, reports=reports, decisions=sorted(decisions))


def read_dataset(directory: Path) -> list[dict[str, Any]]:
    """The records of a dataset directory, in file order."""
    manifest = json.loads((directory / "manifest.json").read_text())
    out: list[dict[str, Any]] = []
    for entry in manifest["files"]:
        path = directory / entry["path"]
        if path.suffix == ".parquet":
            table: pa.Table = pq.read_table(path)
            out.extend(table.to_pylist())
        else:
            out.extend(json.loads(line) for line in path.read_text().splitlines())
    return out


def all_strings(value: Any) -> Iterator[str]:
    """Every string in a record: values and keys, at any depth, JSON text parsed too."""
    if isinstance(value, str):
        yield value
        if value[:1] in "{[":
            try:
                parsed = json.loads(value)
            except ValueError:
                return
            yield from all_strings(parsed)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from all_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from all_strings(item)
