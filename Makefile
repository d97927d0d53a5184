# Two commands for a newcomer:  make demo   and   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.zoo-installed

.PHONY: setup demo test test-fast lint clean

setup: $(STAMP)

# qwen3_speaker's reference, qwen-tts, pins transformers 4.57.3; zoo imports only two of its files (see
# plugins/qwen3_tts/upstream.py), which run under transformers 5: it is installed without its dependencies.
# torch first, pinned: it installs the CPU wheel; a bare `torch` requirement can pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,all]"
	$(BIN)/pip install --quiet --no-deps qwen-tts==0.1.1
	touch $(STAMP)

# The main job: export PocketTTS at full size with seeded random weights (no download; about a
# minute), speak through the exported packages with zoo's MIL interpreter, then list what zoo knows.
# The demo registers into exports/registry.toml (ignored by git), so the committed registry.toml stays as cloned.
DEMO := ZOO_REGISTRY=exports/registry.toml

demo: setup
	$(DEMO) $(BIN)/zoo export pocket_tts --random-weights
	$(DEMO) $(BIN)/zoo run pocket_tts "Hello there." -o hello.wav
	$(DEMO) $(BIN)/zoo list

test: setup
	$(BIN)/python -m pytest

# The inner loop: every test not marked slow (no export larger than the tiny plugin's, no matrix,
# no full conversion of a built-in model); `make test` runs them all.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

# The habits CI keeps: ruff's lint and format (line length 120), the import contracts in
# pyproject.toml (core's layers, plugins independent and through the façade and the kit only),
# and mypy on core/ (every function annotated; settings in pyproject.toml). mypy must see the
# checkout as the package `zoo` whatever its folder is called: a link in the venv names it so.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	mkdir -p $(VENV)/mypy-root && ln -sfn $(CURDIR) $(VENV)/mypy-root/zoo
	MYPYPATH=$(CURDIR)/$(VENV)/mypy-root $(BIN)/mypy -p zoo.core

clean:
	rm -rf $(VENV) exports .pytest_cache
