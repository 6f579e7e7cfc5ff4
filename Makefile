# earmark: set-up, detection and tests in one place. Every target creates the virtual
# environment and installs what it needs first, so each works on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INPUT ?= recordings/
OUT ?= earmark-out
ARGS ?=
# torch is pinned to a CPU build; set TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu)
# to take it from another index than the default one.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
SHARED ?= $(abspath ../shared)

.PHONY: install dev run test lint bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed  ## create the environment and install earmark

dev: $(VENV)/.dev  ## install with the test tools

run: install  ## detect sound events in INPUT (files, folders, globs) into OUT (replacing it)
	$(BIN)/earmark detect $(INPUT) -o $(OUT) --overwrite $(ARGS)

test: dev  ## lint and run the test suite on real audio (EARMARK_SHARED, default ../shared)
	$(BIN)/ruff check src tests benchmarks
	EARMARK_SHARED=$${EARMARK_SHARED:-$(SHARED)} \
	EARMARK_MODEL_DIR=$${EARMARK_MODEL_DIR:-$(SHARED)/models} \
	$(BIN)/python -m pytest -q

lint: dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: dev  ## speed, memory and accuracy benchmarks (JSON under benchmarks/results/)
	EARMARK_SHARED=$${EARMARK_SHARED:-$(SHARED)} \
	EARMARK_MODEL_DIR=$${EARMARK_MODEL_DIR:-$(SHARED)/models} \
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info src/*.egg-info
