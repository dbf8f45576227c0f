# Developer entry points. Without DATABASE_URL every target uses the embedded PostgreSQL
# (config/database.py); with it, that server.
#
#   make run                      web + Celery worker + beat on http://127.0.0.1:8000/
#   make test PYTEST_ARGS="-k x"  the test suite (arguments passed to pytest)
#                                 PYTEST_ALLOW_EMPTY=1 accepts "no tests collected"
#   make lint                     ruff
#   make bench BENCH_ARGS=...     every bench/*.py in turn

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when a requirements file changes; the stamps live in the venv they describe.
# `make run` needs only the runtime set; tests, lint and benchmarks add requirements-dev.txt.
STAMP := $(VENV)/.requirements.stamp
DEV_STAMP := $(VENV)/.requirements-dev.stamp
PYTEST_ARGS ?=
PYTEST_ALLOW_EMPTY ?=
BENCH_ARGS ?=

.PHONY: venv install install-dev run test lint format bench

venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(STAMP)

$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements.txt
	touch $@

install-dev: $(DEV_STAMP)

$(DEV_STAMP): requirements-dev.txt $(STAMP)
	$(BIN)/python -m pip install --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: install
	$(BIN)/python scripts/run.py

# pytest exits 5 when it collected no tests: a failure, unless PYTEST_ALLOW_EMPTY=1.
test: install-dev
	@echo "$(BIN)/pytest $(PYTEST_ARGS)"; \
	status=0; $(BIN)/pytest $(PYTEST_ARGS) || status=$$?; \
	if [ "$$status" -eq 5 ] && [ "$(PYTEST_ALLOW_EMPTY)" = 1 ]; then \
		echo "pytest collected no tests (PYTEST_ALLOW_EMPTY=1)"; status=0; \
	fi; \
	exit $$status

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Files starting with "_" are helpers, not benchmarks.
bench: install-dev
	@found=0; \
	for script in bench/*.py; do \
		case "$$(basename "$$script")" in _*) continue;; esac; \
		[ -f "$$script" ] || continue; \
		found=1; \
		echo "== $$script"; \
		$(BIN)/python "$$script" $(BENCH_ARGS) || exit $$?; \
	done; \
	[ "$$found" = 1 ] || echo "no bench/*.py yet"
