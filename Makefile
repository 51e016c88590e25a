# The two commands of the README: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
STAMP := $(VENV)/.installed

.PHONY: run test lint bench schema venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: venv
	GRAPHQL_API_ENV=development $(BIN)/graphql-api migrate
	GRAPHQL_API_ENV=development $(BIN)/graphql-api serve --host $(HOST) --port $(PORT)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check graphql_api tests
	$(BIN)/ruff format --check graphql_api tests
	$(BIN)/mypy

schema: venv
	$(BIN)/graphql-api export-schema

clean:
	rm -rf $(VENV) graphql_api.db graphql_api.db-wal graphql_api.db-shm
