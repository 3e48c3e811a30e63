# Entry points shared by people and CI: make run, make test, make lint, make bench.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-quick install clean sdk-typescript browser screenshots

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

test: $(STAMP) browser
	$(BIN)/pytest -q

# The dashboard's browser tests drive Debian's Chromium through Debian's chromedriver; nothing is
# downloaded at test time. Installed with apt-get when missing (as root, or through sudo); on a
# machine without apt-get the browser tests skip (and fail in CI, which requires them).
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
browser:
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then :; \
	elif command -v apt-get >/dev/null; then \
	  echo "==> Installing Chromium and chromedriver from Debian's packages (browser tests)"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	  $$sudo apt-get update -q && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	else echo "==> No apt-get: install Chromium and chromedriver yourself, or browser tests skip"; fi

# A PNG of every dashboard page, the API docs page and the unsubscribe page, into docs/images/.
screenshots: $(STAMP) browser
	$(BIN)/python -m tests.browser.screenshots docs/images

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# The peers of issue 21 (FastAPI, Celery, Procrastinate, ...) are installed for the benchmark only.
PEERS_STAMP := $(VENV)/.peers-installed
$(PEERS_STAMP): $(STAMP) benchmarks/peers/requirements.txt
	@echo "==> Installing the benchmark's peers (benchmarks/peers/requirements.txt)"
	$(BIN)/pip install -q -r benchmarks/peers/requirements.txt
	touch $(PEERS_STAMP)

# the hub's figures, the scale-out across processes, then the peers (benchmarks.run runs
# `python -m benchmarks.peers` itself and puts its rows in the table); < 20 minutes
bench: $(STAMP) $(PEERS_STAMP)
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
