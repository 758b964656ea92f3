"""What every area of the facade is: a view over the ``Traingate`` that opened the store, the
vault, the policies and the key ring, read from it at each call (so that there is one of
each, and a rotated key ring or a replaced vault is what every area uses next)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from traingate._errors import EventError

if TYPE_CHECKING:
    from traingate._facade.traingate import Traingate
    from traingate._ingest import IngestSummary

__all__ = ["Area"]


class Area:
    def __init__(self, tg: Traingate) -> None:
        self._tg = tg

    def _ingest_one(self, event: dict[str, Any], *, actor: str) -> IngestSummary:
        """One event a user starts (a consent change, a deletion, a feedback report), through
        ingest like any other. Raises EventError when it is rejected."""
        summary = self._tg.events.ingest([json.dumps(event)], actor=actor)
        if summary.rejected:
            raise EventError(summary.errors[0].error, event_id=event["event_id"])
        return summary
