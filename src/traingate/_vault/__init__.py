"""The feedback vault (docs/vault.md).

- ``snapshot``: the pure SPEC §3 snapshot of a feedback report.
- ``crypto``: envelope encryption (AES-256-GCM data key per report, wrapped by a master key)
  and receipt secrets.
- ``vault``: the ``Vault`` store: put (the ingest sink), show/delete by receipt, expiry purge,
  reads for dataset builds, re-wrapping under a new master key.
- ``rotation``: master key rotation and retirement, key file included.

Submodules are imported directly (``from traingate._vault.vault import Vault``), keeping this
package import free of cycles.
"""
