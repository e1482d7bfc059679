# Two commands set streamser up on a fresh machine:
#   make listen   create .venv, install streamser, and start the live analyser on the microphone
#   make test     create .venv, install streamser with its test tools, and run the whole test suite
#
# TORCH picks the torch build installed before streamser. Empty (the default) lets pip choose:
# on Linux that is PyPI's CUDA build, which suits machines with an NVIDIA GPU. CI and CPU-only
# machines pass e.g. TORCH=torch==2.13.0 or
# TORCH="torch --index-url https://download.pytorch.org/whl/cpu".

PYTHON ?= python3
VENV ?= .venv
TORCH ?=
ARGS ?=
PYTEST_ARGS ?=
BIN := $(VENV)/bin

.PHONY: listen demo test test-fast lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@if [ -n "$(TORCH)" ]; then $(BIN)/pip install $(TORCH); fi
	$(BIN)/pip install -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -e '.[test]'
	@touch $@

listen: $(VENV)/.installed
	$(BIN)/streamser listen $(ARGS)

demo: $(VENV)/.installed
	$(BIN)/streamser demo $(ARGS)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

PY_SOURCES := streamser tests benchmarks

lint: $(VENV)/.installed-test
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/mypy

format: $(VENV)/.installed-test
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/ruff check --fix $(PY_SOURCES)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
