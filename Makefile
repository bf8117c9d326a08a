# The two commands of the README. Each creates .venv and installs what it needs.
.PHONY: setup demo test test-fast model bench clean

VENV ?= .venv
PY := $(VENV)/bin/python

setup:
	@scripts/setup.sh

model: setup
	@$(VENV)/bin/codetailor model fetch

## demo: fetch the model, create a demo tenant, index, train, evaluate, serve, complete.
demo: setup
	@$(PY) -m codetailor.demo

## test: the whole suite as CI runs it (unit tests, then the model/engine/Ray integration tests).
test: setup
	@scripts/test.sh

## test-fast: unit tests only (no model, no engine, no Ray).
test-fast: setup
	@$(PY) -m pytest -q -m "not model and not engine and not integration"

clean:
	rm -rf $(VENV) .pytest_cache
