# Two commands set everything up on a fresh machine (see README.md):
#   make demo   -- builds .venv, fills the embedded store with demo data, opens the workbench
#   make test   -- builds .venv, runs ruff and mypy, then the whole suite on SQLite and on a throwaway PostgreSQL
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/workbench demo --if-empty
	$(BIN)/workbench

# Static checks first: a lint or type finding fails the run before any test starts.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Two workers (pytest-xdist): half the suite's time is waiting on child processes and servers,
# and the budget (20 minutes) is for the 2-core machine. A single test: `.venv/bin/python -m pytest PATH`.
test: lint
	$(BIN)/python -m pytest -n 2

bench: $(STAMP)
	$(BIN)/python -m benchmarks.ingest_bench

clean:
	rm -rf $(VENV) .pytest_cache
