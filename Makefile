# Two commands for a newcomer:  make demo   and   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.zoo-installed

.PHONY: setup demo test clean

setup: $(STAMP)

# torch first, pinned: it installs the CPU wheel; a bare `torch` requirement can pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,all]"
	touch $(STAMP)

# The main job: export a model with seeded random weights (no download), then list what zoo knows.
# Until the first model plugin lands this uses the example plugin from tests/plugins/zoo_tiny.
demo: setup
	$(BIN)/pip install --quiet --no-deps -e tests/plugins/zoo_tiny
	$(BIN)/zoo export tiny --random-weights
	$(BIN)/zoo list

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) exports .pytest_cache
