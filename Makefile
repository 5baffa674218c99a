# The two set-up commands (see README): `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install lint bench migration dashboard-vendor dashboard-check

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Start the control plane on the embedded defaults (SQLite in ./.replicas, local runtime, port 8321).
run: install
	$(VENV)/bin/replicas serve

## Install everything, then run the whole suite (SQLite and PostgreSQL at 127.0.0.1:5432). Two pytest-xdist
## workers, each taking whole files (module fixtures stay in one process): the suite waits on agents, engines and
## containers as much as it computes, so two workers fit a 2-core machine. A short base temp dir: the workers'
## own folders would otherwise push some tests' unix socket paths past the kernel's 108 bytes.
## The base temp dir is new for each run: a folder left by an earlier run (one whose files the sandboxes' user
## namespaces own, or still mounted) must not stop this one.
test: install
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile --basetemp="$$(mktemp -d /tmp/rpl.XXXX)"

## Benchmarks (figures go in the closing notes, never in timed tests).
bench: install
	$(VENV)/bin/python -m bench.checkout_bench --files 10000 --runs 5

lint: install
	$(VENV)/bin/ruff check src tests

## New Alembic revision from the models: `make migration MESSAGE="add widgets"`.
migration: install
	rm -rf .replicas/migration-scratch && mkdir -p .replicas/migration-scratch
	REPLICAS_MIGRATION_URL=sqlite:///.replicas/migration-scratch/dev.db $(VENV)/bin/python -c \
	  "from alembic import command; from replicas.store.db import alembic_config; c = alembic_config(); \
	   command.upgrade(c, 'head'); command.revision(c, message='$(MESSAGE)', autogenerate=True)"

## The dashboard's vendored libraries (src/replicas/dashboard/static/vendor/) from npm, at the versions in
## src/replicas/dashboard/vendor.lock.json; dashboard-check verifies them against the tarballs, changing nothing.
dashboard-vendor: install
	$(VENV)/bin/python -m replicas.dashboard.vendoring

dashboard-check: install
	$(VENV)/bin/python -m replicas.dashboard.vendoring --check
