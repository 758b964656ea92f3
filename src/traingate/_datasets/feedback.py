"""Feedback records from vault reports: each report decided again under the policy in force
at its submission (``decide_report``), the included ones made into records
(``feedback_record``). Pure: the reports come in already decrypted, wherever they were read
(the builder's vault, ``produce._feedback``; a Spark task, ``engines/spark_feedback.py``), so
every engine makes the same records from the same reports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from traingate._core.policy import PolicySet, decide_report
from traingate._datasets.engines.base import Tally
from traingate._datasets.records import RECORD_SCHEMA, LineageItem, feedback_record
from traingate._vault.vault import VaultRecord

__all__ = ["FeedbackBatch", "feedback_batches", "feedback_granted"]


@dataclass(frozen=True, slots=True)
class FeedbackBatch:
    """Feedback records (``RECORD_SCHEMA``) with their lineage items, the tally of the reports
    decided for them and how many of those each policy of the set decided (by position)."""

    records: pa.RecordBatch
    items: tuple[LineageItem, ...]
    tally: Tally
    by_policy: dict[int, int]


def feedback_granted(policies: PolicySet, purpose: str) -> bool:
    """Whether the feedback basis of a policy of the set grants ``purpose``: else a build
    considers no report at all."""
    return any(
        (basis := p.feedback_basis) is not None and purpose in basis.purposes
        for p in policies.policies
    )


def feedback_batches(
    reports: Iterable[VaultRecord],
    *,
    policies: PolicySet,
    purpose: str,
    as_of: int,
    signing_key: bytes,
    size: int,
) -> Iterator[FeedbackBatch]:
    """The records of ``reports``, in their order, ``size`` records a batch; a last batch
    carries what is left (records or only decisions)."""
    rows: list[dict[str, Any]] = []
    items: list[LineageItem] = []
    tally: Counter[tuple[str | None, str | None]] = Counter()
    deciding: Counter[int] = Counter()

    def flush() -> FeedbackBatch:
        batch = FeedbackBatch(
            records=pa.RecordBatch.from_pylist(rows, schema=RECORD_SCHEMA),
            items=tuple(items),
            tally=Tally(counts=dict(tally)),
            by_policy=dict(deciding),
        )
        rows.clear()
        items.clear()
        tally.clear()
        deciding.clear()
        return batch

    for report in reports:
        index = policies.index_at(report.submitted_at)
        decision = decide_report(
            policy=policies.policies[index],
            submitted_at=report.submitted_at,
            purpose=purpose,
            as_of=as_of,
            mode=report.snapshot.mode,
            comment=report.snapshot.comment,
        )
        deciding[index] += 1
        if decision.basis is None:
            tally[(None, decision.primary_reason)] += 1
            continue
        tally[(decision.basis, None)] += 1
        record, item = feedback_record(
            signing_key=signing_key,
            record_key=report.record_key,
            basis=decision.basis,
            snapshot=report.snapshot,
        )
        rows.append(record)
        items.append(item)
        if len(rows) >= size:
            yield flush()
    if rows or tally:
        yield flush()
