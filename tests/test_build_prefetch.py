"""An engine run ahead on a worker thread (``Prefetch``): the same items in the same order,
its errors raised in the consumer's thread, and an early exit closing it before returning."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from traingate._datasets.prefetch import Prefetch


def test_items_arrive_in_order() -> None:
    with Prefetch(iter(range(1000)), depth=3) as ahead:
        assert list(ahead) == list(range(1000))


def test_an_error_reaches_the_consumer_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise KeyboardInterrupt

    seen = []
    with pytest.raises(KeyboardInterrupt), Prefetch(items()) as ahead:
        seen.extend(ahead)
    assert seen == [1, 2]


def test_leaving_early_closes_the_iterator_on_its_thread() -> None:
    closed: list[str] = []

    def items() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            closed.append(threading.current_thread().name)

    with Prefetch(items(), depth=1) as ahead:
        for item in ahead:
            if item == 3:
                break
    assert closed == ["traingate-prefetch"]  # closed, and joined before the block ended
