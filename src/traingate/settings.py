"""Settings: where the database, the key file and the policy are. Resolved once, then passed on.

- database: ``--db`` / ``TRAINGATE_DB``, default ``sqlite:///traingate-data/traingate.sqlite``
- key file: ``--key-file`` / ``TRAINGATE_KEY_FILE``, default ``traingate-data/keys.json``
- policy file: ``--policy`` / ``TRAINGATE_POLICY``, default the bundled ``consumer-2024``
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_DATA_DIR", "SETTINGS", "Settings"]

DEFAULT_DATA_DIR = Path("traingate-data")
DEFAULT_DB_URL = f"sqlite:///{DEFAULT_DATA_DIR}/traingate.sqlite"
DEFAULT_KEY_FILE = DEFAULT_DATA_DIR / "keys.json"

# Every setting traingate reads from the environment (documented in docs/settings.md).
SETTINGS: dict[str, str] = {
    "TRAINGATE_DB": "Database URL: sqlite:///PATH (default) or postgresql://...",
    "TRAINGATE_KEY_FILE": "Path of the key file (created on first use with mode 0600).",
    "TRAINGATE_POLICY": "Path of a policy file to use instead of the bundled consumer-2024.",
    "TRAINGATE_DATASETS_DIR": "Where `traingate serve` writes builds started over the HTTP API.",
}


@dataclass(frozen=True, slots=True)
class Settings:
    db_url: str
    key_file: Path
    policy_file: Path | None = None

    @classmethod
    def resolve(
        cls,
        *,
        db_url: str | None = None,
        key_file: str | Path | None = None,
        policy_file: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Explicit values win, then the environment, then the defaults."""
        env = os.environ if environ is None else environ
        db = db_url or env.get("TRAINGATE_DB") or DEFAULT_DB_URL
        keys = key_file or env.get("TRAINGATE_KEY_FILE") or DEFAULT_KEY_FILE
        policy = policy_file or env.get("TRAINGATE_POLICY") or None
        return cls(
            db_url=db,
            key_file=Path(keys),
            policy_file=Path(policy) if policy else None,
        )
