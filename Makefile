# Entry points shared by people and CI: make run, make test, make lint, make bench.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-quick install clean sdk-typescript

$(STAMP): pyproject.toml
	@echo "==> Setting up: a virtualenv in $(VENV) with Switchboard and its dependencies."
	@echo "    The first time this takes a minute or two; later runs skip it."
	test -d $(VENV) || $(PY) -m venv $(VENV)
	@echo "==> Upgrading pip"
	$(BIN)/pip install -q --upgrade pip
	@echo "==> Installing Switchboard (editable) with its dev tools"
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)
	@echo "==> Installed. \`$(BIN)/switchboard --help\` lists every command."

install: $(STAMP)

run: $(STAMP)
	@echo "==> switchboard quickstart: migrate the database, apply the example catalogs,"
	@echo "    create the demo tenant and its key, then serve the API (Ctrl-C stops it)."
	$(BIN)/switchboard quickstart

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick

# The TypeScript SDK: its compiler from the lock file (npm ci), the package into sdks/typescript/dist.
# `make test` builds and tests it too (tests/acceptance/test_typescript_sdk.py).
sdk-typescript:
	cd sdks/typescript && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
	rm -rf sdks/typescript/node_modules sdks/typescript/dist sdks/typescript/build
