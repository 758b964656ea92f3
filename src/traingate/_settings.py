"""Settings: where the database, the key file and the policy are. Resolved once, then passed on.

- database: ``--db`` / ``TRAINGATE_DB``, default ``sqlite:///traingate-data/traingate.sqlite``
- key file: ``--key-file`` / ``TRAINGATE_KEY_FILE``, default ``traingate-data/keys.json``
- policies in force: ``--policy`` / ``TRAINGATE_POLICY``, a comma-separated list of bundled
  policy ids or policy file paths, each with an optional ``@RFC3339`` effective date
  (``OLD,NEW@2026-01-01T00:00:00Z``); default: the policy ``_core/policy/vocabulary.toml`` names
  (``traingate._core.policy.versions``)
- message lake: ``TRAINGATE_LAKE``, none by default: where ingest reads a feedback report's
  messages that the store does not hold (docs/lake.md)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_SPARK_MASTER",
    "SETTINGS",
    "Settings",
    "private_dir",
    "spark_master_url",
]

DEFAULT_DATA_DIR = Path("traingate-data")
DEFAULT_DB_URL = f"sqlite:///{DEFAULT_DATA_DIR}/traingate.sqlite"
DEFAULT_KEY_FILE = DEFAULT_DATA_DIR / "keys.json"

# Every setting traingate reads from the environment (documented in docs/settings.md).
SETTINGS: dict[str, str] = {
    "TRAINGATE_DB": "Database URL: sqlite:///PATH (default) or postgresql://...",
    "TRAINGATE_KEY_FILE": "Path of the key file (created on first use with mode 0600).",
    "TRAINGATE_POLICY": "The policies in force: bundled ids or policy file paths, comma-separated,"
    " each with an optional @RFC3339 effective date (default: the bundled default policy alone).",
    "TRAINGATE_DATASETS_DIR": "Where `traingate serve` writes builds started over the HTTP API.",
    "TRAINGATE_SPARK_MASTER": "Spark master URL of `--engine spark` builds (default local[2]).",
    "TRAINGATE_POOL_SIZE": "Store connections `traingate serve` keeps open (default 4).",
    "TRAINGATE_LAKE": "A message lake (docs/lake.md) that ingest reads a feedback report's"
    " conversation from, at receipt, when the store does not hold its messages (default: none).",
    "TRAINGATE_INGEST_WORKERS": "Parse processes of `traingate ingest` for the lines past the"
    " first 20,000 (default: one less than the cores, at most 4; 0: none).",
}
DEFAULT_SPARK_MASTER = "local[2]"


def spark_master_url(environ: Mapping[str, str] | None = None) -> str:
    """The Spark master of ``--engine spark`` builds: ``TRAINGATE_SPARK_MASTER`` or local[2]."""
    env = os.environ if environ is None else environ
    return env.get("TRAINGATE_SPARK_MASTER") or DEFAULT_SPARK_MASTER


@dataclass(frozen=True, slots=True)
class Settings:
    db_url: str
    key_file: Path
    policy: str | None = None  # the --policy value; None: consumer-2024 alone
    lake: Path | None = None  # where reports' messages the store does not hold are read

    @classmethod
    def resolve(
        cls,
        *,
        db_url: str | None = None,
        key_file: str | Path | None = None,
        policy: str | None = None,
        lake: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Explicit values win, then the environment, then the defaults."""
        env = os.environ if environ is None else environ
        db = db_url or env.get("TRAINGATE_DB") or DEFAULT_DB_URL
        keys = key_file or env.get("TRAINGATE_KEY_FILE") or DEFAULT_KEY_FILE
        policies = policy or env.get("TRAINGATE_POLICY") or None
        lake_root = lake or env.get("TRAINGATE_LAKE") or None
        return cls(
            db_url=db,
            key_file=Path(keys),
            policy=policies,
            lake=None if lake_root is None else Path(lake_root).absolute(),
        )


def private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700, whatever the umask (the store,
    the vault and the key file hold messages, e-mail addresses and the keys to reports).
    Directories that already exist are left as they are: they may be the operator's."""
    missing: list[Path] = []
    walk = path
    while not walk.exists():
        missing.append(walk)
        if walk.parent == walk:
            break
        walk = walk.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    if not path.is_dir():
        path.mkdir()  # a file in its place: FileExistsError, as mkdir says it
