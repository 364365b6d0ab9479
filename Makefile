# microtune: `make demo` runs the main job end to end, `make test` runs every check.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
UV_VERSION := 0.13.9

export MICROTUNE_HOME ?= $(CURDIR)/.microtune
# The stage packages, in the order data flows through them (docs/architecture.md).
PACKAGES := core events folds feature_repo features stores models monitoring experiments serving flows simulation cli

.PHONY: install demo test test-fast lint unit bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	@# Bytecode compiled now: every later process imports Prefect, Feast and MLflow from
	@# .pyc files, even where PYTHONDONTWRITEBYTECODE is set (seconds per command).
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q $(PACKAGES)
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## create .venv and install the locked dependencies

demo: $(STAMP)  ## generate, ingest, build features, train and promote, print a summary
	$(BIN)/microtune demo

lint: $(STAMP)  ## ruff, mypy, and the import layers between the stages (import-linter)
	$(BIN)/ruff check $(PACKAGES) tests bench
	$(BIN)/ruff format --check $(PACKAGES) tests bench
	$(BIN)/mypy $(PACKAGES)
	$(BIN)/lint-imports --no-cache

# Test processes (pytest-xdist). A test file runs whole on one of them, so a session
# fixture (a trained home and its scorer, a Prefect server) is built at most once per
# process. TEST_WORKERS=0 runs the suite in this one process.
TEST_WORKERS ?= 2

unit: $(STAMP)  ## the tests only, every one of them (TEST_WORKERS=2 processes)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: lint  ## lint and the quick tests (no slow, integration or production test)
	$(BIN)/pytest -m "not slow and not integration and not production"

test: lint unit  ## lint, type-check and run the whole test suite

clean:  ## remove the embedded home (not the venv)
	rm -rf .microtune
