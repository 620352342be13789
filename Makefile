# upright: the README's commands. `make demo` and `make test` set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Elsewhere than this machine, pass PyTorch's CPU wheel index to avoid a multi-GB CUDA build:
#   make setup TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=

.PHONY: setup demo test test-fast bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/upright demo

test: setup
	$(BIN)/python -m pytest -q

# While working: everything but the tests marked slow (the browser, real ONNX exports, subprocesses).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
