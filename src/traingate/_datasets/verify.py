"""``dataset verify``: recompute everything a manifest claims and say what changed.

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

from traingate._core.manifest import (
    DOCUMENTS,
    counts_section,
    signature_problem,
)
from traingate._datasets.shapes import SHAPES, row_messages, shape_schema
from traingate._datasets.writer import sha256_file

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


def _m(value: Any) -> Mapping[str, Any]:
    """A member of the manifest as a mapping ({} when it is not one: a tampered manifest)."""
    return value if isinstance(value, Mapping) else {}


def _total(values: Any) -> int | None:
    total = 0
    for number in _m(values).values():
        if not isinstance(number, int):
            return None
        total += number
    return total


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


def _file_problems(root: Path, manifest: Mapping[str, Any], problems: list[str]) -> list[Path]:
    """Check each listed file; return the readable ones."""
    encoding = str(_m(manifest.get("record_format")).get("encoding", ""))
    listed: set[Path] = set()
    readable = []
    entries = manifest.get("files")
    if not isinstance(entries, list):
        problems.append("files: missing, or not a list")
        entries = []
    for raw in entries:
        entry = _m(raw)
        name = str(entry.get("path", ""))
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not name:
            problems.append(f"file {name!r}: not a path inside the dataset")
            continue
        path = root / relative
        listed.add(path)
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        if sha256_file(path) != entry.get("sha256"):
            problems.append(f"{name}: sha256 differs from the manifest (the file was changed)")
        try:
            rows = _rows(path, encoding)
        except (OSError, ValueError) as exc:
            problems.append(f"{name}: cannot be read as {encoding}: {exc}")
            continue
        if rows != entry.get("rows"):
            problems.append(f"{name}: holds {rows} rows, the manifest says {entry.get('rows')}")
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


def _document_problems(root: Path, manifest: Mapping[str, Any], problems: list[str]) -> list[str]:
    """Check each listed document's sha256; return the names listed."""
    entries = manifest.get(DOCUMENTS, [])
    if not isinstance(entries, list):
        problems.append(f"{DOCUMENTS}: not a list")
        return []
    names = []
    for raw in entries:
        name = str(_m(raw).get("path", ""))
        if not name or "/" in name or name in ("manifest.json", "data", ".", ".."):
            problems.append(f"document {name!r}: not a file beside the manifest")
            continue
        names.append(name)
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(path) != _m(raw).get("sha256"):
            problems.append(f"{name}: sha256 differs from the manifest (the file was changed)")
    return names


def _shape_of(manifest: Mapping[str, Any], problems: list[str]) -> str | None:
    """The manifest's shape (``records`` when it names none: a build before shapes)."""
    shape = _m(manifest.get("shape")).get("name", "records") if "shape" in manifest else "records"
    if shape not in SHAPES:
        problems.append(f"shape: {shape!r} is not a shape ({', '.join(SHAPES)})")
        return None
    return str(shape)


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


def _shape_problems(
    files: list[Path], manifest: Mapping[str, Any], shape: str, problems: list[str]
) -> None:
    """The files of a shape other than records against the manifest's ``shape`` and counts."""
    encoding = str(_m(manifest.get("record_format")).get("encoding", ""))
    rows = messages = 0
    for path in files:
        try:
            found = _shape_rows(path, encoding, shape)
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"{path.parent.name}/{path.name}: rows cannot be read: {exc}")
            return
        rows, messages = rows + found[0], messages + found[1]
    claimed = _m(manifest.get("shape"))
    _diff("shape.rows", claimed.get("rows"), rows, problems)
    _diff("shape.messages", claimed.get("messages"), messages, problems)


def _left_out_problems(manifest: Mapping[str, Any], problems: list[str]) -> None:
    """rows + left out = the records counted; the reasons sum to the left out."""
    if "shape" not in manifest:
        return
    shape = _m(manifest.get("shape"))
    left = _m(shape.get("left_out"))
    reasons = _total(left.get("by_reason"))
    records = _m(manifest.get("counts")).get("records")
    rows, total = shape.get("rows"), left.get("records")
    if not all(isinstance(n, int) for n in (rows, total, records, reasons)):
        problems.append("shape: rows and left_out counts must be integers")
        return
    if reasons != total:
        problems.append(f"shape.left_out: records {total} != the sum of by_reason {reasons}")
    if rows + total != records:  # type: ignore[operator]
        problems.append(f"shape: rows {rows} + left out {total} != the records counted {records}")


def _recount(
    files: list[Path], manifest: Mapping[str, Any], problems: list[str]
) -> Mapping[tuple[str, str], tuple[int, int]] | None:
    encoding = str(_m(manifest.get("record_format")).get("encoding", ""))
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


def _exclusion_problems(manifest: Mapping[str, Any], problems: list[str]) -> None:
    exclusions = _m(manifest.get("exclusions"))
    by_kind = _m(_m(manifest.get("counts")).get("by_kind"))
    included_of = {
        "messages": _m(by_kind.get("conversation")).get("messages"),
        "reports": _m(by_kind.get("feedback")).get("records"),
    }
    for name, expected_included in included_of.items():
        section = exclusions.get(name)
        if not isinstance(section, Mapping):
            problems.append(f"exclusions.{name}: missing")
            continue
        considered, included, excluded = (
            section.get("considered"),
            section.get("included"),
            section.get("excluded"),
        )
        reasons = _total(section.get("by_reason"))
        if (
            not isinstance(considered, int)
            or not isinstance(included, int)
            or not isinstance(excluded, int)
            or reasons is None
        ):
            problems.append(f"exclusions.{name}: counts must be integers")
            continue
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
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Verification(
            path=shown,
            problems=(f"{manifest_path}: missing (is {shown} a dataset directory?)",),
        )
    except (OSError, ValueError) as exc:
        return Verification(path=shown, problems=(f"manifest.json: not readable JSON: {exc}",))
    if not isinstance(manifest, dict):
        return Verification(path=shown, problems=("manifest.json: not a JSON object",))
    problem = signature_problem(manifest, signing_key=signing_key)
    if problem:
        problems.append(problem)
    files = _file_problems(path, manifest, problems)
    shape = _shape_of(manifest, problems)
    if shape == "records":
        recount = _recount(files, manifest, problems)
        claimed = _m(manifest.get("counts"))
        if recount is not None:
            bases = list(_m(claimed.get("by_basis")))
            _diff("counts", claimed, counts_section(recount, bases=bases), problems)
    elif shape is not None:
        _shape_problems(files, manifest, shape, problems)
    _left_out_problems(manifest, problems)
    _exclusion_problems(manifest, problems)
    return Verification(path=shown, problems=tuple(problems))
