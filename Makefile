# affnet: `make run` starts the whole product locally, `make test` runs the whole test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Browser libraries (Chart.js, pdf.js), pinned in package-lock.json and served from static/vendor/.
JS_STAMP  := node_modules/.installed-stamp
VENDOR_JS := static/vendor/chart.umd.js static/vendor/pdf.min.mjs
# `make test` runs the suite in this many processes (pytest-xdist; each its own Redis, PostgreSQL and
# SQLite, a test file at a time). 0 runs it in this one.
PYTEST_WORKERS ?= 2

.PHONY: run test api-check install lint migrate demo clean wordpress-plugin

$(STAMP): pyproject.toml
	@bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

$(JS_STAMP): package.json package-lock.json
	@bash scripts/vendor-js.sh install
	@touch $(JS_STAMP)

# Copied again whenever npm ci ran (package.json or package-lock.json changed) or the copy is gone.
$(VENDOR_JS): $(JS_STAMP) scripts/vendor-js.sh
	@bash scripts/vendor-js.sh copy

install: $(STAMP) $(VENDOR_JS)

## Start Redis, the worker and the web server on SQLite (demo data on first run). Ctrl-C stops all.
run: $(STAMP) $(VENDOR_JS)
	@$(BIN)/affnet-dev dev

## Install what the tests need (Chromium; PostgreSQL and Redis too with CI=true) and run them all.
test: $(STAMP) $(VENDOR_JS)
	@bash scripts/test-prereqs.sh
	@$(BIN)/ruff format --check --quiet server workers dev tests bench migrations
	@$(BIN)/ruff check server workers dev tests
	@$(BIN)/lint-imports --no-cache
	@$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## Only the schemathesis run of the live API against /schema/openapi.json (`make test` runs it too).
api-check: $(STAMP) $(VENDOR_JS)
	@$(BIN)/pytest tests/test_openapi_conformance.py $(PYTEST_ARGS)

## The WordPress plugin as the zip to upload in Plugins → Add New → Upload Plugin: dist/affnet-wordpress.zip
wordpress-plugin: $(STAMP)
	@bash scripts/wordpress-plugin.sh $(BIN)/python

lint: $(STAMP)
	@$(BIN)/ruff format --check server workers dev tests bench migrations
	@$(BIN)/ruff check server workers dev tests
	@$(BIN)/lint-imports --no-cache

migrate: $(STAMP)
	@$(BIN)/affnet migrate

demo: $(STAMP)
	@$(BIN)/affnet-dev demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache node_modules static/vendor
