"""How hard the costliest randomized tests try: a quick budget for every push, a thorough one.

``make test`` (and so CI, ``.ci/run``) runs the quick budgets: the suite has to fit in seven
minutes on two cores, and these few tests were a third of it. ``make test-thorough``
(``TRAINGATE_TEST_THOROUGH=1``) runs the thorough ones, which every run used before: before a
release, after a change to the policy compiler, an engine or the store's export, or whenever a
quick run found something. Only tests that cost ~0.5 s or more an example (a store, an ingest,
every engine over every purpose) or a process killed have two budgets; the others run at one.

A quick budget is a sample of the same property, not a different test: the same strategies, the
same assertions, and Hypothesis draws new examples on every run (no fixed seed), so successive
pushes explore what one thorough run does.
"""

from __future__ import annotations

import os

__all__ = ["THOROUGH", "budget"]

THOROUGH = os.environ.get("TRAINGATE_TEST_THOROUGH", "").lower() in {"1", "true", "yes"}


def budget(*, quick: int, thorough: int) -> int:
    """``thorough`` under ``TRAINGATE_TEST_THOROUGH=1``, else ``quick``."""
    if not 0 < quick <= thorough:
        raise ValueError(f"a quick budget is at least 1 and at most the thorough one: {quick}")
    return thorough if THOROUGH else quick
