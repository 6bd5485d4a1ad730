# accessctl — two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
PG_URL ?= postgres://postgres@127.0.0.1:5432/accessctl
PYTEST_ARGS ?=
# pytest-xdist: PYTEST_WORKERS=2 runs the suite on two workers (about 11 min instead of 20 here); tests that
# share servers or module-scoped rows stay together (tests/conftest.py). The default is one process: on this
# 2-core machine the second worker's load made timing-bound fault and feed tests fail now and then
# (2 of 3 CI runs on session 5), and CI must not flake.
PYTEST_WORKERS ?= 0
PYTEST_XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),-p no:xdist,-n $(PYTEST_WORKERS) --dist loadgroup)
WEB_CONCURRENCY ?= 2

.PHONY: run test install lint migrations-check test-sqlite test-postgres services demo clean serve bench
.PHONY: gateway bench-gateway nginx litellm

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet ".[dev]"
	touch $@

install: $(VENV)/.installed

# LiteLLM (proxy and management client) in a virtualenv of its own: its dependencies are heavy and clash
# with ours. Used by the gateway tests, the management-client tests (`lite` CLI), `make gateway` and
# `make bench-gateway`.
LITELLM_VENV := .venv-litellm
LITELLM_PORT ?= 4000
LITELLM_MASTER_KEY ?= sk-litellm-master-change-me
ACCESSCTL_URL ?= http://127.0.0.1:$(PORT)

$(LITELLM_VENV)/.installed: integrations/litellm/requirements.txt
	@test -x $(LITELLM_VENV)/bin/python || $(PYTHON) -m venv $(LITELLM_VENV) || python3 -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install --quiet --upgrade pip
	$(LITELLM_VENV)/bin/pip install --quiet -r integrations/litellm/requirements.txt
	touch $@

litellm: $(LITELLM_VENV)/.installed

NGINX ?= /usr/sbin/nginx

nginx:  ## Debian's nginx for the gateway tests (the package only: the tests run their own nginx process)
	@test -x $(NGINX) || apt-get install -y nginx || { apt-get update && apt-get install -y nginx; } \
		|| { echo "make: cannot install nginx ($(NGINX)); the gateway tests need it" >&2; exit 1; }
	@test -x $(NGINX) || { echo "make: $(NGINX) is still missing after installing nginx" >&2; exit 1; }

gateway: $(LITELLM_VENV)/.installed  ## the LiteLLM proxy on $(LITELLM_PORT), asking accessctl at $(ACCESSCTL_URL) (run `make run` next to it)
	@test -n "$${ACCESSCTL_USAGE_KEY:-}" || echo "make gateway: ACCESSCTL_USAGE_KEY is not set, so spend is not reported;" \
		"make a key for a system user (e.g. gateway@demo.test) in the admin and export it." >&2
	cd integrations/litellm && ACCESSCTL_URL=$(ACCESSCTL_URL) LITELLM_MASTER_KEY=$(LITELLM_MASTER_KEY) \
		LITELLM_LOCAL_MODEL_COST_MAP=True PYTHONPATH=. \
		exec ../../$(LITELLM_VENV)/bin/litellm --config config.yaml --host 0.0.0.0 --port $(LITELLM_PORT)

bench-gateway: install services $(LITELLM_VENV)/.installed  ## LiteLLM with the plugin vs LiteLLM alone (master key), ABBA, c=1 and c=8
	command -v wrk >/dev/null || apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }
	$(BIN)/python benchmarks/bench_gateway.py

# DEBUG is off, so runserver serves no static files: whitenoise (in the middleware) serves the collected
# admin and Swagger UI files from the same process.
run: install  ## migrate, load the demo, serve the admin and the API docs on $(PORT) (embedded SQLite by default)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_demo
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	exec $(BIN)/python manage.py runserver 0.0.0.0:$(PORT)

# Prometheus multiprocess mode: every worker's counters in memory-mapped files, emptied at each start.
PROMETHEUS_MULTIPROC_DIR ?= /dev/shm/accessctl-metrics-$(PORT)

serve: install  ## production server: gunicorn (gunicorn.conf.py: threads, drain on SIGTERM, metrics), $(WEB_CONCURRENCY) workers on $(PORT)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	rm -rf $(PROMETHEUS_MULTIPROC_DIR) && mkdir -p $(PROMETHEUS_MULTIPROC_DIR)
	PROMETHEUS_MULTIPROC_DIR=$(PROMETHEUS_MULTIPROC_DIR) WEB_CONCURRENCY=$(WEB_CONCURRENCY) \
		exec $(BIN)/gunicorn -c gunicorn.conf.py --bind 0.0.0.0:$(PORT)

bench: install services  ## the hot path under load (wrk): /healthz vs the warm check, SQLite+file cache and PostgreSQL+Redis
	command -v wrk >/dev/null || apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }
	$(BIN)/python benchmarks/bench_authz.py

demo: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_demo

.PHONY: worker bench-bulk bench-faults bench-usage bench-import
CELERY_BROKER_URL ?= redis://127.0.0.1:6379/0

worker: install services  ## a Celery worker with beat (budget resets, key expiry, bulk jobs) on $(CELERY_BROKER_URL)
	CELERY_BROKER_URL=$(CELERY_BROKER_URL) $(BIN)/celery -A accessctl worker --beat --loglevel=info \
		--schedule=/tmp/accessctl-celerybeat-schedule

bench-bulk: install services  ## bulk assignment and key listing at scale, on PostgreSQL
	$(BIN)/python benchmarks/bench_bulk.py

bench-import: install services  ## manage.py import_litellm of 100,000 keys from LiteLLM's real schema, into PostgreSQL and SQLite
	$(BIN)/python benchmarks/bench_import.py

bench-faults: install services  ## warm checks during each fault (Redis killed/paused, database paused, random-key flood)
	command -v wrk >/dev/null || apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }
	$(BIN)/python benchmarks/bench_faults.py

bench-usage: install services  ## usage reports: ingestion rate (one hot key, 1,000 keys) and the lag to spend landing
	command -v wrk >/dev/null || apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }
	$(BIN)/python benchmarks/bench_usage.py

lint: install  ## ruff, then the import contracts of pyproject.toml ([tool.importlinter]: layers, no cycles)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

migrations-check: install
	$(BIN)/python manage.py makemigrations --check --dry-run

services:  ## start PostgreSQL, Redis and RabbitMQ if they are down; fail loudly if one cannot start
	bash scripts/ensure-services.sh

test-sqlite: install
	env -u DATABASE_URL $(BIN)/pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test-postgres: install services
	DATABASE_URL=$(PG_URL) $(BIN)/pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

CHROMIUM ?= /usr/bin/chromium

.PHONY: chromium
chromium:  ## Debian's chromium for the browser tests (Playwright drives it; it never downloads a browser)
	@test -x $(CHROMIUM) || apt-get install -y chromium || { apt-get update && apt-get install -y chromium; } \
		|| { echo "make: cannot install chromium ($(CHROMIUM)); the browser tests need it" >&2; exit 1; }
	@test -x $(CHROMIUM) || { echo "make: $(CHROMIUM) is still missing after installing chromium" >&2; exit 1; }

test: install lint migrations-check services chromium nginx $(LITELLM_VENV)/.installed test-sqlite test-postgres  ## the whole suite, on SQLite then PostgreSQL

clean:
	rm -rf $(VENV) $(LITELLM_VENV) db.sqlite3 staticfiles
