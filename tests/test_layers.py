"""The layers of docs/architecture.md, where an import contract cannot see them (issue 18).

`make lint` runs the import contract ([tool.importlinter] in pyproject.toml): the core imports
no store, engine, service or edge; stores and engines import no edge; the packages are layered
without cycles. Here: the edges (the HTTP API, the pages and the app that serves both) never
run SQL nor hold it, and importing the core loads no store, engine, database driver or
subprocess. And the tests' own layer: no module of tests/ imports a test module
(tests/test_*.py); what test modules share is in the support modules (support.py,
histories.py, snapshots.py, browser.py, ...) and the fixtures in conftest.py.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import traingate

PACKAGE = Path(traingate.__file__).parent
EDGES = ("_api", "_web", "_server")
# The calls that run SQL on a database handle (traingate._store.db.Database) or a DuckDB one.
SQL_CALLS = {"execute", "executemany", "query", "script", "sql"}
# A statement, not prose: "SELECT ... FROM", "INSERT INTO", "UPDATE ... SET", "DELETE FROM".
SQL_TEXT = re.compile(
    r"\bSELECT\b.+\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\b\s+\w+\s+\bSET\b|\bDELETE\s+FROM\b",
    re.DOTALL,
)


def _edge_modules() -> list[Path]:
    return sorted(path for edge in EDGES for path in (PACKAGE / edge).rglob("*.py"))


def _sql_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        if id(node) in parts:  # an f-string's pieces: the f-string is read whole
            continue
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS
        ):
            found.append(f"line {node.lineno}: .{node.func.attr}(...)")
        elif isinstance(node, ast.JoinedStr | ast.Constant):
            text = (
                node.value
                if isinstance(node, ast.Constant)
                else "".join(
                    part.value if isinstance(part, ast.Constant) else "{}" for part in node.values
                )
            )
            if isinstance(text, str) and SQL_TEXT.search(text):
                found.append(f"line {node.lineno}: SQL text {text[:60]!r}")
    return found


TESTS = Path(__file__).resolve().parent
TEST_MODULES = frozenset(path.stem for path in TESTS.glob("test_*.py"))


def _test_modules_imported(path: Path) -> list[str]:
    """The imports of a test module (tests/test_*.py) in ``path``, in any form: ``import
    tests.test_x``, ``from tests.test_x import y``, ``from tests import test_x``, relative
    (``from . import test_x``, ``from .test_x import y``) or bare (``import test_x``), at the
    top or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}".lstrip(".") for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] == "tests":
                parts = parts[1:]
            if parts and parts[0] in TEST_MODULES:
                found.append(f"line {node.lineno}: {target}")
                break
    return found


def test_no_test_module_imports_another() -> None:
    """What test modules share lives in support modules and conftest.py, so that running one
    test module never collects, skips or fails because of another."""
    assert len(TEST_MODULES) > 50  # the scan below would pass over nothing otherwise
    imports = {
        path.name: found
        for path in sorted(TESTS.glob("*.py"))
        if (found := _test_modules_imported(path))
    }
    assert imports == {}


def test_the_import_scan_sees_each_form(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import tests.test_web\n"
        "from tests.test_web import Site\n"
        "from tests import test_web as web, support\n"
        "from . import test_web\n"
        "from .test_web import Site\n"
        "import test_web\n"
        "from tests.support import world\n"
        "from tests import browser, histories\n"
        "def f():\n"
        "    from tests.test_build_property import history\n",
        encoding="utf-8",
    )
    lines = [line.split(":")[0] for line in _test_modules_imported(probe)]
    assert lines == [f"line {n}" for n in (1, 2, 3, 4, 5, 6, 10)]


def test_the_edges_exist() -> None:
    assert len(_edge_modules()) > 10  # the scan below would pass over nothing otherwise


@pytest.mark.parametrize("path", _edge_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_api_and_web_never_run_sql(path: Path) -> None:
    """The API and the pages call the facade (or a reader of the store); they hold no SQL."""
    assert _sql_in(path) == []


def test_the_scan_sees_sql(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f(db, t):\n"
        "    db.execute(f'SELECT a FROM {t} WHERE x = ?', (1,))\n"
        "    text = 'DELETE FROM builds'\n"
        "    prose = 'select the builds from the list'\n",
        encoding="utf-8",
    )
    assert sorted(line.split(":")[0] for line in _sql_in(probe)) == ["line 2", "line 2", "line 3"]


HEAVY = (
    "subprocess",
    "sqlite3",
    "duckdb",
    "pyspark",
    "psycopg",
    "adbc_driver_sqlite",
    "fastapi",
    "click",
)


@pytest.mark.parametrize(
    "module",
    [
        "traingate._core.manifest",
        "traingate._core.report",
        "traingate._core.events",
        "traingate._core.facts",
        "traingate._core.deid",
        "traingate._core.policy",
        "traingate._core.policy.expiry",
        "traingate._core.policy.compile",
    ],
)
def test_importing_the_core_loads_no_store_engine_or_subprocess(module: str) -> None:
    """In a fresh interpreter: the module, and nothing of traingate outside the core (but
    ``_errors``), no database driver, engine, web framework or subprocess."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = set(json.loads(done.stdout))
    ours = {m for m in loaded if m.startswith("traingate.")}
    outside = {m for m in ours if not m.startswith(("traingate._core", "traingate._errors"))}
    assert outside == set()
    assert {m.split(".")[0] for m in loaded} & set(HEAVY) == set()
