"""The CLI contract: every verb in docs/contracts.md exists with --help that agrees with the contracts
and the documentation (docs/commands.md, every page, the README); usage errors exit 2 in one line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from upright.cli import main

VERBS = ["audit", "fix", "train", "embed", "predict", "eval", "serve", "studio", "export", "demo"]


def run(*args):
    return subprocess.run([sys.executable, "-m", "upright.cli", *args], capture_output=True, text=True, timeout=120)


def test_version_and_unknown_verb():
    assert run("--version").stdout.startswith("upright ")
    res = run("frobnicate")
    assert res.returncode == 2 and "Traceback" not in res.stderr


# -- the contracts, the documentation and --help agree -----------------------------------
ROOT = Path(__file__).resolve().parents[1]
LONG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def _help(verb: str, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "Usage" in out, out
    return out


def _options_by_verb(lines, verbs) -> dict[str, set[str]]:
    """{verb: options} from `upright VERB ...` lines and their more deeply indented continuations."""
    out: dict[str, set[str]] = {v: set() for v in verbs}
    verb = None
    for line in lines:
        words = line.split()
        if words[:1] == ["upright"] and len(words) > 1:
            verb = words[1] if words[1] in out else None
        elif not line.startswith(" " * 8):
            verb = None
        if verb:
            code = line.split("#", 1)[0]
            out[verb] |= set(LONG.findall(code)) | set(re.findall(r"(?<![\w-])-[a-z]\b", code))
    return out


def _section(text: str, title: str) -> list[str]:
    body = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    return body.splitlines()


def test_contracts_readme_and_help_agree(capsys):
    contracts = (ROOT / "docs" / "contracts.md").read_text()
    commands = (ROOT / "docs" / "commands.md").read_text()  # the full list of verbs and options
    helps = {v: _help(v, capsys) for v in VERBS}
    short = {v: dict(re.findall(r"(?<![\w-])(-[a-z]), (--[a-z][a-z-]*)", h)) for v, h in helps.items()}

    def long_names(verb, opts):
        return {short[verb].get(o, o) for o in opts}

    cli_block = contracts.split("CLI (", 1)[1].split("Python API", 1)[0].splitlines()
    promised = _options_by_verb(cli_block, VERBS)
    later: dict[str, set[str]] = {v: set() for v in VERBS}
    for line in _section(contracts, "Not shipped yet"):
        head, _, rest = line.strip().partition(":")
        for verb in (w.strip() for w in head.split(",")):
            if verb in later:
                later[verb] |= set(LONG.findall(rest))
    shipped: dict[str, set[str]] = {v: set() for v in VERBS}
    for line in _section(contracts, "Beyond the list above (already shipped)"):
        head, _, rest = line.strip().partition(":")
        if head in shipped:
            verb = head
        if line.strip().startswith("every verb that embeds"):
            for v in re.findall(r"\b(" + "|".join(VERBS) + r")\b", line):
                shipped[v].add("--cache")
            verb = None
        elif head in shipped or line.startswith("            "):
            if verb:
                shipped[verb] |= set(LONG.findall(line))
    listed = {words[1] for words in map(str.split, commands.splitlines()) if words[:1] == ["upright"] and words[1:]}
    assert set(VERBS) <= listed, f"docs/commands.md lists no line for {sorted(set(VERBS) - listed)}"
    # Every `upright VERB ...` line anywhere in the documentation names options that --help knows.
    pages = [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").rglob("*.md") if p.name != "contracts.md")
    documented = {page.relative_to(ROOT).as_posix(): _options_by_verb(page.read_text().splitlines(), VERBS)
                  for page in pages}
    for verb in VERBS:
        has = set(LONG.findall(helps[verb])) - {"--help"}
        missing = long_names(verb, promised[verb]) - later[verb] - has
        assert not missing, f"contracts promise {verb} {sorted(missing)}, --help lacks them"
        undocumented = has - long_names(verb, promised[verb] | shipped[verb])
        assert not undocumented, f"{verb} --help has {sorted(undocumented)}, docs/contracts.md does not"
        for page, options in documented.items():
            unknown = long_names(verb, options[verb]) - has
            assert not unknown, f"{page}'s {verb} lines: {sorted(unknown)}"
