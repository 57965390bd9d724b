# ScaleMart Ops. `make up` brings up an environment; `make test` runs the whole suite.
ENV ?= dev
PY := .venv/bin/python
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/.venv/bin:$(PATH)
export PULUMI_SKIP_UPDATE_CHECK := true
export PULUMI_HOME := $(CURDIR)/.state/pulumi-home
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help bootstrap up verify down test lint dashboards bench-app load backup restore

help:
	@echo "make up ENV=dev|staging|production   create, configure and verify an environment"
	@echo "make test                            the whole test suite"
	@echo "make bootstrap                       install the toolchain (idempotent)"

bootstrap:
	@python3 toolchain/bootstrap.py

test: bootstrap
	$(PY) -m pytest -p no:cacheprovider -ra $(PYTEST_ARGS)

lint: bootstrap
	$(PY) -m ruff check .
