# Common tasks. `make demo` runs the main job on the embedded default (SQLite, local files);
# `make test` runs the linters and the whole test suite. Both create .venv on first use:
# `make demo` installs traingate with its runtime dependencies only, `make test` (and every
# other target) adds the development extras (PySpark, Playwright, schemathesis, mypy, ...).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
STAMP  := $(VENV)/.installed-dev

.PHONY: help install demo test test-thorough pytest lint format typecheck bench docs clean

help:
	@echo "make demo      the bundled real sample, two verified datasets, the privacy center and console"
	@echo "make test      lint, type-check and run the test suite (SQLite and PostgreSQL), side by side"
	@echo "make test-thorough  the suite at the thorough budgets of its costliest randomized tests"
	@echo "make pytest    only the test suite, on two workers (pytest-xdist); the Spark tests on one"
	@echo "               .venv/bin/pytest -m 'not slow' leaves out the slowest tests (marker slow)"
	@echo "make lint      ruff + mypy + the import contract (lint-imports, docs/architecture.md)"
	@echo "make format    ruff format and fix"
	@echo "make bench     the benchmarks under benchmarks/"
	@echo "make docs      regenerate docs/cli.md and docs/events.md"
	@echo "make clean     remove .venv, caches and ./traingate-data"

# uv installs (put into the venv by pip), from its cache alone when that holds everything the
# project asks for (--offline: ~3 s on a machine that installed it before) and from the index
# otherwise. PyPI has only a source distribution of PySpark (450 MB): an index that sends no
# cache headers, as this workplace's does, makes an online install download it twice and build
# its wheel again every time (~33 s of a ~40 s install of the development extras).
UV_INSTALL = $(BIN)/uv pip install --python $(BIN)/python
define install_project
	@if $(UV_INSTALL) --offline $(1) 2>$(VENV)/uv-offline.log; then cat $(VENV)/uv-offline.log; \
	else echo "==> uv's cache does not hold it all: installing from the index"; $(UV_INSTALL) $(1); fi
endef

# Every target writes bytecode as modules are first imported (into __pycache__ beside them: .venv,
# src, tests), also when PYTHONDONTWRITEBYTECODE is set, as on CI machines: otherwise every process
# the tests and the demo start (servers, parse workers, snapshot readers, Spark's Python workers)
# compiles each module it imports, every time. Compiling all of site-packages at install instead
# cost ~24 s on 2 cores, three times what is ever imported (the suite imports ~45 of ~130 MB).
export PYTHONDONTWRITEBYTECODE =

$(BIN)/python:
	@echo "==> Creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check --quiet uv

$(RUNTIME): pyproject.toml | $(BIN)/python
	@echo "==> Installing traingate and its runtime dependencies into $(VENV)"
	$(call install_project,-e .)
	touch $(RUNTIME)

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "==> Installing traingate with the development extras into $(VENV)"
	$(call install_project,-e ".[dev]")
	touch $(STAMP) $(RUNTIME)

install: $(STAMP)

demo: $(RUNTIME)
	@echo "==> Running the demo (traingate demo --port $(DEMO_PORT))"
	$(BIN)/traingate demo --port $(DEMO_PORT)

DEMO_PORT ?= 8000

LINT = $(BIN)/ruff check src tests benchmarks tools \
	&& $(BIN)/ruff format --check src tests benchmarks tools \
	&& $(BIN)/mypy \
	&& $(BIN)/lint-imports --no-cache

lint: $(STAMP)
	$(LINT)

typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks tools
	$(BIN)/ruff check --fix src tests benchmarks tools

PYTEST = $(BIN)/pytest -q --durations=15 -n $(PYTEST_WORKERS) --dist loadgroup
PYTEST_WORKERS ?= 2

pytest: $(STAMP)
	$(PYTEST)

# The quick budgets of tests/budgets.py are every push's; the thorough ones are for a release,
# a change to the policy compiler, an engine or the store's export, or a nightly run.
test-thorough: $(STAMP)
	TRAINGATE_TEST_THOROUGH=1 $(PYTEST)

# The linters run beside the suite (a cold mypy takes ~20 s of a core, while the workers start
# and collect); their output is printed after the suite's, and either failing fails the target.
test: $(STAMP)
	@echo "==> make lint (beside the suite; its output follows the suite's)"
	@( $(LINT) ) > $(VENV)/lint.log 2>&1 & linting=$$!; \
	$(PYTEST); tested=$$?; \
	wait $$linting; linted=$$?; \
	echo "==> make lint"; cat $(VENV)/lint.log; \
	if [ $$linted -ne 0 ]; then echo "make lint failed"; fi; \
	[ $$tested -eq 0 ] && [ $$linted -eq 0 ]

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

docs: $(STAMP)
	$(BIN)/python tools/gen_docs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis traingate-data
