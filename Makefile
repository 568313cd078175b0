# PetPro — the two commands a new user needs are `make up` and `make test`; both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BUF := node_modules/.bin/buf
PYTEST_ARGS ?=

.PHONY: help setup gen gen-check lint ts-check fmt up down status logs migrate seed demo test test-unit test-integration test-e2e test-chaos test-k8s bench h2load load clean chromium test-tools image k8s k8s-check

help:
	@echo "make up      set up (venv, deps, tools), migrate, start the whole mesh, print the URLs"
	@echo "make test    set up if needed, check gen/ is fresh, lint, run the whole test suite"
	@echo "make down | status | gen | lint | bench (ratios vs in-run baselines) | load (Locust)"

setup: $(STAMP) $(BUF)

CHECKOV_VERSION := 3.3.30
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,devstack,render]'
	@# an old venv may still hold the .pth that put gen/ on sys.path before gen/ was packaged
	rm -f $(VENV)/lib/python*/site-packages/petpro_gen.pth
	@# checkov (policy scan of the rendered chart) pins packaging<24, which pytest 9 refuses: own venv
	@test -x $(VENV)/tools/checkov/bin/python || $(PYTHON) -m venv $(VENV)/tools/checkov
	$(VENV)/tools/checkov/bin/python -m pip install -q 'checkov==$(CHECKOV_VERSION)'
	@touch $@

$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# gen/ from the protos; the package lists of pyproject.toml, Dockerfile, .dockerignore from the mesh
# manifest (petpro/mesh.py)
gen: setup
	$(BIN)/python -m petpro_dev.codegen
	$(BIN)/python -m petpro_dev.meshgen

gen-check: setup
	$(BIN)/python -m petpro_dev.codegen --check
	$(BIN)/python -m petpro_dev.meshgen --check

# Kubernetes: the chart's mesh.json (the manifest's component lists) and Envoy config (same generator as
# the dev stack), and k8s/manifests/ rendered from k8s/helm/petpro with default values (committed;
# `make test` fails if stale, like gen/).
k8s: setup
	$(BIN)/python k8s/render.py

k8s-check: setup
	$(BIN)/python k8s/render.py --check

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m petpro_dev.codegen --lint
	$(BIN)/python -m petpro_dev.codegen --breaking
	$(BIN)/python -m petpro_dev.migration_lint

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

# the contract a mobile team compiles against: TypeScript types generated from the OpenAPI document by a
# real generator (openapi-typescript, readOnly/writeOnly markers for openapi-fetch), and the typed example
# client (examples/typescript) compiled against them with tsc --strict
ts-check: setup
	node_modules/.bin/openapi-typescript gen/petpro_api/openapi.json --read-write-markers \
		-o examples/typescript/generated/api.d.ts
	node_modules/.bin/tsc -p examples/typescript --noEmit

test: setup gen-check k8s-check lint ts-check chromium test-tools image
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

# the slow suites, each on its own (all of them also run in `make test`)
test-e2e: setup chromium
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

test-chaos: setup
	$(BIN)/python -m pytest -m chaos $(PYTEST_ARGS)

test-k8s: setup k8s-check
	$(BIN)/python -m pytest tests/k8s $(PYTEST_ARGS)

# Browser tests drive Debian's chromium through Playwright (never `playwright install`).
CHROMIUM := /usr/bin/chromium
chromium:
	@if [ -x $(CHROMIUM) ]; then \
		echo "chromium: $(CHROMIUM) is installed"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "chromium: installing Debian's chromium package"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
		echo "chromium: installing Debian's chromium package (sudo)"; \
		sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	else \
		echo "chromium: $(CHROMIUM) is missing and this user cannot install packages." >&2; \
		echo "  Install it as root: apt-get update && apt-get install -y --no-install-recommends chromium" >&2; \
		echo "  (browser tests are skipped without it, except in CI where they fail)" >&2; \
		if [ -n "$$CI" ]; then exit 1; fi; \
	fi

# Debian packages some tests run for real: PgBouncer (the services behind a transaction pooler) and
# promtool (Debian's prometheus: the chart's alert rules).  Installed when missing, as root, without
# letting the packages start their system services (policy-rc.d), like `chromium`.
TEST_TOOLS := pgbouncer:/usr/sbin/pgbouncer prometheus:/usr/bin/promtool
test-tools:
	@missing=""; for t in $(TEST_TOOLS); do test -x "$${t#*:}" || missing="$$missing $${t%%:*}"; done; \
	if [ -z "$$missing" ]; then \
		echo "test-tools: pgbouncer and promtool are installed"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "test-tools: installing Debian's$$missing"; \
		own=; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
			chmod +x /usr/sbin/policy-rc.d; own=1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		rc=$$?; if [ -n "$$own" ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$rc; \
	else \
		echo "test-tools:$$missing missing and this user cannot install packages (apt-get install$$missing)" >&2; \
		echo "  (their tests are skipped without them, except in CI where they fail)" >&2; \
		if [ -n "$$CI" ]; then exit 1; fi; \
	fi

# Benchmarks: every figure against a baseline measured in the same run (benchmarks/run.py).
# h2load (Debian nghttp2-client) drives the RPC floor and read figures; BENCH_* env vars set sizes.
bench: setup h2load
	$(BIN)/python -m benchmarks

h2load:
	@command -v h2load >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nghttp2-client; \
		else echo "h2load missing: apt-get install nghttp2-client (the benchmark falls back to Python clients)"; fi; }

# A longer user-journey load with Locust against the stack from `make up` (run `petpro seed` first).
LOAD_USERS ?= 20
LOAD_TIME ?= 2m
load: setup
	$(BIN)/python -m pip install -q 'locust>=2.30'
	$(BIN)/locust -f benchmarks/locustfile.py --headless -u $(LOAD_USERS) -r 5 -t $(LOAD_TIME) \
		--host http://127.0.0.1:$${PETPRO_ENVOY_PORT:-7480}

# The container image (Dockerfile), from a fresh machine: installs the engine when missing (Debian's
# docker.io, its daemon started WITHOUT touching iptables; CONTAINER_ENGINE=podman also works), makes a
# base from the Debian mirror when PYTHON_IMAGE cannot be pulled, builds with BuildKit, reports the size
# and writes the SBOM (build/sbom.cdx.json).  petpro_dev/image.py; docs/operations.md "The image".
IMAGE ?= petpro
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
PYTHON_IMAGE ?=
CONTAINER_ENGINE ?= docker
image: setup
	CONTAINER_ENGINE=$(CONTAINER_ENGINE) $(BIN)/python -m petpro_dev.image build --image $(IMAGE) --tag $(IMAGE_TAG) \
		$(if $(PYTHON_IMAGE),--python-image $(PYTHON_IMAGE))

clean: down
	rm -rf .petpro .pytest_cache .ruff_cache
