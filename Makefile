# ScaleMart Ops. `make up` brings up an environment; `make test` runs the whole suite.
ENV ?= dev
PY := .venv/bin/python
# The tools' PATH and settings have one home, toolchain/common.py (tool_settings); the commands the
# targets run set them for their own subprocesses, and make exports them for the rest (pytest, lint).
SETTING = $(shell python3 toolchain/common.py $(1))
export PATH := $(call SETTING,PATH)
export ANSIBLE_CONFIG := $(call SETTING,ANSIBLE_CONFIG)
export PULUMI_SKIP_UPDATE_CHECK := $(call SETTING,PULUMI_SKIP_UPDATE_CHECK)
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION := $(call SETTING,PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION)

.PHONY: help bootstrap up verify restart down credentials test lint ci roles-test build bench-app bench-env load backup restore

help:
	@echo "make up ENV=dev|staging|production   create, configure and verify an environment [FORCE=1]"
	@echo "make build ENV=...                   the build phase alone: every artifact into build/ENV/artifacts"
	@echo "make verify ENV=...                  run the testinfra suite against an environment"
	@echo "make restart ENV=...                 rolling restart of the app hosts behind the balancer, then the workers"
	@echo "make down ENV=... [PURGE=1]          destroy an environment (data volumes kept unless PURGE=1)"
	@echo "make credentials ENV=...             show the generated credentials of an environment"
	@echo "make load ENV=... [SCENARIO=...]     Locust through the balancer (loadtests/README.md)"
	@echo "make bench-env ENV=...               wrk through the balancer, with each host's CPU"
	@echo "make test                            the whole test suite"
	@echo "make lint                            every static check (ruff, mypy, yamllint, ansible-lint, promtool, amtool, actionlint)"
	@echo "make ci [STAGES=lint,security]       the CI pipeline's stages here, with a table of their durations"
	@echo "make bootstrap                       install the toolchain (idempotent)"

# A warm up skips the playbooks when nothing they depend on changed (ops/converge.py); FORCE=1 runs them.
up: bootstrap
	@$(PY) -m ops up $(ENV) $(if $(filter 1,$(FORCE)),--force,)

verify: bootstrap
	@$(PY) -m ops verify $(ENV)

# App hosts one at a time, drained from the load balancer, then the workers (playbooks/rolling-restart.yml).
restart: bootstrap
	@$(PY) -m ops restart $(ENV)

down: bootstrap
	@$(PY) -m ops down $(ENV) $(if $(filter 1,$(PURGE)),--purge,)

credentials:
	@$(PY) -c "import sys, yaml; from ops import secrets; yaml.safe_dump(secrets.load(sys.argv[1]), sys.stdout)" $(ENV)

bootstrap:
	@python3 toolchain/bootstrap.py

# Two stages: every area but the end-to-end tests on two workers (--dist loadscope: a file's tests
# stay together on one worker; each molecule scenario is a class of its own, so they spread), then
# the end-to-end tests alone, since they time alerts and load on the environment they bring up.
# PYTEST_ARGS=... runs just that, in one process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -p no:cacheprovider -ra --durations=25
test: bootstrap
ifdef PYTEST_ARGS
	$(PYTEST) $(PYTEST_ARGS)
else
	@status=0; $(PYTEST) -n $(TEST_WORKERS) --dist loadscope --ignore=tests/e2e || status=1; \
	$(PYTEST) tests/e2e || status=1; exit $$status
endif

# Every static check, as ci.yml's lint job runs it (make ci STAGES=lint): Python, YAML, Ansible, the built alert
# rules and an Alertmanager config rendered from dev's recipients, and the workflows.
LINT_OUT := build/lint
LINT_RECIPIENTS := {"smtp": {"smarthost": "127.0.0.1:25", "from": "alertmanager@localhost", "require_tls": false}, \
	"email": {"critical": ["oncall@localhost"], "warning": ["team@localhost"], "info": ["team@localhost"]}, \
	"sms_notifier_url": "http://127.0.0.1:9095/alertmanager"}
