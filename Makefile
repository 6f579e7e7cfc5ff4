# earmark: set-up, detection and tests in one place. Every target creates the virtual
# environment and installs what it needs first, so each works on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INPUT ?= recordings/
OUT ?= earmark-out
ARGS ?=
# torch: the CPU build (about 200 MB to download, 750 MB installed) unless this machine has an
# NVIDIA GPU (nvidia-smi answers). TORCH_BUILD=cpu or cuda chooses; cuda is PyPI's default build,
# several GB with its nvidia-* packages. TORCH_INDEX adds another index to take torch from.
TORCH_VERSION ?= 2.13.0
TORCH_BUILD ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX ?= $(if $(filter cpu,$(TORCH_BUILD)),$(TORCH_CPU_INDEX))
# make test installs the programs the service and web tests run (tools/system-deps.sh, apt-get);
# SYSTEM_DEPS=no skips that (those tests are then skipped, outside CI).
SYSTEM_DEPS ?= yes
SHARED ?= $(abspath ../shared)

.PHONY: install dev run test test-fast lint bench clean system-deps torch-build

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	@echo "installing torch $(TORCH_VERSION), $(TORCH_BUILD) build$(if $(filter cpu,$(TORCH_BUILD)), (about 200 MB; TORCH_BUILD=cuda for the GPU build), (several GB; TORCH_BUILD=cpu for the 200 MB CPU build))"
	$(BIN)/pip install --quiet --no-deps torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e .
	@$(MAKE) --no-print-directory torch-build
	touch $@

torch-build:  ## say which torch build the environment has
	@$(BIN)/python -c "import torch; print('torch', torch.__version__, '(CUDA ' + torch.version.cuda + ')' if torch.version.cuda else '(CPU build)')"

$(VENV)/.dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed  ## create the environment and install earmark

dev: $(VENV)/.dev  ## install with the test tools

run: install  ## detect sound events in INPUT (files, folders, globs) into OUT (replacing it)
	$(BIN)/earmark detect $(INPUT) -o $(OUT) --overwrite $(ARGS)

system-deps:  ## install Redis, PostgreSQL and Chromium for the service and web tests (apt-get)
	@bash tools/system-deps.sh

test: dev $(if $(filter yes,$(SYSTEM_DEPS)),system-deps)  ## set up, lint, type-check and run the test suite on real audio (EARMARK_SHARED, default ../shared)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	EARMARK_SHARED=$${EARMARK_SHARED:-$(SHARED)} \
	EARMARK_MODEL_DIR=$${EARMARK_MODEL_DIR:-$(SHARED)/models} \
	$(BIN)/python -m pytest -q --durations=15

test-fast: dev  ## the tests not marked slow (no training, servers, browsers or live streams): minutes, not a quarter hour
	EARMARK_SHARED=$${EARMARK_SHARED:-$(SHARED)} \
	EARMARK_MODEL_DIR=$${EARMARK_MODEL_DIR:-$(SHARED)/models} \
	$(BIN)/python -m pytest -q -m "not slow"

lint: dev  ## ruff (lint and format) and mypy
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: dev  ## speed, memory and accuracy benchmarks (JSON under benchmarks/results/)
	EARMARK_SHARED=$${EARMARK_SHARED:-$(SHARED)} \
	EARMARK_MODEL_DIR=$${EARMARK_MODEL_DIR:-$(SHARED)/models} \
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info src/*.egg-info
