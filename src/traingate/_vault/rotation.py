"""Master key rotation: add a new master key to the key file, re-wrap every data key under
it, and optionally retire (destroy) the old master keys.

Order matters for crash safety: the new key is saved to the key file *before* any data key is
wrapped under it, and old keys are removed only after the vault has verified that no report
is still wrapped by them. A crash at any point leaves every report readable; running the
rotation again finishes it. Other writers (ingest) must not run during a rotation with
``retire_old``: they hold the key ring as it was when they started.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traingate._errors import StoreError
from traingate._keys import KeyRing, new_master_key, save_keys
from traingate._vault.vault import Vault

__all__ = ["RotationResult", "retire_old_masters", "rotate_master_key"]


@dataclass(frozen=True, slots=True)
class RotationResult:
    master_key_id: str  # the new active master key
    rewrapped: int  # data keys re-wrapped under it
    retired: tuple[str, ...]  # master keys destroyed

    def to_dict(self) -> dict[str, Any]:
        return {
            "master_key_id": self.master_key_id,
            "rewrapped": self.rewrapped,
            "retired": list(self.retired),
        }


def retire_old_masters(*, vault: Vault, keys: KeyRing) -> tuple[KeyRing, tuple[str, ...]]:
    """The key ring without every master key but the active one, and the ids removed.

    Retiring destroys a key (it is removed from the key file, not just flagged), so that any
    leftover copy of a data key wrapped by it (a backup, a free page) can no longer be opened.
    Refused while a report is still wrapped by a key to be removed.
    """
    active = keys.active_master
    still = {key_id: n for key_id, n in vault.master_key_usage().items() if key_id != active.id}
    if still:
        detail = ", ".join(f"{n} by {key_id}" for key_id, n in sorted(still.items()))
        raise StoreError(
            f"cannot retire old master keys: reports are still wrapped by them ({detail}); "
            "run the rotation again first"
        )
    retired = tuple(k.id for k in keys.master_keys if k.id != active.id)
    return dataclasses.replace(keys, master_keys=(active,)), retired


def rotate_master_key(
    *, vault: Vault, key_file: Path, retire_old: bool = False
) -> tuple[RotationResult, KeyRing]:
    """Rotate to a fresh master key; returns the result and the key ring now in the key file.

    ``vault`` must have been opened with the key ring currently in ``key_file``.
    """
    current = vault.keys
    new = new_master_key()
    ring = dataclasses.replace(current, master_keys=(*current.master_keys, new))
    save_keys(key_file, ring)  # 1. the new key exists on disk before anything uses it
    rotated = Vault(vault.db, keys=ring, policy=vault.policy)
    rewrapped = rotated.rotate(new)  # 2. every data key moves under it
    retired: tuple[str, ...] = ()
    if retire_old:  # 3. only now may the old keys go
        ring, retired = retire_old_masters(vault=rotated, keys=ring)
        save_keys(key_file, ring)
    return RotationResult(master_key_id=new.id, rewrapped=rewrapped, retired=retired), ring
