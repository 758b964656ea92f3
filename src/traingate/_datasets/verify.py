"""``dataset verify``: recompute everything a manifest claims and say what changed.

The manifest is parsed with the model first (``_core/manifest_model.py``): a member missing,
of another type or unknown is named (``manifest.json: counts.records: must be an integer, not
'9'``), with the signature's verdict, and nothing else is checked. Then everything below runs
over the typed manifest.

Checked, and each failure named: the manifest's signature (with the key file's signing key);
every listed file exists, has its sha256 and its number of rows; no unlisted file sits in
``data/``; the records' counts by basis and kind, recounted from the files, equal ``counts``;
the exclusion arithmetic holds (considered = included + excluded, the reasons sum to the
excluded, the included equal what the files hold). A build of another shape than ``records``
(``shape`` in the manifest; _datasets/shapes.py): its files hold that shape's columns and no other,
their rows and messages equal ``shape``, and rows + left out = the records counted. The
documents (``documents``: README.md, croissant.json) have their sha256.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from traingate._core.manifest import counts_section, signature_problem
from traingate._core.manifest_model import Manifest
from traingate._datasets.shapes import SHAPES, row_messages, shape_schema
from traingate._datasets.writer import sha256_file
from traingate._errors import ManifestError

__all__ = ["Verification", "verify_dataset"]


@dataclass(frozen=True, slots=True)
class Verification:
    path: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "problems": list(self.problems)}


def _counts_in(path: Path, encoding: str) -> Iterator[tuple[str, str, int]]:
    """(kind, basis, messages) of every record of one data file."""
    if encoding == "parquet":
        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(columns=["kind", "basis", "messages"]):
                lengths = pc.fill_null(pc.list_value_length(batch.column("messages")), 0)
                yield from zip(
                    batch.column("kind").to_pylist(),
                    batch.column("basis").to_pylist(),
                    lengths.to_pylist(),
                    strict=True,
                )
    else:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    record = json.loads(line)
                    yield record["kind"], record["basis"], len(record["messages"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"line {number} is not a record: {exc}") from None


def _rows(path: Path, encoding: str) -> int:
    if encoding == "parquet":
        with pq.ParquetFile(path) as parquet:
            return int(parquet.metadata.num_rows)
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _diff(prefix: str, claimed: Any, actual: Any, out: list[str]) -> None:
    if isinstance(claimed, Mapping) and isinstance(actual, Mapping):
        for key in sorted(set(claimed) | set(actual), key=str):
            _diff(f"{prefix}.{key}", claimed.get(key), actual.get(key), out)
    elif claimed != actual:
        out.append(f"{prefix}: the manifest says {claimed!r}, the data files hold {actual!r}")


def _file_problems(root: Path, manifest: Manifest, problems: list[str]) -> list[Path]:
    """Check each listed file; return the readable ones."""
    encoding = manifest.record_format.encoding
    listed: set[Path] = set()
    readable = []
    for entry in manifest.files:
        name = entry.path
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not name:
            problems.append(f"file {name!r}: not a path inside the dataset")
            continue
        path = root / relative
        listed.add(path)
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        if sha256_file(path) != entry.sha256:
            problems.append(f"{name}: sha256 differs from the manifest (the file was changed)")
        try:
            rows = _rows(path, encoding)
        except (OSError, ValueError) as exc:
            problems.append(f"{name}: cannot be read as {encoding}: {exc}")
            continue
        if rows != entry.rows:
            problems.append(f"{name}: holds {rows} rows, the manifest says {entry.rows}")
        readable.append(path)
    data = root / "data"
    if data.is_dir():
        for extra in sorted(p for p in data.iterdir() if p not in listed):
            problems.append(f"data/{extra.name}: not listed in the manifest")
    # A dataset is its manifest, data/ and the documents the manifest lists: anything beside
    # them (a file a consumer would also read, a hidden one) is not covered by the signature,
    # so it fails verification.
    known = {"manifest.json", "data", *_document_problems(root, manifest, problems)}
    for extra in sorted(p for p in root.iterdir() if p.name not in known):
        problems.append(
            f"{extra.name}: not part of the dataset (only manifest.json, data/ and the "
            "documents the manifest lists)"
        )
    return readable


def _document_problems(root: Path, manifest: Manifest, problems: list[str]) -> list[str]:
    """Check each listed document's sha256; return the names listed."""
    names = []
    for entry in manifest.documents or ():
        name = entry.path
        if not name or "/" in name or name in ("manifest.json", "data", ".", ".."):
            problems.append(f"document {name!r}: not a file beside the manifest")
            continue
        names.append(name)
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(path) != entry.sha256:
            problems.append(f"{name}: sha256 differs from the manifest (the file was changed)")
    return names


def _shape_of(manifest: Manifest, problems: list[str]) -> str | None:
    """The manifest's shape (``records`` when it names none: a build before shapes)."""
    shape = "records" if manifest.shape is None else manifest.shape.name
    if shape not in SHAPES:
        problems.append(f"shape: {shape!r} is not a shape ({', '.join(SHAPES)})")
        return None
    return shape


