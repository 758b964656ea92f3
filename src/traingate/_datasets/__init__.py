"""Dataset builds (docs/builds.md): the bulk policy engine, records, signed manifests, lineage.

- ``compile``: the policy, a purpose and an as-of compiled to DuckDB SQL (pure).
- ``engine`` / ``engines``: the engine interface; ``duckdb`` (bulk) and ``scalar`` (reference).
- ``records``: the record schema, record ids, record assembly (pure).
- ``writer``: part files (Parquet or JSON Lines), fsynced and hashed.
- ``shapes``: the records as chat, KTO or OpenAI rows (pure); ``card`` / ``croissant`` /
  ``documents``: the dataset card and the Croissant file written beside the data.
- ``manifest``: the manifest and its HMAC-SHA256 signature (pure); ``verify``: its checker.
- ``lineage``: which builds took which items; ``builder``: the atomic build itself.

Submodules are imported directly (``from traingate._datasets.builder import build_dataset``).
"""

from typing import Literal

# The names the command line and the console offer (kept here so that they need not import
# the engines); ``FORMATS`` is the one list of record formats (``writer`` checks against it).
Format = Literal["parquet", "jsonl"]
ENGINES = ("duckdb", "scalar", "spark")
FORMATS: tuple[Format, ...] = ("parquet", "jsonl")
SHAPES = ("records", "chat", "kto", "openai")  # = build.shapes.SHAPES (docs/builds.md)
