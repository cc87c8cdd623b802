# affnet: `make run` starts the whole product locally, `make test` runs the whole test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test install lint migrate demo clean

$(STAMP): pyproject.toml
	@bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

install: $(STAMP)

## Start Redis, the worker and the web server on SQLite (demo data on first run). Ctrl-C stops all.
run: $(STAMP)
	@$(BIN)/affnet dev

## Install what the tests need (Chromium; PostgreSQL and Redis too with CI=true) and run them all.
test: $(STAMP)
	@bash scripts/test-prereqs.sh
	@$(BIN)/ruff check server workers tests
	@$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	@$(BIN)/ruff check server workers tests

migrate: $(STAMP)
	@$(BIN)/affnet migrate

demo: $(STAMP)
	@$(BIN)/affnet demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
