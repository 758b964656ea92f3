"""A build's books: what its records hold and what decided them, added up step by step.

The builder (``builder.py``) adds every step of a build as it writes it: the records and
messages by (kind, basis) its records hold (``_count``, grouped by Arrow, or as the engine
counted the parts it wrote), the rows of the shape (``_datasets/shapes.py``), the tallies of
the decisions, the messages read, and the items each policy of the request decided. Before
the manifest is written they must balance (``Books.balance``); a build that does not is
refused, not written.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from traingate._core.policy import PolicySet
from traingate._datasets.engines.base import Tally, Written
from traingate._datasets.shapes import Shape, Shaped, ShapeTally
from traingate._errors import BuildError

if TYPE_CHECKING:
    from traingate._datasets.produce import Produced

__all__ = ["Books"]


class Books:
    """The sums of a build: ``counts`` and ``sizes`` (records and messages by (kind, basis)),
    ``shaped`` (the rows of the shape), ``messages`` and ``reports`` (the decisions' tallies),
    ``seen`` (the messages read) and ``by_policy`` (the messages and the reports each policy
    decided, by position)."""

    def __init__(self, shape: Shape) -> None:
        self.shaped = ShapeTally(shape=shape)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.sizes: Counter[tuple[str, str]] = Counter()
        self.messages, self.reports, self.seen = Tally(), Tally(), 0
        self.by_policy: tuple[Counter[int], Counter[int]] = (Counter(), Counter())

    def add_written(self, written: Written) -> None:
        """The parts and rows the engine wrote itself, as it counted them."""
        self.shaped = _with_written(self.shaped, written)
        for key, (n, size) in written.counts.items():
            self.counts[key] += n
            self.sizes[key] += size

    def add_rows(self, rows: Shaped) -> None:
        """The rows of the shape the builder writes."""
        self.shaped = self.shaped.add(rows)

    def add(self, step: Produced) -> None:
        """The step's records and the decisions they came from."""
        _count(self.counts, self.sizes, step.records)
        self.messages, self.reports = self.messages + step.messages, self.reports + step.reports
        self.seen += step.messages_seen
        self.by_policy[0].update(step.messages_by_policy)
        self.by_policy[1].update(step.reports_by_policy)

    def balance(self, policies: PolicySet) -> dict[tuple[str, str], tuple[int, int]]:
        """The records and messages by (kind, basis), once the books balance (else BuildError).
        With one policy, that policy decided every message read."""
        totals = {key: (self.counts[key], self.sizes[key]) for key in self.counts}
        if len(policies.policies) == 1 and self.seen:
            self.by_policy[0][0] = self.seen
        _check(totals, self.messages, self.reports, self.seen, self.by_policy)
        return totals

    @property
    def records(self) -> int:
        return sum(self.counts.values())

    @property
    def record_messages(self) -> int:
        """The messages the records hold."""
        return sum(self.sizes.values())


def _with_written(shaped: ShapeTally, written: Written) -> ShapeTally:
    """The shape's tally with what the engine wrote."""
    left_out = Counter(shaped.left_out)
    left_out.update(written.left_out)
    return dataclasses.replace(
        shaped,
        rows=shaped.rows + written.rows,
        messages=shaped.messages + written.messages,
        left_out=dict(left_out),
    )


def _count(
    counts: Counter[tuple[str, str]], sizes: Counter[tuple[str, str]], batch: pa.RecordBatch
) -> None:
    """Add the batch's records and messages per (kind, basis) (grouped by Arrow)."""
    if batch.num_rows == 0:
        return
    lengths = pc.fill_null(pc.list_value_length(batch.column("messages")), 0)
    table = pa.table({"kind": batch.column("kind"), "basis": batch.column("basis"), "n": lengths})
    grouped = table.group_by(["kind", "basis"]).aggregate([("n", "sum"), ("n", "count")])
    for kind, basis, n, records in zip(
        grouped.column("kind").to_pylist(),
        grouped.column("basis").to_pylist(),
        grouped.column("n_sum").to_pylist(),
        grouped.column("n_count").to_pylist(),
        strict=True,
    ):
        key = (str(kind), str(basis))
        counts[key] += int(records or 0)
        sizes[key] += int(n or 0)


def _check(
    counts: dict[tuple[str, str], tuple[int, int]],
    messages: Tally,
    reports: Tally,
    seen: int,
    by_policy: tuple[Counter[int], Counter[int]],
) -> None:
    """The books must balance; a build that does not is refused, not written."""
    problems = []
    if messages.considered != seen:
        problems.append(f"{seen} messages read, {messages.considered} decided")
    for kind, tally, decided in (
        ("message", messages, by_policy[0]),
        ("report", reports, by_policy[1]),
    ):
        if decided.total() != tally.considered:
            problems.append(
                f"{tally.considered} {kind}s decided, {decided.total()} by the policies in force"
            )
    for kind, tally, index in (("conversation", messages, 1), ("feedback", reports, 0)):
        written = Counter({b: v[index] for (k, b), v in counts.items() if k == kind})
        if dict(+written) != {b: n for b, n in tally.included_by_basis().items() if n}:
            problems.append(
                f"{kind}: records hold {dict(written)}, decisions included "
                f"{tally.included_by_basis()}"
            )
    if problems:
        raise BuildError("the build does not balance: " + "; ".join(problems))
