# The two commands of the README: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
STAMP := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium

.PHONY: run token test lint audit bench schema venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: venv
	GRAPHQL_API_ENV=development $(BIN)/graphql-api migrate
	GRAPHQL_API_ENV=development $(BIN)/graphql-api serve --host $(HOST) --port $(PORT)

# An access token for GraphiQL from the server `make run` started: same directory, same files.
token: venv
	@test -n "$(EMAIL)" || { echo "usage: make token EMAIL=you@example.com" >&2; exit 2; }
	@GRAPHQL_API_ENV=development $(BIN)/graphql-api dev-token "$(EMAIL)"

test: venv $(CHROMIUM)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser tests (tests/e2e) drive Debian's Chromium: install it when it is missing.
$(CHROMIUM):
	CHROMIUM=$(CHROMIUM) scripts/ensure-chromium

lint: venv
	$(BIN)/ruff check graphql_api tests bench scripts/audit.py
	$(BIN)/ruff format --check graphql_api tests bench scripts/audit.py
	$(BIN)/mypy
	$(BIN)/mypy scripts/audit.py

# Each defence the README lists removed in turn (scripts/audit.toml), in a scratch copy of
# the tree, with the tests that must notice; fails on a survivor or a stale entry. Not part
# of `make test`. AUDIT_ARGS=--help.
audit: venv
	$(BIN)/python scripts/audit.py $(AUDIT_ARGS)

# Benchmark: servers pinned to core 0, wrk on core 1; writes bench-results/. See
# bench/run.py (installs wrk with apt-get when missing). BENCH_ARGS=--help.
bench: venv
	$(BIN)/python -m bench.run $(BENCH_ARGS)

schema: venv
	$(BIN)/graphql-api export-schema

clean:
	rm -rf $(VENV) graphql_api.db graphql_api.db-wal graphql_api.db-shm
