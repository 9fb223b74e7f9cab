# One command per job. The first run creates .venv and installs the project with its dev tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test chaos lint bench clean-data

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job: a campaign against the sandbox gateway, with a recovery shown.
demo: $(STAMP)
	$(BIN)/campaigns demo

## The test suite (unit, integration, end to end with real workers); chaos runs separately.
test: $(STAMP)
	$(BIN)/pytest -m "not chaos"

## The long fault-injection runs: kill -9, broker flush, PostgreSQL restart, session drops.
chaos: $(STAMP)
	$(BIN)/pytest -m chaos

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

## Stop and remove the embedded servers' data folder.
clean-data: $(STAMP)
	$(BIN)/campaigns services stop || true
	rm -rf .data
