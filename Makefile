# The few commands the README names. Everything runs inside .venv in the repository root.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 3000
PYTEST_ARGS ?=
# `make demo` and `make dev` keep their state in the repository (.codex/, ignored by git) so the demo never
# mixes with a personal memory store; set CODEX_HOME to use another one.
CODEX_HOME ?= $(CURDIR)/.codex

.PHONY: install demo dev test bench clean

install: $(STAMP)

# Re-install only when the dependency declarations change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: install
	CODEX_HOME="$(CODEX_HOME)" $(BIN)/codex demo

dev: install
	CODEX_HOME="$(CODEX_HOME)" PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/codex dev --host $(HOST) --port $(PORT)

test: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	PATH="$(CURDIR)/$(BIN):$$PATH" sh -c 'for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done'

clean:
	rm -rf $(VENV) dbt_project/target dbt_project/logs .pytest_cache
