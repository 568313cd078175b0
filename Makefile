# PetPro — the two commands a new user needs are `make up` and `make test`; both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BUF := node_modules/.bin/buf
PYTEST_ARGS ?=

.PHONY: help setup gen gen-check lint fmt up down status logs migrate seed demo test test-unit test-integration test-e2e bench load clean

help:
	@echo "make up      set up (venv, deps, tools), migrate, start the whole mesh, print the URLs"
	@echo "make test    set up if needed, check gen/ is fresh, lint, run the whole test suite"
	@echo "make down | status | gen | lint | bench"

setup: $(STAMP) $(BUF)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@# gen/ holds the generated contracts (petpro.<domain>.v1, buf.validate): put it on the venv's path
	$(BIN)/python -c "import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()['purelib'], 'petpro_gen.pth').write_text(str(pathlib.Path('gen').resolve()) + '\n')"
	@touch $@

$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

gen: setup
	$(BIN)/python -m petpro.codegen

gen-check: setup
	$(BIN)/python -m petpro.codegen --check

lint: setup
	$(BIN)/ruff check .
	$(BIN)/python -m petpro.codegen --lint

fmt: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

up: setup
	$(BIN)/petpro up

down:
	@if [ -x $(BIN)/petpro ]; then $(BIN)/petpro down; fi

status: setup
	$(BIN)/petpro status

migrate: setup
	$(BIN)/petpro migrate

test: setup gen-check lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

clean: down
	rm -rf .petpro .pytest_cache .ruff_cache
