"""The README's main job runs on the runtime dependencies alone.

`make demo` installs traingate without extras, while the tests run in a venv that also holds the
development extras, so a module that imports a package only those extras bring (numpy, once)
passes every test and fails the main job. Here the demo runs in a child
process in which every package outside the closure of traingate's runtime requirements cannot be
imported, as on a machine that never installed it.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Run in the child: refuse to import the top-level names given on the command line, then run
# the command line's `traingate demo --no-serve` as `python -m traingate` would.
_CHILD = """
import importlib.abc, sys
blocked = frozenset(sys.argv[1].split(","))

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not a runtime dependency)")
        return None

sys.meta_path.insert(0, Absent())
sys.argv = ["traingate", "demo", "--no-serve"]
from traingate._cli import main
main()
"""


def _runtime_closure() -> set[str]:
    """traingate and every distribution its runtime requirements pull in, without extras."""
    found: set[str] = set()
    todo = ["traingate"]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        found.add(name)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def _not_runtime(runtime: set[str]) -> set[str]:
    """Top-level import names that only distributions outside ``runtime`` provide."""
    names = set()
    for top, dists in metadata.packages_distributions().items():
        if not any(canonicalize_name(d) in runtime for d in dists):
            names.add(top)
    return names - set(sys.stdlib_module_names)


def test_the_closure_leaves_out_the_development_extras() -> None:
    runtime = _runtime_closure()
    assert {"duckdb", "pyarrow", "fastapi", "numpy"} <= runtime
    # else the test below would prove nothing
    assert {"pyspark", "pytest", "hypothesis", "playwright", "datasets"} <= _not_runtime(runtime)


def test_the_demo_runs_on_the_runtime_dependencies_alone(tmp_path: Path) -> None:
    blocked = _not_runtime(_runtime_closure())
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINGATE_")}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, ",".join(sorted(blocked))],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stdout.count("built, verified") == 2, done.stdout
