"""Shared fixtures. Store tests run against SQLite and PostgreSQL (``db_url`` is parametrized).

PostgreSQL: ``TRAINGATE_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``). Each
test process works in a database of its own, created there and dropped at its end
(``tests/pg.py`` says why), and each test in a schema of its own, dropped afterwards. With
``CI=true`` an unreachable PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from tests.api_support import Api, history, running_api
from tests.factories import Events
from tests.pg import fresh_schema, run_database
from tests.stores import Stores
from traingate._facade import Traingate
from traingate._settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page
    from pyspark.sql import SparkSession

    from tests.browser import Site

# No per-example deadline: the first examples pay for imports and warm-up on a loaded CI core.
hypothesis_settings.register_profile(
    "traingate", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("traingate")

PG_URL = os.environ.get("TRAINGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


# The tests that took ten seconds or more on a CI core (``--durations``), marked ``slow`` with
# every Spark test (the session alone takes ~15 s to start): ``pytest -m "not slow"`` leaves
# them out; the default run (``make pytest``) keeps them, coverage counts them.
SLOW = {
    ("test_build_policies", "test_bulk_equals_scalar_for_every_policy"),
    ("test_build_property", "test_bulk_equals_scalar_on_postgresql"),
    ("test_privacy_property", "test_the_answer_is_what_a_build_holds"),
    ("test_build_incremental", "test_the_command_line_builds_since_a_build"),
    ("test_build_incremental", "test_an_incremental_build_is_a_full_build_on_postgresql"),
    ("test_build_cli", "test_build_verify_and_lineage_from_the_command_line"),
    ("test_build_cli", "test_verify_and_lineage_say_what_the_path_or_id_is"),
    ("test_jobs", "test_a_killed_server_leaves_its_job_failed_and_a_restart_loses_none"),
    ("test_demo", "test_demo_prepares_everything_and_is_safe_to_rerun"),
    ("test_crash_safety", "test_killed_builds_leave_no_partial_output_or_lineage"),
    ("test_offline_pages", "test_every_page_loads_only_from_the_server"),
    ("test_retention", "test_expired_submission_days_match_the_exact_expiry"),
    ("test_fuzz", "test_post_events_takes_any_bytes"),
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks the slow tests; under pytest-xdist (``make pytest``: ``-n 2 --dist loadgroup``)
    every Spark test runs on one worker, so that one JVM and one session serve them all.
    First among the hooks: xdist's own reads the ``xdist_group`` marks in this hook and names
    the group in the test's node id (``...@spark``), which is how the scheduler groups."""
    for item in items:
        spark = item.get_closest_marker("spark") is not None
        if spark:
            item.add_marker(pytest.mark.xdist_group("spark"))
        function = getattr(item, "originalname", item.name)
        if spark or (item.module.__name__.rpartition(".")[2], function) in SLOW:
            item.add_marker(pytest.mark.slow)


def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """Under ``--dist loadgroup`` the Spark tests' node ids name their group (``...@spark``),
    or the run stops: on pytest 9.2 xdist 3.8's suffix is silently lost
    (pytest-dev/pytest-xdist#1386), and the Spark tests then ran on both workers, a JVM each,
    at a third of the speed (pyproject pins pytest below 9.2 for that)."""
    if node.config.getoption("dist") != "loadgroup":
        return
    spark = [i for i in ids if i.startswith("tests/test_spark.py::")]
    if spark and not any(i.endswith("@spark") for i in spark):
        raise pytest.UsageError(
            f"--dist loadgroup does not group the Spark tests (e.g. {spark[0]}): "
            "this pytest and pytest-xdist do not work together"
        )


def _pg_available() -> str | None:
    import psycopg

    try:
        with psycopg.connect(PG_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A URL of a database of this test process's own on the PostgreSQL at ``PG_URL``."""
    problem = _pg_available()
    if problem is not None:
        message = f"PostgreSQL at {PG_URL} is unreachable: {problem}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: a missing PostgreSQL is a failure)")
        pytest.skip(message)
    with run_database(PG_URL) as url:
        yield url


@pytest.fixture
def pg_schema_url(pg_server: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    with fresh_schema(pg_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'traingate.sqlite'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(db_url=db_url, key_file=tmp_path / "keys" / "keys.json")


@pytest.fixture
def tg(settings: Settings) -> Iterator[Traingate]:
    with Traingate.open(settings) as app:
        yield app


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    """SQLite stores a property test reuses across its examples, emptied for each
    (``tests/stores.py``); the test suppresses Hypothesis' function_scoped_fixture check."""
    reused = Stores(tmp_path / "stores")
    yield reused
    reused.close()


@pytest.fixture
def ev() -> Events:
    return Events()


@pytest.fixture
def api(settings: Settings, tmp_path: Path, ev: Events) -> Iterator[Api]:
    """The HTTP API (in-process) over a store holding ``api_support.history``, on each
    backend; builds go to ``tmp_path/datasets``. test_api and test_fuzz start from an empty
    store instead (their own ``api``)."""
    with running_api(settings, tmp_path / "datasets") as running:
        running.ingest(history(ev))
        yield running


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The browser tests' site: a fresh SQLite store holding ``support.world()``, served by
    uvicorn on 127.0.0.1 (``tests/browser.py``, which skips the test, or fails it with
    CI=true, without chromium; the browser test modules import it first)."""
    from tests.browser import serve_site

    yield from serve_site(f"sqlite:///{tmp_path / 'data' / 'traingate.sqlite'}", tmp_path)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One chromium for every browser test of the process (a worker's, under xdist), driven
    by Playwright's sync API in the main thread, which holds one Playwright per thread."""
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, LAUNCH_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def console_errors() -> list[str]:
    """What the page's scripts and the browser console reported as errors (a test that
    provokes an error status on purpose clears it)."""
    return []


@pytest.fixture
def page(browser: Browser, console_errors: list[str]) -> Iterator[Page]:
    """A fresh page (a context of its own: no cookies, no storage) of the session's chromium,
    1280 x 900, en-GB; the test fails if the page's scripts reported an error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: console_errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: console_errors.append(msg.text) if msg.type == "error" else None,
    )
    yield page
    context.close()
    assert not console_errors, f"the page reported errors: {console_errors}"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the Spark tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One local[2] session for every Spark test (the engine uses the active session)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        _unavailable("PySpark is not installed (pip install -e '.[dev]')")
    if shutil.which("java") is None:
        _unavailable("Java is not installed (apt-get install openjdk-17-jre-headless)")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("traingate-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        # The driver's JIT stops at C1 and one thread collects: the tests' jobs are many and
        # tiny, so C2's compiling and a parallel collector cost more than they win (the Spark
        # tests alone, measured: 262 -> 208 s of CPU, the same wall time).
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    session.sparkContext.pythonExec = sys.executable
    yield session
    session.stop()
