"""The ``Traingate`` facade: what ``Traingate.open`` opens once (the policies, the key ring,
the store, the vault, the lake archive), and the areas over it (``_facade/__init__.py``)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from traingate._core.policy import Policy, PolicySet, load_policy_set
from traingate._core.timeutil import now_micros
from traingate._facade.access import Access
from traingate._facade.audit import Audit
from traingate._facade.events import Events
from traingate._facade.feedback import Feedback
from traingate._facade.privacy import Privacy
from traingate._facade.retention import Retention
from traingate._ingest import LakeArchive, MessageArchive
from traingate._keys import KeyRing, load_or_create_keys
from traingate._settings import Settings
from traingate._store.db import connect
from traingate._store.store import Store
from traingate._vault.vault import Vault

if TYPE_CHECKING:
    from traingate._facade.datasets import Datasets

__all__ = ["Traingate"]


class Traingate:
    """Open with ``Traingate.open(settings)``; close with ``close()`` or a ``with`` block.

    The operations are methods of its areas: ``events``, ``privacy``, ``datasets``,
    ``feedback``, ``retention``, ``access``, ``audit``. Every one of them reads what the
    facade opened from the facade (``store``, ``vault``, ``policies``, ``keys``), so that
    there is one of each; ``keys`` is the store's key ring, which the vault reads too.
    """

    def __init__(
        self,
        *,
        store: Store,
        policy: Policy | PolicySet,
        key_file: Path | None = None,
        archive: MessageArchive | None = None,
    ) -> None:
        self.store = store
        self.vault = Vault(store.db, keys=store, policy=policy)  # reads the store's key ring
        self.policies = PolicySet.of(policy)  # every item is decided by the one in force then
        self.key_file = key_file  # where rotation writes the key ring (None: rotation refused)
        self.archive = archive  # where reports' messages the store does not hold are read
        self.events = Events(self)
        self.privacy = Privacy(self)
        self.feedback = Feedback(self)
        self.retention = Retention(self)
        self.access = Access(self)
        self.audit = Audit(self)

    @cached_property
    def datasets(self) -> Datasets:
        """Builds, lineage, the lake, policy show and diff; loaded on first use (the build
        modules import DuckDB and Arrow)."""
        from traingate._facade.datasets import Datasets

        return Datasets(self)

    @classmethod
    def open(cls, settings: Settings) -> Traingate:
        """Open the policies, the key file and the store (migrating it), and settle the
        builds a killed process left pending (docs/builds.md)."""
        policies = load_policy_set(settings.policy)
        keys = load_or_create_keys(settings.key_file)
        db = connect(settings.db_url)
        try:
            store = Store.open(db, keys=keys)
            app = cls(
                store=store,
                policy=policies,
                key_file=settings.key_file,
                archive=None if settings.lake is None else LakeArchive.at(str(settings.lake)),
            )
        except BaseException:
            db.close()
            raise
        try:
            if store.has_pending_builds():  # else without importing the build modules
                app.datasets.settle()
        except BaseException:
            app.close()
            raise
        return app

    @property
    def keys(self) -> KeyRing:
        """The one key ring of this facade (the store holds it; the vault reads it there)."""
        return self.store.keys

    def use_keys(self, ring: KeyRing) -> None:
        """Replace the key ring (after a rotation): the store, the vault and every area read
        the new one."""
        self.store.keys = ring

    @property
    def policy(self) -> Policy:
        """The policy in force now (what the pages describe); decisions use ``policies``."""
        return self.policies.in_force(now_micros())

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Traingate:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
