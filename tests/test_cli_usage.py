"""How the command line talks (issue 25): --help at 80 columns reads as sentences, with capitals
for arguments and examples that parse; a usage error is one line with a "did you mean"; the
common mix-ups (MODEL and DATA swapped, a class folder given as DATA) get a hint; a first run
says what it does while the backbone is exported."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from fixtures import class_picture, write_photo
from upright import backbones
from upright.cli import app
from upright.cli_usage import EXAMPLES, wrap
from upright.results import Prediction

ROOT = Path(__file__).resolve().parents[1]
GROUP = typer.main.get_command(app)


def upright(*args, cwd=None):
    """`upright ARGS` in a fresh process at 80 columns, as a user's terminal runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "upright.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=cwd)


def one_error_line(res) -> str:
    """The run failed as a usage error: exit 2, nothing on stdout, exactly one line on stderr."""
    lines = res.stderr.splitlines()
    assert res.returncode == 2 and not res.stdout and len(lines) == 1, (res.returncode, res.stdout, res.stderr)
    assert lines[0].startswith("upright: error: ") and "Traceback" not in res.stderr
    return lines[0]


# -- --help ----------------------------------------------------------------------------
@pytest.mark.parametrize("verb", [""] + list(GROUP.commands))
def test_help_reads_as_sentences_at_80_columns(verb, cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli(*([verb] if verb else []), "--help")
    assert code == 0
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80, max(lines, key=len)
    assert "<bool>" not in out and "╭" not in out and "\\[" not in out  # no Rich boxes, types or escapes
    usage = lines[0]
    assert usage.startswith("Usage: upright") and "{" not in usage and not re.search(r"\b[a-z]+\}", usage)
    for line in lines:
        assert not re.search(r"[A-Za-z]-$", line), f"a word broken at its hyphen: {line!r}"
        assert not re.search(r"\[default:[^\]]*$", line), f"a [default: ...] split over two lines: {line!r}"
        assert not re.match(r"\s+\d+\)?[.,;]?(\s|$)", line), f"a number alone at a line's start: {line!r}"
    examples = out.split("Examples:\n", 1)[1].splitlines()
    assert 2 <= len(examples) <= 3 and all(e.startswith("  upright ") for e in examples), examples


def test_arguments_read_in_capitals(cli):
    _, out, _ = cli("train", "--help")
    assert out.startswith("Usage: upright train [OPTIONS] DATA\n")
    assert "\n  DATA  Folder with one sub-folder per class" in out
    _, out, _ = cli("predict", "--help")
    assert out.startswith("Usage: upright predict [OPTIONS] MODEL IMAGES...\n")
    _, out, _ = cli("eval", "--help")
    assert out.startswith("Usage: upright eval [OPTIONS] [MODEL] [DATA]\n")


def test_every_verb_has_examples_that_parse_with_its_own_options():
    assert set(EXAMPLES) == {""} | set(GROUP.commands), "every verb (and upright --help) needs examples"
    for verb, lines in EXAMPLES.items():
        for line in lines:
            for run in line.split("#", 1)[0].split("&&"):
                words = shlex.split(run.split(">", 1)[0])
                assert words[0] == "upright" and (not verb or words[1] == verb), line
                cmd = GROUP.commands[words[1]]
                cmd.make_context(words[1], words[2:])  # raises on an unknown option or a bad choice


def test_wrap_never_breaks_a_word_a_hyphen_or_a_bracket():
    text = "use efficientnet-lite0+lite2 with --ray-address ray://head:10001 (exit 2)  [default: fast]"
    for width in range(12, 60):
        for line in wrap(text, width).splitlines():
            assert not line.endswith("-") and "[default:" not in line.replace("[default: fast]", "")
    assert wrap("a\n\n\bkeep  this\n  as is", 40) == "a\n\nkeep  this\n  as is"


# -- one-line usage errors -----------------------------------------------------------------
def test_mistyped_option_is_one_line_with_did_you_mean():
    line = one_error_line(upright("train", "photos", "--outt", "model"))
    assert line == "upright: error: no such option --outt; did you mean --out?"
    line = one_error_line(upright("train", "photos", "-z"))
    assert "no such option -z" in line and "upright train --help" in line


def test_mistyped_verb_is_one_line_with_did_you_mean():
    assert one_error_line(upright("trian", "photos")) == "upright: error: no such command 'trian'; did you mean 'train'?"
    line = one_error_line(upright("frobnicate"))
    assert "no such command 'frobnicate'" in line and "audit, fix, train" in line


def test_mistyped_choice_says_did_you_mean(tmp_path):
    line = one_error_line(upright("export", tmp_path, "--format", "onx"))
    assert line == "upright: error: --format 'onx' is not a choice; did you mean onnx?"
    line = one_error_line(upright("export", tmp_path, "--format", "zip"))
    assert "choose from onnx, coreml, tflite" in line


def _dummy_args(cmd) -> list[str]:
    """Values for a verb's required arguments and options, so that parsing reaches the option tested."""
    args = []
    for p in cmd.params:
        if p.required:
            args += (["x"] if p.param_type_name == "argument" else [p.opts[0], "x"])
    return args


def _near_miss(choice: str) -> str:
    return choice[:-1] if len(choice) > 3 else choice + "x"


def test_every_choice_option_suggests_the_choice_meant(cli):
    """Each Enum option of each verb, given a near miss of each choice: exit 2, one line, did you mean."""
    seen = 0
    for verb, cmd in GROUP.commands.items():
        for p in cmd.params:
            choices = getattr(getattr(p, "type_descriptor", None), "choices", None)
            if p.param_type_name != "option" or not choices:
                continue
            for c in choices:
                value = c.value if hasattr(c, "value") else str(c)
                code, out, err = cli(verb, *_dummy_args(cmd), p.opts[0], _near_miss(value))
                assert code == 2 and len(err.splitlines()) == 1, (verb, p.opts, err)
                assert f"did you mean {value}?" in err, (verb, p.opts, value, err)
                seen += 1
    assert seen >= 15  # --augment, --engine, --preset, --device, --fail-on, --format, --layout


def test_missing_argument_names_it_in_capitals_with_the_usage():
    line = one_error_line(upright("train"))
    assert line == "upright: error: missing argument DATA (usage: upright train [OPTIONS] DATA)"
    assert "missing option -o/--out" in one_error_line(upright("train", "photos"))
    assert "--seed 'abc'" in one_error_line(upright("train", "photos", "-o", "m", "--seed", "abc"))


# -- hints ---------------------------------------------------------------------------------
def _model_and_data(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")  # the hint looks for the file only, before anything is read
    data = tmp_path / "photos"
    for label in ("cat", "dog"):
        write_photo(data / "test" / label / "a.jpg", class_picture(0, 1))
    return model, data


def test_eval_and_predict_with_model_and_data_swapped_say_so(tmp_path):
    model, data = _model_and_data(tmp_path)
    line = one_error_line(upright("eval", "photos", "model", cwd=tmp_path))
    assert line == ("upright: error: photos is not a model folder but model is: the model comes first; "
                    "did you mean `upright eval model photos`?")
    line = one_error_line(upright("predict", "photos/test/cat", "model", cwd=tmp_path))
    assert "did you mean `upright predict model photos/test/cat`?" in line
    (tmp_path / "net.onnx").write_bytes(b"onnx")
    assert "`upright eval --onnx net.onnx DATA`" in one_error_line(upright("eval", "net.onnx", "photos", cwd=tmp_path))


def test_train_on_one_class_folder_says_what_data_should_hold(tmp_path):
    _, data = _model_and_data(tmp_path)
    line = one_error_line(upright("train", "photos/test/cat", "-o", "m", cwd=tmp_path))
    assert "photos/test/cat: no class folders, but 1 image directly inside" in line
    assert "one folder per class" in line and line.endswith("did you mean photos?")
    assert not (tmp_path / "m").exists()


# -- the first run says what it is doing -------------------------------------------------------
def test_first_run_says_it_is_preparing_the_backbone(tmp_path, monkeypatch, capsys):
    """ensure_onnx announces the export (seconds the progress bar would show as 0%) once: a cached
    graph is used silently. The export itself is replaced here; tests elsewhere run the real one."""
    exported = []
    monkeypatch.setattr(backbones, "torch_module", lambda name, state_dict=None: name)
    monkeypatch.setattr(backbones, "export_onnx", lambda module, path, spec: exported.append(path) or
                        path.parent.mkdir(parents=True, exist_ok=True) or path.write_bytes(b"graph"))
    monkeypatch.setattr(backbones, "_valid_onnx", lambda path: path.read_bytes() == b"graph")
    backbones.ensure_onnx(backbones.DEFAULT, tmp_path, key="0" * 64)
    err = capsys.readouterr().err
    assert f"preparing the backbone {backbones.DEFAULT} (first run: exporting it to ONNX" in err
    assert len(err.splitlines()) == 1 and len(exported) == 1
    backbones.ensure_onnx(backbones.DEFAULT, tmp_path, key="0" * 64)
    assert capsys.readouterr().err == "" and len(exported) == 1


# -- the API -----------------------------------------------------------------------------------
def test_prediction_has_the_top_label_and_score(trained):
    from upright.model import load_model

    photo = trained["tests"]["owl"][0]
    p = load_model(trained["model"]).predict([photo], top_k=2)[0]
    assert (p.label, p.score) == (p.predictions[0][0], float(p.predictions[0][1]))
    assert p.label == "owl" and isinstance(p.score, float)
    assert set(p.to_dict()) == {"path", "orientation", "predictions"}  # predict --json: unchanged
    bad = Prediction("x.jpg", None, [], error="not an image")
    assert bad.label is None and bad.score is None