def _shape_rows(path: Path, encoding: str, shape: str) -> tuple[int, int]:
    """(rows, messages) of one data file of ``shape``; ValueError when it holds other columns."""
    schema = shape_schema(shape)  # type: ignore[arg-type]
    rows = messages = 0
    if encoding == "parquet":
        with pq.ParquetFile(path) as parquet:
            if parquet.schema_arrow.names != schema.names:
                raise ValueError(f"columns {parquet.schema_arrow.names}, not {schema.names}")
            for batch in parquet.iter_batches():
                rows += batch.num_rows
                messages += row_messages(shape, batch)
        return rows, messages
    columns = list(_MESSAGE_KEYS[shape])
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or list(row) != schema.names:
                    raise ValueError(f"keys {list(row) if isinstance(row, dict) else row!r}")
                messages += sum(len(row[name]) for name in columns)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"line {number} is not a {shape} row: {exc}") from None
            rows += 1
    return rows, messages


_MESSAGE_KEYS = {"records": ("messages",), "chat": ("messages",), "openai": ("messages",),
                 "kto": ("prompt", "completion")}  # fmt: skip


def _shape_problems(files: list[Path], manifest: Manifest, shape: str, problems: list[str]) -> None:
    """The files of a shape other than records against the manifest's ``shape`` and counts."""
    encoding = manifest.record_format.encoding
    rows = messages = 0
    for path in files:
        try:
            found = _shape_rows(path, encoding, shape)
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"{path.parent.name}/{path.name}: rows cannot be read: {exc}")
            return
        rows, messages = rows + found[0], messages + found[1]
    claimed = manifest.shape
    assert claimed is not None  # a shape other than records is named by the manifest
    _diff("shape.rows", claimed.rows, rows, problems)
    _diff("shape.messages", claimed.messages, messages, problems)


def _left_out_problems(manifest: Manifest, problems: list[str]) -> None:
    """rows + left out = the records counted; the reasons sum to the left out."""
    shape = manifest.shape
    if shape is None:
        return
    rows, total, records = shape.rows, shape.left_out.records, manifest.counts.records
    reasons = sum(shape.left_out.by_reason.values())
    if reasons != total:
        problems.append(f"shape.left_out: records {total} != the sum of by_reason {reasons}")
    if rows + total != records:
        problems.append(f"shape: rows {rows} + left out {total} != the records counted {records}")


def _recount(
    files: list[Path], manifest: Manifest, problems: list[str]
) -> Mapping[tuple[str, str], tuple[int, int]] | None:
    encoding = manifest.record_format.encoding
    counts: Counter[tuple[str, str]] = Counter()
    messages: Counter[tuple[str, str]] = Counter()
    for path in files:
        try:
            for kind, basis, n in _counts_in(path, encoding):
                counts[(kind, basis)] += 1
                messages[(kind, basis)] += n
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"{path.parent.name}/{path.name}: records cannot be read: {exc}")
            return None
    return {key: (counts[key], messages[key]) for key in counts}


def _exclusion_problems(manifest: Manifest, problems: list[str]) -> None:
    """considered = included + excluded, the reasons sum to the excluded, and the included
    equal the counts: conversations' messages, feedback records (None: counts have no kind)."""
    by_kind = manifest.counts.by_kind
    conversations, reports = by_kind.get("conversation"), by_kind.get("feedback")
    sections = {
        "messages": (
            manifest.exclusions.messages,
            None if conversations is None else conversations.messages,
        ),
        "reports": (manifest.exclusions.reports, None if reports is None else reports.records),
    }
    for name, (section, expected_included) in sections.items():
        considered, included = section.considered, section.included
        excluded, reasons = section.excluded, sum(section.by_reason.values())
        if considered != included + excluded:
            problems.append(
                f"exclusions.{name}: considered {considered} != included {included}"
                f" + excluded {excluded}"
            )
        if excluded != reasons:
            problems.append(
                f"exclusions.{name}: excluded {excluded} != the sum of by_reason {reasons}"
            )
        if included != expected_included:
            problems.append(
                f"exclusions.{name}.included: {included}, but counts say {expected_included}"
            )


def verify_dataset(path: Path, *, signing_key: bytes) -> Verification:
    """Check a dataset directory against its manifest; never raises for a bad dataset. The
    verification names the directory by its absolute path, as a build's summary does."""
    problems: list[str] = []
    path = path.absolute()
    shown = str(path)
    if not path.exists():
        return Verification(path=shown, problems=(f"{shown}: no such directory",))
    if not path.is_dir():
        return Verification(
            path=shown,
            problems=(f"{shown}: a file, not a dataset directory (give the --out of a build)",),
        )
    manifest_path = path / "manifest.json"
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Verification(
            path=shown,
            problems=(f"{manifest_path}: missing (is {shown} a dataset directory?)",),
        )
    except (OSError, ValueError) as exc:
        return Verification(path=shown, problems=(f"manifest.json: not readable JSON: {exc}",))
    if not isinstance(data, dict):
        return Verification(path=shown, problems=("manifest.json: not a JSON object",))
    problem = signature_problem(data, signing_key=signing_key)  # over the object as it is
    if problem:
        problems.append(problem)
    try:
        manifest = Manifest.parse(data)
    except ManifestError as exc:  # no member of it can be trusted to check the rest against
        problems += [f"manifest.json: {member}" for member in exc.problems]
        return Verification(path=shown, problems=tuple(problems))
    files = _file_problems(path, manifest, problems)
    shape = _shape_of(manifest, problems)
    if shape == "records":
        recount = _recount(files, manifest, problems)
        if recount is not None:
            claimed = manifest.counts.model_dump()
            bases = list(manifest.counts.by_basis)
            _diff("counts", claimed, counts_section(recount, bases=bases), problems)
    elif shape is not None:
        _shape_problems(files, manifest, shape, problems)
    _left_out_problems(manifest, problems)
    _exclusion_problems(manifest, problems)
    return Verification(path=shown, problems=tuple(problems))
