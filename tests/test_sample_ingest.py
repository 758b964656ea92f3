"""The bundled real sample through the whole ingest path, on SQLite and PostgreSQL (large batches
take PostgreSQL's COPY path), then again as duplicates."""

from __future__ import annotations

import gzip
from collections import Counter

from traingate._core.timeutil import parse_instant
from traingate._facade import Traingate
from traingate._sample.importer import sample_events_path


def test_sample_ingests_cleanly_and_idempotently(tg: Traingate) -> None:
    with gzip.open(sample_events_path(), "rt", encoding="utf-8") as lines:
        first = tg.events.ingest(lines)
    assert first.rejected == 0, first.errors[:3]
    assert first.accepted > 15_000
    assert len(first.receipts) == tg.store.count("feedback_keys")
    with gzip.open(sample_events_path(), "rt", encoding="utf-8") as lines:
        again = tg.events.ingest(lines)
    assert (again.accepted, again.duplicates, again.rejected) == (0, first.accepted, 0)
    as_of = parse_instant("2025-07-01T00:00:00Z")
    decided: Counter[str] = Counter()
    for (conversation_id,) in tg.store.db.execute(
        "SELECT conversation_id FROM conversations ORDER BY conversation_id LIMIT 200"
    ):
        result = tg.privacy.explain(
            conversation_id=conversation_id, purpose="model_training", as_of=as_of
        )
        decided.update(m.decision.basis or m.decision.reasons[0] for m in result.messages)
    # the sample is built to exercise every outcome of the consent rules
    assert decided["opt_in"] > 0
    assert decided["no_consent"] > 0
