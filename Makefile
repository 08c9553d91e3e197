# Two commands for a newcomer: `make run` serves the service locally, `make test` runs every test.
# Everything installs into .venv; nothing outside the project is touched except what tests declare
# (Debian packages for PostgreSQL / Chromium / podman are installed by the tests that need them).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080
STAMP  := $(VENV)/.installed

.PHONY: help install run dev test lint format container-test bench clean

help:
	@echo "make run             serve on http://$(HOST):$(PORT) (auth off, CORS *, preview page on)"
	@echo "make test            install everything and run the whole test suite (lint included)"
	@echo "make lint / format   ruff check / ruff format"
	@echo "make container-test  build the image with podman and test it on loopback"
	@echo "make bench           load-test the service against a JSON-only baseline"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $@

install: $(STAMP)

# Local defaults: no EHR to authenticate, plain-http FHIR servers allowed (sandbox on loopback),
# any browser origin (the CDS Hooks sandbox), and the card preview page.
LOCAL_ENV := CDS_AUTH=off CDS_ALLOW_HTTP_FHIR=true CDS_CORS_ORIGINS='*' CDS_PREVIEW_ENABLED=true \
	CDS_DATA_DIR=$(CURDIR)/data CDS_ADMIN_ENABLED=true HOST=$(HOST) PORT=$(PORT)

run: $(STAMP)
	@mkdir -p data
	@echo "CDS Hooks discovery: http://$(HOST):$(PORT)/cds-services   card preview: http://$(HOST):$(PORT)/"
	$(LOCAL_ENV) $(BIN)/cds-service serve

dev: $(STAMP)
	@mkdir -p data
	$(LOCAL_ENV) $(BIN)/cds-service dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -ra

container-test: $(STAMP)
	bash scripts/container-test.sh

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache data
