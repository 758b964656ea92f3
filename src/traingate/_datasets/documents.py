"""The documents a build writes beside its data: ``README.md`` (the dataset card,
``card.py``) and ``croissant.json`` (``croissant.py``), listed in the manifest's ``documents``
with their sha256, so the signature covers them and ``dataset verify`` checks them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from traingate._core.manifest import DOCUMENTS, content_sha256
from traingate._datasets.card import card_text
from traingate._datasets.croissant import croissant
from traingate._datasets.writer import fsync_path, sha256_file

__all__ = ["CARD", "CROISSANT", "document_bytes", "with_documents"]

CARD = "README.md"
CROISSANT = "croissant.json"


def document_bytes(
    body: Mapping[str, Any], *, schema: pa.Schema, num_bytes: int
) -> dict[str, bytes]:
    """Each document's bytes (by its path in the dataset) for the manifest body ``body``
    (``num_bytes``: the size of its data files)."""
    digest = content_sha256(body)
    described = croissant(body, schema=schema, content_sha256=digest)
    return {
        CARD: card_text(body, schema=schema, content_sha256=digest, num_bytes=num_bytes).encode(
            "utf-8"
        ),
        CROISSANT: (json.dumps(described, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
    }


def with_documents(
    directory: Path, body: Mapping[str, Any], *, schema: pa.Schema
) -> dict[str, Any]:
    """Write the documents of ``body`` into ``directory`` (fsynced) and return ``body`` with
    their ``documents`` entries (``path``, ``sha256``)."""
    entries = []
    num_bytes = sum((directory / entry["path"]).stat().st_size for entry in body["files"])
    for name, data in document_bytes(body, schema=schema, num_bytes=num_bytes).items():
        path = directory / name
        path.write_bytes(data)
        fsync_path(path)
        entries.append({"path": name, "sha256": sha256_file(path)})
    return {**body, DOCUMENTS: entries}
