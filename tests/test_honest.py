"""Honest numbers: train never reads test/, the model records what it was fitted on, and eval
says how many scored photos the model has seen, for every dataset layout."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import upright
from fixtures import class_picture, write_photo
from upright import provenance
from upright.pipeline.scan import file_sha256

CLASSES = ("cat", "dog", "owl")




def _photos(root: Path, start: int, n: int) -> None:
    for ci, lab in enumerate(CLASSES):
        for i in range(n):
            write_photo(root / lab / f"{lab}_{start + i}.jpg", class_picture(ci, start + i))


def _layout(root: Path, kind: str) -> Path:
    """DATA in one of the layouts train accepts; test photos are variants never used elsewhere."""
    if kind == "hash":
        _photos(root, 0, 6)
    else:
        _photos(root / "train", 0, 6)
    if "val" in kind:
        _photos(root / "val", 50, 3)
    if "test" in kind:
        _photos(root / "test", 100, 2)
    return root


LAYOUTS = {  # layout -> (what eval scores, how many scored photos the model was fitted on)
    "hash": ("all", "all"),            # DATA/<label>: hash split; eval scores every photo
    "train": ("train", "all"),         # DATA/train only: hash split inside it
    "train+val": ("val", "all"),       # val/ picks the head, then the head is fitted on train + val
    "train+val+test": ("test", 0),     # test/ is never read by train
    "train+test": ("test", 0),         # no val/: train/ is hash-split, test/ still never read
}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    out = {}
    for kind in LAYOUTS:
        data = _layout(root / kind / "data", kind)
        result = upright.train(data, root / kind / "model", augment="none", report=False)
        out[kind] = (data, root / kind / "model", result)
    return out


@pytest.mark.parametrize("kind", list(LAYOUTS))
def test_seen_rules_per_layout(layouts, kind):
    data, model, trained = layouts[kind]
    split, seen = LAYOUTS[kind]
    train_files = [p for p in data.rglob("*.jpg") if "test" not in p.relative_to(data).parts]
    assert trained.n_fitted == len(train_files) == trained.n_train + trained.n_val
    fitted = load_file(str(model / "head.safetensors"))["fitted_sha256"]
    assert fitted.dtype == np.uint8 and fitted.shape == (len(train_files), 8)
    ev = upright.evaluate(model, data, rotations=False)
    assert ev.split == split
    assert ev.seen_in_training == (ev.n if seen == "all" else seen)
    assert ev.to_dict()["seen_in_training"] == ev.seen_in_training
    assert all(p["seen_in_training"] is (seen == "all") for p in ev.photos)
    if "test" in kind:
        assert ev.n == 6 and trained.test_not_read == str(data / "test")
        test_hashes = [file_sha256(p) for p in (data / "test").rglob("*.jpg")]
        assert not provenance.seen(fitted, test_hashes).any()


_WATCH: list[list[str]] = []  # while a list is in here, every path Python opens or lists goes into it


def _record_paths(event: str, args: tuple) -> None:
    if _WATCH and event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, Path)):
        _WATCH[-1].append(os.fsdecode(args[0]))


sys.addaudithook(_record_paths)  # audit hooks stay for the process: _WATCH switches this one on and off


def test_train_never_opens_test(tmp_path, monkeypatch):
    """Not just unfitted: train does not hash, decode or even list the photos under test/, and
    neither does the report it writes (its audit of the training photos, its thumbnails).
    Watched where every read goes through: Python's audit events for open and listing a folder
    (decoding in this process: workers=0)."""
    data = _layout(tmp_path / "d", "train+val+test")
    (data / "test" / "zebra").mkdir()  # a class only test/ has: train would have to know it if it looked
    write_photo(data / "test" / "zebra" / "z.jpg", class_picture(4, 1))
    hashed = []
    import upright.files as files  # the one home of file hashing: the scan and the cache's record call it

    real = files.file_sha256
    monkeypatch.setattr(files, "file_sha256", lambda p, *a: hashed.append(Path(p)) or real(p, *a))
    touched: list[str] = []
    _WATCH.append(touched)
    try:
        r = upright.train(data, tmp_path / "m", augment="none", workers=0)  # report=True: the default
    finally:
        _WATCH.remove(touched)
    assert hashed and not [p for p in hashed if "test" in p.parts]
    assert r.report and (tmp_path / "m" / "report.html").is_file()
    under = [p for p in touched if os.path.abspath(p).startswith(str(data) + os.sep)]
    assert any("train" in Path(p).parts for p in under)  # the watch sees train's reads...
    assert not [p for p in under if "test" in Path(p).relative_to(data).parts]  # ...and none under test/
    assert r.labels == list(CLASSES) and r.to_dict()["test_not_read"] == str(data / "test")


def test_a_copied_training_photo_counts_as_seen(layouts, tmp_path, cli):
    data, model, _ = layouts["train+val+test"]
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    src = next((copy / "train" / "cat").glob("*.jpg"))
    shutil.copy(src, copy / "test" / "cat" / "renamed-copy.jpg")
    code, out, err = cli("eval", model, copy, "--json")
    d = json.loads(out)
    assert code == 0 and d["n"] == 7 and d["seen_in_training"] == 1
    code, out, err = cli("eval", model, copy)
    assert "1 of 7 photos was used in training: this is not a test" in " ".join(out.split())


def test_eval_on_training_photos_says_it_loudly(layouts, cli):
    data, model, _ = layouts["hash"]
    code, out, err = cli("eval", model, data)
    text = " ".join(out.split())
    assert code == 0 and "NOT A TEST" in text
    assert "18 of 18 photos were used in training: this is not a test" in text
    data, model, _ = layouts["train+val+test"]
    code, out, err = cli("eval", model, data)
    text = " ".join(out.split())  # (the generated test stripes are near copies: tests/test_near_copies.py)
    assert "none of the 6 photos was used in training" in text and "NOT A TEST" not in text


def test_model_without_a_record_is_unknown_not_unseen(layouts, tmp_path):
    from safetensors.numpy import save_file

    data, model, _ = layouts["hash"]
    old = tmp_path / "old-model"
    shutil.copytree(model, old)
    tensors = load_file(str(old / "head.safetensors"))
    save_file({k: v for k, v in tensors.items() if k != "fitted_sha256"}, str(old / "head.safetensors"))
    meta = json.loads((old / "model.json").read_text())  # as upright 0.1.0 wrote it: format 1, no hashes
    meta = {k: v for k, v in meta.items() if k not in ("fitted_on", "head_sha256")} | {"format_version": 1}
    (old / "model.json").write_text(json.dumps(meta))
    ev = upright.evaluate(old, data, rotations=False)
    assert ev.seen_in_training is None and ev.to_dict()["seen_in_training"] is None


def test_fingerprints_are_sorted_8_byte_prefixes():
    digests = [f"{i:02x}" * 32 for i in (7, 3, 200, 3)]
    rows = provenance.fingerprints(digests)
    assert rows.shape == (3, 8) and [bytes(r).hex() for r in rows] == ["03" * 8, "07" * 8, "c8" * 8]
    assert provenance.seen(rows, ["07" * 32, "08" * 32]).tolist() == [True, False]
    assert provenance.false_match_odds(10**6, 10**6) < 1e-7


# -- the model folder: refuse, --force, atomic replacement ----------------------------------
def test_existing_model_needs_force(layouts, tmp_path, cli):
    data, model, _ = layouts["hash"]
    target = tmp_path / "m"
    shutil.copytree(model, target)
    before = (target / "model.json").read_bytes()
    code, out, err = cli("train", data, "-o", target, "--augment", "none")
    assert code == 2 and err.strip().splitlines()[-1].startswith("upright: error:") and "--force" in err
    assert (target / "model.json").read_bytes() == before
    code, out, err = cli("train", data, "-o", target, "--force", "--augment", "flip", "--json")
    assert code == 0 and json.loads(out)["replaced"] is True
    assert json.loads((target / "model.json").read_text())["augment"] == "flip"
    assert (target / "report.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging folder left beside it
    # a folder that is not a model is never replaced, even with --force
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    code, out, err = cli("train", data, "-o", precious, "--force")
    assert code == 2 and "not an upright model folder" in err and (precious / "keep.txt").read_text() == "mine"


def test_swap_folder_exchange_and_fallback(tmp_path, monkeypatch):
    from upright import atomic

    for use_exchange in (True, False):
        target = tmp_path / f"m{use_exchange}"
        target.mkdir()
        (target / "model.json").write_text("old")
        if not use_exchange:
            monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
        stage = atomic.stage_folder(target)
        (stage / "model.json").write_text("new")
        atomic.swap_folder(stage, target)
        assert (target / "model.json").read_text() == "new"
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_stage_folder_cleans_up_after_killed_runs(tmp_path):
    from upright import atomic

    target = tmp_path / "m"
    dead = 2 ** 22 + 12345  # above pid_max's default: no such process
    leftover = tmp_path / f".m.upright-new-{dead}-abc"
    leftover.mkdir()
    aside = tmp_path / f".m.upright-old-{dead}-xyz"  # an interrupted fallback swap
    aside.mkdir()
    (aside / "model.json").write_text("old")
    stage = atomic.stage_folder(target)
    assert not leftover.exists() and (target / "model.json").read_text() == "old" and stage.is_dir()


@pytest.mark.slow
def test_sigkill_during_forced_train_leaves_old_or_new(layouts, tmp_path):
    data, model, _ = layouts["hash"]
    target = tmp_path / "m"
    shutil.copytree(model, target)
    old = (target / "model.json").read_text()
    code = "from upright.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "train", str(data), "-o", str(target), "--force",
                             "--augment", "flip"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    staged = []
    while time.time() < deadline and proc.poll() is None and not staged:
        staged = [p for p in tmp_path.glob(".m.upright-new-*") if (p / "head.safetensors").exists()]
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    now = json.loads((target / "model.json").read_text())
    assert (target / "model.json").read_text() == old or now["augment"] == "flip"
    assert upright.load_model(target).labels == list(CLASSES)  # whole, loadable
    if staged:  # killed mid-build: the old model, untouched
        assert (target / "model.json").read_text() == old
    r = upright.train(data, target, force=True, augment="flip")  # and the next run cleans up
    assert r.replaced and [p.name for p in tmp_path.iterdir()] == ["m"]


# -- the Python API and the JSON in one place -----------------------------------------------
def test_typed_results_match_the_cli_json(layouts, cli, tmp_path):
    data, model, trained = layouts["train+val+test"]
    from upright.results import EvalResult, TrainResult

    assert isinstance(trained, TrainResult) and trained["n_fitted"] == trained.n_fitted
    d = trained.to_dict()
    for key in ("model", "labels", "val_accuracy", "n_train", "n_val", "seconds", "backbone", "augment"):
        assert key in d
    ev = upright.evaluate(model, data)
    assert isinstance(ev, EvalResult) and "photos" not in ev.to_dict() and len(ev.photos) == ev.n
    code, out, _ = cli("eval", model, data, "--json")
    cli = json.loads(out)
    assert cli.keys() == ev.to_dict().keys()
    assert {k: cli[k] for k in ("accuracy", "seen_in_training", "per_class", "rotations")} == \
        {k: ev.to_dict()[k] for k in ("accuracy", "seen_in_training", "per_class", "rotations")}
    from upright.train import train_dataset  # the module stays importable beside the function

    assert callable(upright.train) and callable(train_dataset)


def test_scan_layouts(tmp_path):
    from upright import scan

    data = _layout(tmp_path / "a", "train+test")
    ds = scan(data, 0.3, read=("train", "val"))
    assert ds.explicit_split and ds.not_read == {"test": str(data / "test")}
    assert {r.split for r in ds.records} == {"train", "val"}  # train/ hash-split: there is no val/
    assert not [r for r in ds.records if "test" in r.path.parts]
    assert len(scan(data, 0.3).split("test")) == 6  # eval's scan reads it
    only = _layout(tmp_path / "b", "train")
    ds = scan(only, 0.3)
    assert ds.explicit_split and ds.labels == list(CLASSES) and ds.read_folders == [str(only / "train")]


def test_fine_tune_starts_from_a_head_that_never_saw_the_val_photos(tmp_path, monkeypatch):
    """The val photos pick the best fine-tune epoch, so the head it starts from is fitted on the
    train photos alone (not the train + val head the plain model keeps)."""
    import importlib

    train_mod = importlib.import_module("upright.train")
    from upright.model import load_model

    data = tmp_path / "d"
    _photos(data / "train", 0, 6)
    _photos(data / "val", 50, 3)
    plain = upright.train(data, tmp_path / "plain", progress=False, report=False)
    seen = {}

    def fake_fine_tune(train_paths, y_train, val_paths, y_val, labels, backbone, head, aug_views, **kw):
        seen.update(head=head, train=list(train_paths), val=list(val_paths))
        raise KeyboardInterrupt  # what it started from is all this test needs

    monkeypatch.setattr(train_mod, "run_fine_tune", fake_fine_tune)
    with pytest.raises(KeyboardInterrupt):
        upright.train(data, tmp_path / "tuned", fine_tune=True, epochs=1, progress=False, report=False)
    assert len(seen["val"]) == 9 and not set(seen["val"]) & set(seen["train"])
    kept = load_model(tmp_path / "plain")
    assert seen["head"][0].shape == kept.weight.shape
    assert not np.allclose(seen["head"][0], kept.weight, atol=1e-4)  # the plain head was fitted on train + val
    assert plain.n_fitted == 27