lint: bootstrap
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m yamllint --strict -c .yamllint roles playbooks molecule .github .yamllint .ansible-lint
	ansible-lint --profile production --nocolor roles playbooks molecule
	@rm -rf $(LINT_OUT) && $(PY) -m alert_rules build --out $(LINT_OUT)/alerting >/dev/null
	promtool check rules $(LINT_OUT)/alerting/rules/*.yml
	@echo '$(LINT_RECIPIENTS)' | $(PY) -m alert_rules alertmanager --recipients - --out $(LINT_OUT)/alertmanager.yml >/dev/null
	amtool check-config $(LINT_OUT)/alertmanager.yml
	actionlint

# The CI pipeline's stages here, as the workflows run them (ops/ci.py): every stage, or STAGES=lint,security;
# MOLECULE_SCENARIOS=redis,app for some scenarios. Internet-only stages are skipped with the reason.
ci: bootstrap
	@$(PY) -m ops.ci $(if $(STAGES),--stage $(STAGES),) $(if $(MOLECULE_SCENARIOS),--scenario $(MOLECULE_SCENARIOS),)

# Role scenarios one after another, argument specs, preflight, ansible-lint + yamllint (molecule/README.md).
# One scenario: make roles-test SCENARIO_K=redis
roles-test: bootstrap
	$(PY) -m pytest -p no:cacheprovider -ra tests/roles $(if $(SCENARIO_K),-k $(SCENARIO_K),)

# The API's throughput and latency, buy vs a trivial endpoint, with wrk (app/README.md).
bench-app: bootstrap
	@$(PY) app/bench/bench_app.py $(BENCH_ARGS)

# The build phase alone: every artifact the roles install, into build/$(ENV)/artifacts (ops/build.py);
# unchanged inputs rebuild nothing. `make up` runs it first.
build: bootstrap
	@$(PY) -m ops build $(ENV)

# Locust against the environment's load balancer (loadtests/README.md); exits non-zero when a gate fails.
# SCENARIO=normal|flash|stampede|step; USERS, DURATION and THINK (seconds, MIN-MAX) default to the scenario's;
# one Locust process per core unless PROCESSES=N, or WORKERS=N for a master and N workers.
SCENARIO ?= normal
WORKERS ?= 0
LOAD_ARGS = --env $(ENV) --scenario $(SCENARIO) --workers $(WORKERS) $(if $(USERS),--users $(USERS),) \
	$(if $(DURATION),--duration $(DURATION),) $(if $(THINK),--think $(THINK),) \
	$(if $(PROCESSES),--processes $(PROCESSES),)
load: bootstrap
	@$(PY) -m loadtests.run $(LOAD_ARGS)

# wrk through the environment's load balancer: buy, a product read and /health/live at 50, 200 and
# 1,000 connections, with each host's CPU from the Docker engine (loadtests/README.md).
bench-env: bootstrap
	@$(PY) -m loadtests.bench_env --env $(ENV) $(BENCH_ARGS)

# Backups on the data host (backups/README.md): one backup now; restore FROM=<archive> [FORCE=1].
backup: bootstrap
	@$(PY) -m backups.control backup $(ENV)
restore: bootstrap
	@$(PY) -m backups.control restore $(ENV) "$(FROM)" $(if $(filter 1,$(FORCE)),--force,)

# The Pulumi stack alone (stack/README.md); `make up`/`make down` run it as their first phase.
.PHONY: stack-up stack-down stack-refresh stack-preview
stack-up:
	@$(PY) -m stack.cli up $(ENV)
stack-down:
	@$(PY) -m stack.cli down $(ENV) $(if $(filter 1,$(PURGE)),--purge,)
stack-refresh:
	@$(PY) -m stack.cli refresh $(ENV)
stack-preview:
	@$(PY) -m stack.cli preview $(ENV)
