"""The CLI contract: every verb in docs/contracts.md exists with --help; usage errors exit 2 in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

VERBS = ["audit", "fix", "train", "predict", "eval", "serve", "export", "demo"]


def run(*args):
    return subprocess.run([sys.executable, "-m", "upright.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb):
    res = run(verb, "--help")
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout


def test_version_and_unknown_verb():
    assert run("--version").stdout.startswith("upright ")
    res = run("frobnicate")
    assert res.returncode == 2 and "Traceback" not in res.stderr
