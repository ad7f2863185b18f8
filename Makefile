# The two commands of the README:
#   make demo   install, migrate, seed the demo and serve http://127.0.0.1:5000 with worker and beat
#   make test   install what the tests need and run the whole suite (every tier it can reach)
# Both are idempotent: a second run reinstalls nothing unless pyproject.toml changed.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV)/bin)
export PATH := $(BIN):$(PATH)
ENVFILE := instance/dianfei.env
# CI (DIANFEI_REQUIRE_SERVICES=1) runs every tier, so it can hold the coverage gate.
COVERAGE_GATE := $(if $(filter 1,$(DIANFEI_REQUIRE_SERVICES)),--cov-fail-under=95,)

.PHONY: demo test install install-test

demo: install $(ENVFILE)
	grep -q '^DIANFEI_SANDBOX=' $(ENVFILE) || echo 'DIANFEI_SANDBOX=1' >> $(ENVFILE)
	grep -q '^TZ=' $(ENVFILE) || echo 'TZ=Asia/Shanghai' >> $(ENVFILE)
	grep -q '^DIANFEI_NOTIFICATIONS__CONSOLE=' $(ENVFILE) || echo 'DIANFEI_NOTIFICATIONS__CONSOLE=1' >> $(ENVFILE)
	honcho -e $(ENVFILE) run flask --app wsgi db upgrade
	honcho -e $(ENVFILE) run flask --app wsgi demo seed
	honcho -e $(ENVFILE) run python -m payments.sandbox --init
	@echo "Dianfei is starting on http://127.0.0.1:5000 (Ctrl-C stops web, worker and beat)"
	honcho -e $(ENVFILE) start

test: install-test
	ruff check .
	mypy
	pytest --cov --cov-report=term:skip-covered $(COVERAGE_GATE) $(PYTEST_ARGS)

install: $(VENV)/.installed-runtime
install-test: $(VENV)/.installed-test

$(VENV)/.installed-runtime: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed-runtime
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# A secret key made once per checkout, shared by the web, worker and beat processes.
$(ENVFILE):
	mkdir -p instance
	umask 077 && $(PYTHON) -c 'import secrets; print("DIANFEI_SECRET_KEY=" + secrets.token_urlsafe(48))' > $@
