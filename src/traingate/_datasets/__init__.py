"""Dataset builds (docs/builds.md): the bulk policy engine, records, signed manifests, lineage.

The policy compiled to SQL and the manifest are the core's (``_core/policy/compile.py``,
``_core/manifest.py``, ``_core/manifest_model.py``); here is what runs and writes a build:

- ``engines/``: the engine interface (``base``); ``duckdb`` (bulk), ``scalar`` (reference) and
  ``spark`` (with its staging, tasks, feedback and lineage modules).
- ``builder``: the atomic build itself, step by step; ``produce``: the records of a build, in
  output order (engine, then feedback); ``books``: its counts and their balance check;
  ``staging``: its hidden working directories; ``prefetch`` / ``progress``: its threads and bar.
- ``records``: the record schema, record ids, record assembly (pure); ``feedback``: feedback
  records from vault reports; ``shapes``: the records as chat, KTO or OpenAI rows (pure).
- ``writer``: part files (Parquet or JSON Lines), fsynced and hashed; ``card`` / ``croissant`` /
  ``documents`` / ``describe``: the dataset card and the Croissant file beside the data.
- ``verify``: a dataset's checker; ``lineage`` / ``lineage_file``: which builds took which items.
- ``incremental`` / ``merge`` / ``restrict``: builds from an earlier one (``--since``).
- ``lake``: the message lake; ``diff``: ``policy diff``; ``openlineage`` /
  ``openlineage_emit``: OpenLineage run events and their sending.

Submodules are imported directly (``from traingate._datasets.builder import build_dataset``).
"""

from typing import Literal

# The names the command line and the console offer (kept here so that they need not import
# the engines); ``FORMATS`` is the one list of record formats (``writer`` checks against it).
Format = Literal["parquet", "jsonl"]
ENGINES = ("duckdb", "scalar", "spark")
FORMATS: tuple[Format, ...] = ("parquet", "jsonl")
SHAPES = ("records", "chat", "kto", "openai")  # = _datasets.shapes.SHAPES (docs/builds.md)
