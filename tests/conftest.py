"""Shared pytest fixtures. Builders (pictures, datasets, a live server) are in fixtures.py."""

import os
import tempfile
from pathlib import Path

import pytest
from fixtures import launch_chromium, make_dataset, make_stripes_dataset, sync_playwright, upright_photos

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Keras 3 (upright.keras) reads these on import: the torch backend unless a run names another
# (make test-keras-tf: tensorflow), and a config folder of the tests' own, not ~/.keras.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("KERAS_HOME", os.path.join(tempfile.gettempdir(), "upright-tests-keras"))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Every test run uses its own cache dir: no test reads or writes the user's cache."""
    os.environ["UPRIGHT_CACHE_DIR"] = str(tmp_path_factory.mktemp("upright-cache"))
    yield


@pytest.fixture(autouse=True, scope="session")
def _isolated_config(tmp_path_factory):
    """...and its own config dir (serve --lan's certificate): never the user's."""
    os.environ["UPRIGHT_CONFIG_DIR"] = str(tmp_path_factory.mktemp("upright-config"))
    yield


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def cli(capsys):
    """`upright ARGS...` run in this process -> (exit code, stdout, stderr)."""
    from upright.cli import main

    def run(*args) -> tuple[int, str, str]:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        cap = capsys.readouterr()
        return code, cap.out, cap.err

    return run


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A model trained on a tiny dataset (cat, dog, owl x 6) whose 'dog' photos are all stored
    sideways (tag 6), plus fresh upright test photos of each class."""
    from upright.train import train_dataset

    root = tmp_path_factory.mktemp("trained")
    data = make_dataset(root / "data", 6, ("cat", "dog", "owl"), orientation={"dog": 6})
    result = train_dataset(data, root / "model", progress=False)
    tests = upright_photos(root / "upright-tests")
    return {"root": root, "data": data, "model": root / "model", "result": result, "tests": tests}


@pytest.fixture(scope="session")
def stripes_model_dir(tmp_path_factory) -> Path:
    """A real upright model (2 classes x 8 generated photos) whose classes differ ONLY in
    stripe direction (fixtures.stripes_picture): right answers need upright reading."""
    from upright.train import train_dataset

    root = tmp_path_factory.mktemp("serve-model")
    data = make_stripes_dataset(root / "data", 8)
    train_dataset(data, root / "model", progress=False)
    return root / "model"


@pytest.fixture(scope="module")
def playwright():
    """Playwright's sync API (skips, or fails in CI, without chromium/playwright)."""
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright):
    """Debian chromium, headless, with a fake camera."""
    b = launch_chromium(playwright)
    yield b
    b.close()


# -- the end of `make test`: which tests did not run for want of a system tool ------------------
#: tool named in a skip reason -> (what its tests cover, the Debian package that installs it)
SYSTEM_TOOLS = {"chromium": ("browser tests (the web app, reports at phone width)", "chromium"),
                "jpegtran": ("lossless-fix tests", "libjpeg-turbo-progs")}


def pytest_unconfigure(config):
    """Say plainly, as the very last lines, how many tests a missing system tool skipped and the
    one line that installs it (pytest's list of skips is easy to miss among the others)."""
    reporter = config.pluginmanager.getplugin("terminalreporter")
    missed = {}
    for rep in (reporter.stats.get("skipped", []) if reporter else []):
        reason = rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        for tool in SYSTEM_TOOLS:
            if tool in reason:  # "jpegtran not installed", "/usr/bin/chromium not found (apt-get install chromium)"
                missed[tool] = missed.get(tool, 0) + 1
    if not missed:
        return
    reporter.write_sep("=", "not run: system tools missing", yellow=True, bold=True)
    for tool, n in missed.items():
        reporter.write_line(f"{SYSTEM_TOOLS[tool][0]}: {n} skipped ({tool} not found)")
    reporter.write_line("install: sudo apt-get install " + " ".join(SYSTEM_TOOLS[t][1] for t in missed)
                        + "  (then run make test again)")
