# upright: the README's commands. `make demo` and `make test` set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Elsewhere than this machine, pass PyTorch's CPU wheel index to avoid a multi-GB CUDA build:
#   make setup TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=

.PHONY: setup demo test bench fuzz clean

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

bench: setup
	$(BIN)/python bench/run_all.py

# Fuzz the one door (fuzz/): SECONDS per target (3 targets), or FUZZ_RUNS inputs per target.
SECONDS ?= 60
FUZZ_RUNS ?= 0
fuzz: setup
	$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/pip install -q "atheris>=2.3"
	$(BIN)/python fuzz/run.py --seconds $(SECONDS) --runs $(FUZZ_RUNS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
