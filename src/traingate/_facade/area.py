"""What every area of the facade is: a view over the ``Traingate`` that opened the store, the
vault, the policies and the key ring, read from it at each call (so that there is one of
each, and a rotated key ring or a replaced vault is what every area uses next)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from traingate._facade.traingate import Traingate

__all__ = ["Area"]


class Area:
    def __init__(self, tg: Traingate) -> None:
        self._tg = tg
