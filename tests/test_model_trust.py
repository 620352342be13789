"""Forged model folders: every one is a one-line error through predict, eval, serve and
load_model, and nothing is written outside the cache (issue 10, defect 7)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import upright
from upright import backbones
from upright.cli import main
from upright.errors import UprightError
from upright.model import HEAD_FILE, META_FILE, load_model
from upright.pipeline.package import save_model
from fixtures import class_picture, write_photo

ESCAPE = "../../../../../x"  # 16 characters: the part of a hash that names the ONNX cache file


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def stock(trained):  # noqa: F811
    return trained["model"]


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory, stock):
    """A fine-tuned model folder whose backbone tensors are the stock ones (no training needed)."""
    m = load_model(stock)
    meta = {k: v for k, v in m.meta.items() if k not in ("format", "format_version", "upright_version", "head_sha256")}
    meta["fine_tuned"] = True
    out = tmp_path_factory.mktemp("ft") / "model"
    save_model(out, meta, m.weight, m.bias, backbones.load_state_dict(m.backbone))
    return out


def read_meta(folder: Path) -> dict:
    return json.loads((folder / META_FILE).read_text())


def write_meta(folder: Path, meta: dict) -> None:
    (folder / META_FILE).write_text(json.dumps(meta, indent=2))


def rehash(folder: Path) -> None:
    """What a forger does after editing the weights: record the new file's sha256."""
    meta = read_meta(folder)
    meta["head_sha256"] = hashlib.sha256((folder / HEAD_FILE).read_bytes()).hexdigest()
    write_meta(folder, meta)


def forge(src: Path, dst: Path, meta_fn=None, tensors_fn=None, hash_again: bool = True) -> Path:
    shutil.copytree(src, dst)
    if tensors_fn is not None:
        t = load_file(str(dst / HEAD_FILE))
        tensors_fn(t)
        save_file(t, str(dst / HEAD_FILE), metadata={"format": "upright-model",
                                                     "labels": json.dumps(read_meta(dst)["labels"])})
        if hash_again:
            rehash(dst)
    if meta_fn is not None:
        meta = read_meta(dst)
        meta_fn(meta)
        write_meta(dst, meta)
    return dst


def released_folder(src: Path, dst: Path) -> Path:
    """The folder as the released upright (format 1) wrote it: no head hash, scalars as [1]."""
    shutil.copytree(src, dst)
    meta = read_meta(dst)
    meta.pop("head_sha256")
    meta["format_version"] = 1
    t = load_file(str(dst / HEAD_FILE))
    t = {k: np.ascontiguousarray(v) for k, v in t.items()}  # the released writer's call: 0-d -> [1]
    save_file(t, str(dst / HEAD_FILE), metadata={"format": "upright-model", "labels": json.dumps(meta["labels"])})
    write_meta(dst, meta)
    return dst


def tree(root: Path, skip: Path | None = None) -> dict[str, int]:
    out = {}
    for p in sorted(root.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        out[str(p.relative_to(root))] = p.lstat().st_size if not p.is_dir() else -1
    return out


def run_cli(capsys, *argv) -> tuple[int, str]:
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    return code, capsys.readouterr().err


def assert_one_line_everywhere(folder: Path, words: str, tmp_path: Path, capsys, monkeypatch) -> None:
    """load_model, upright.load_model, predict, eval and serve startup all refuse `folder`
    with one line containing `words`, and nothing appears outside the cache."""
    import uvicorn

    def no_serving(*a, **k):
        raise AssertionError("serve started with a forged model folder")

    monkeypatch.setattr(uvicorn.Server, "run", no_serving)
    work = tmp_path / "w"
    cache = work / "c1" / "c2" / "c3" / "cache"  # deep, so a traversal would land inside `work`
    cache.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("UPRIGHT_CACHE_DIR", str(cache))
    data = work / "data"
    if not data.exists():
        for i, lab in enumerate(("cat", "dog")):
            write_photo(data / lab / "p.jpg", class_picture(i, 900 + i))
    before_work, before_model = tree(work, skip=cache), tree(folder)

    for load in (lambda: load_model(folder, cache_dir=cache), lambda: upright.load_model(folder)):
        with pytest.raises(UprightError) as exc:
            load()
        msg = str(exc.value)
        assert "\n" not in msg and words in msg, msg
    doors = [("predict", folder, data, "--json"), ("eval", folder, data, "--json", "--cache", cache),
             ("serve", folder, "--port", "0")]
    for argv in doors:
        code, err = run_cli(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("upright: error:"), (argv, err)
        assert words in lines[0] and "Traceback" not in err, (argv, err)
    assert tree(work, skip=cache) == before_work  # nothing written beside the cache
    assert tree(folder) == before_model  # nor into the model folder


# --------------------------------------------------------------------------- the good cases


def test_saved_folder_records_hashes_that_verify(stock, fine_tuned):
    meta = read_meta(stock)
    assert meta["format_version"] == 2
    assert meta["head_sha256"] == hashlib.sha256((stock / HEAD_FILE).read_bytes()).hexdigest()
    ft = read_meta(fine_tuned)
    stock_state = backbones.load_state_dict(ft["backbone"])
    assert ft["backbone_sha256"] == backbones.state_dict_sha256(stock_state)
    assert load_model(fine_tuned).meta["backbone_sha256"] == ft["backbone_sha256"]


def test_released_format_1_folders_still_load(stock, fine_tuned, tmp_path):
    old = released_folder(stock, tmp_path / "old")
    m, new = load_model(old), load_model(stock)
    assert np.array_equal(m.weight, new.weight) and m.labels == new.labels
    old_ft = released_folder(fine_tuned, tmp_path / "old-ft")
    m = load_model(old_ft)  # backbone hash, shapes and finiteness still checked
    assert m.meta["backbone_sha256"] == read_meta(fine_tuned)["backbone_sha256"]
    # what can still be checked in a format-1 folder still is
    bad = forge(old_ft, tmp_path / "old-ft-altered", hash_again=False,
                tensors_fn=lambda t: t.__setitem__("backbone._conv_head.weight", t["backbone._conv_head.weight"] * 2))
    with pytest.raises(UprightError, match="backbone_sha256"):
        load_model(bad)


def test_a_symlinked_file_with_the_right_bytes_still_loads(stock, tmp_path):
    """git-annex and DVC keep model files as links: a link to the right bytes is fine."""
    store = tmp_path / "store"
    store.mkdir()
    folder = tmp_path / "linked"
    folder.mkdir()
    for name in (META_FILE, HEAD_FILE):
        shutil.copy(stock / name, store / name)
        (folder / name).symlink_to(store / name)
    assert load_model(folder).labels == load_model(stock).labels


# --------------------------------------------------------------------------- forged folders


def _set(path: str, value):
    def edit(meta):
        keys = path.split(".")
        d = meta
        for k in keys[:-1]:
            d = d[int(k)] if isinstance(d, list) else d[k]
        last = keys[-1]
        if isinstance(d, list):
            d[int(last)] = value
        else:
            d[last] = value
    return edit


def test_backbone_hash_with_a_path_in_it_writes_nothing_outside_the_cache(fine_tuned, tmp_path, capsys, monkeypatch):
    forged = forge(fine_tuned, tmp_path / "f", meta_fn=_set("backbone_sha256", ESCAPE + "0" * 48))
    assert_one_line_everywhere(forged, "backbone_sha256", tmp_path, capsys, monkeypatch)


def test_altered_backbone_claiming_the_stock_hash_is_refused(fine_tuned, tmp_path, capsys, monkeypatch):
    stock_hash = backbones.weights_sha256("efficientnet-lite0")

    def alter(t):
        t["backbone._conv_stem.weight"] = (t["backbone._conv_stem.weight"] * -1).astype(np.float32)

    forged = forge(fine_tuned, tmp_path / "f", tensors_fn=alter, meta_fn=_set("backbone_sha256", stock_hash))
    assert_one_line_everywhere(forged, "backbone_sha256", tmp_path, capsys, monkeypatch)
    # the same alteration, claiming the untouched fine-tuned hash
    forged2 = forge(fine_tuned, tmp_path / "g", tensors_fn=alter)
    assert_one_line_everywhere(forged2, "backbone_sha256", tmp_path, capsys, monkeypatch)


def test_altered_head_weights_fail_the_head_hash(stock, tmp_path, capsys, monkeypatch):
    forged = forge(stock, tmp_path / "f", tensors_fn=lambda t: t.__setitem__("weight", t["weight"][::-1].copy()),
                   hash_again=False)
    assert_one_line_everywhere(forged, "head_sha256", tmp_path, capsys, monkeypatch)


def test_head_fitted_on_other_stock_weights_is_refused(stock, tmp_path, capsys, monkeypatch):
    forged = forge(stock, tmp_path / "f", meta_fn=_set("weights_sha256", "ab" * 32))
    assert_one_line_everywhere(forged, "installed", tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("where,value", [("weight", np.nan), ("bias", np.inf), ("weight", -np.inf)])
def test_nan_and_inf_head_weights_are_refused(stock, tmp_path, capsys, monkeypatch, where, value):
    def poison(t):
        a = t[where].copy()
        a.flat[0] = value
        t[where] = a

    forged = forge(stock, tmp_path / "f", tensors_fn=poison)
    assert_one_line_everywhere(forged, "NaN or infinity", tmp_path, capsys, monkeypatch)


def test_nan_backbone_weights_are_refused(fine_tuned, tmp_path, capsys, monkeypatch):
    def poison(t):
        a = t["backbone._conv_head.weight"].copy()
        a.flat[7] = np.nan
        t["backbone._conv_head.weight"] = a

    forged = forge(fine_tuned, tmp_path / "f", tensors_fn=poison)
    assert_one_line_everywhere(forged, "NaN or infinity", tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("edit,words", [
    (lambda t: t.__setitem__("weight", np.zeros((t["weight"].shape[0] + 1, t["weight"].shape[1]), np.float32)),
     "shape"),
    (lambda t: t.__setitem__("bias", np.zeros(1, np.float32)), "shape"),
    (lambda t: t.__setitem__("weight", t["weight"].astype(np.int32)), "dtype"),
    (lambda t: t.pop("bias"), "bias"),
])
def test_wrong_head_shapes_are_refused(stock, tmp_path, capsys, monkeypatch, edit, words):
    forged = forge(stock, tmp_path / "f", tensors_fn=edit)
    assert_one_line_everywhere(forged, words, tmp_path, capsys, monkeypatch)


def test_wrong_backbone_shapes_are_refused(fine_tuned, tmp_path, capsys, monkeypatch):
    def edit(t):
        t["backbone._conv_head.weight"] = t["backbone._conv_head.weight"][:-1].copy()

    forged = forge(fine_tuned, tmp_path / "f", tensors_fn=edit)
    assert_one_line_everywhere(forged, "_conv_head.weight", tmp_path, capsys, monkeypatch)
    forged = forge(fine_tuned, tmp_path / "g", tensors_fn=lambda t: t.pop("backbone._conv_head.weight"))
    assert_one_line_everywhere(forged, "missing tensor", tmp_path, capsys, monkeypatch)
    # backbone tensors in a model that says it is not fine-tuned
    forged = forge(fine_tuned, tmp_path / "h", meta_fn=_set("fine_tuned", False))
    assert_one_line_everywhere(forged, "a model can need", tmp_path, capsys, monkeypatch)

    def one_backbone_tensor(t):
        for k in [k for k in t if k.startswith("backbone.")][1:]:
            del t[k]

    forged = forge(fine_tuned, tmp_path / "i", meta_fn=_set("fine_tuned", False), tensors_fn=one_backbone_tensor)
    assert_one_line_everywhere(forged, "not fine-tuned", tmp_path, capsys, monkeypatch)


def test_truncated_safetensors_is_refused(stock, tmp_path, capsys, monkeypatch):
    old = released_folder(stock, tmp_path / "old")  # no head hash: the parser itself must catch it
    data = (old / HEAD_FILE).read_bytes()
    for i, cut in enumerate((len(data) // 2, 7, 0)):
        forged = forge(old, tmp_path / f"cut{i}")
        (forged / HEAD_FILE).write_bytes(data[:cut])
        assert_one_line_everywhere(forged, "corrupt head weights", tmp_path, capsys, monkeypatch)
    forged = forge(stock, tmp_path / "cut-hashed")
    (forged / HEAD_FILE).write_bytes((stock / HEAD_FILE).read_bytes()[:1000])
    assert_one_line_everywhere(forged, "head_sha256", tmp_path, capsys, monkeypatch)


def test_deeply_nested_json_is_refused(stock, tmp_path, capsys, monkeypatch):
    forged = forge(stock, tmp_path / "f")
    depth = 100_000
    (forged / META_FILE).write_text('{"labels": ["a"], "x": ' + "[" * depth + "]" * depth + "}")
    assert_one_line_everywhere(forged, "invalid model.json", tmp_path, capsys, monkeypatch)
    (forged / META_FILE).write_text("[" * depth + "]" * depth)
    assert_one_line_everywhere(forged, "invalid model.json", tmp_path, capsys, monkeypatch)


def test_huge_sparse_model_json_is_refused_unread(stock, tmp_path, capsys, monkeypatch):
    forged = forge(stock, tmp_path / "f")
    with open(forged / META_FILE, "r+b") as f:
        f.truncate(1 << 30)  # 1 GB, sparse: costs nothing on disk, everything if read
    assert_one_line_everywhere(forged, "bytes", tmp_path, capsys, monkeypatch)


def test_symlinks_pointing_elsewhere_are_refused(stock, fine_tuned, tmp_path, capsys, monkeypatch):
    other = tmp_path / "other.txt"
    other.write_text("root:x:0:0:root:/root:/bin/bash\n")
    another = forge(stock, tmp_path / "another", tensors_fn=lambda t: t.__setitem__("bias", t["bias"] + 1))
    cases = [
        (META_FILE, other, "invalid model.json"),
        (HEAD_FILE, another / HEAD_FILE, "head_sha256"),  # another model's (valid) weights
        (HEAD_FILE, fine_tuned / HEAD_FILE, "a model can need"),  # ... with a backbone in it
        (HEAD_FILE, Path("/dev/zero"), "not a regular file"),
        (META_FILE, tmp_path, "not a regular file"),  # a folder
        (HEAD_FILE, tmp_path / "nowhere", "missing"),  # dangling
    ]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases.append((META_FILE, fifo, "not a regular file"))
    for i, (name, target, words) in enumerate(cases):
        forged = forge(stock, tmp_path / f"f{i}")
        (forged / name).unlink()
        (forged / name).symlink_to(target)
        assert_one_line_everywhere(forged, words, tmp_path, capsys, monkeypatch)


def test_missing_files_are_refused(stock, tmp_path, capsys, monkeypatch):
    for i, (name, words) in enumerate(((META_FILE, "model.json missing"), (HEAD_FILE, "head.safetensors missing"))):
        forged = forge(stock, tmp_path / f"f{i}")
        (forged / name).unlink()
        assert_one_line_everywhere(forged, words, tmp_path, capsys, monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_everywhere(empty, "not a model folder", tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("field,value,words", [
    ("labels.0", "../../x", "labels.0"),
    ("labels.0", "a\nb", "control characters"),
    ("labels", ["a", "a", "b"], "unique"),
    ("labels", [], "labels"),
    ("backbone", "../../x", "unknown backbone"),
    ("weights_sha256", ESCAPE, "weights_sha256"),
    ("head_sha256", ESCAPE, "head_sha256"),
    ("format", "../../x", "format"),
    ("format_version", 99, "newer"),
    ("fine_tuned", "yes", "fine_tuned"),
    ("test_views", ["../../x"], "test_views"),
    ("orientation_policy", "../../x", "orientation_policy"),
    ("input_size", 999, "input_size"),
])
def test_invalid_fields_are_refused(stock, tmp_path, capsys, monkeypatch, field, value, words):
    forged = forge(stock, tmp_path / "f", meta_fn=_set(field, value))
    assert_one_line_everywhere(forged, words, tmp_path, capsys, monkeypatch)


def _string_fields(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _string_fields(v, f"{prefix}{k}.")
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:2]):
            yield from _string_fields(v, f"{prefix}{i}.")
    elif isinstance(obj, str):
        yield prefix[:-1]


def test_a_path_in_any_string_field_writes_nothing_outside(stock, fine_tuned, tmp_path, monkeypatch):
    """Every string in model.json set to a traversal: refused, or loaded and used without
    any file appearing outside the cache (free-form fields are only ever displayed)."""
    work = tmp_path / "w"
    cache = work / "c1" / "c2" / "c3" / "cache"
    # the session cache's exported backbone, so this test does not export it again
    shutil.copytree(Path(os.environ["UPRIGHT_CACHE_DIR"]) / "onnx", cache / "onnx")
    photo = write_photo(work / "p.jpg", class_picture(0, 901))
    refused = loaded = 0
    stock_fields = list(_string_fields(read_meta(stock)))
    ft_only = [f for f in _string_fields(read_meta(fine_tuned)) if f not in stock_fields]
    for n, (src, fields) in enumerate(((stock, stock_fields), (fine_tuned, ft_only))):
        for field in fields:
            dst = tmp_path / "forged" / f"{n}-{field}"
            forged = forge(src, dst, meta_fn=_set(field, ESCAPE + "0" * 48))
            before = tree(work, skip=cache)
            try:
                m = load_model(forged, cache_dir=cache)
            except UprightError as exc:
                assert "\n" not in str(exc)
                refused += 1
                continue
            loaded += 1
            if src == stock:  # the fine-tuned ONNX export is slow; its loads are the point
                assert m.predict([photo])[0].predictions
            assert tree(work, skip=cache) == before, field
    assert refused >= 8 and loaded >= 10, (refused, loaded)
    assert not any(p.name.startswith("x") for p in work.rglob("*") if cache not in p.parents)


def test_cli_prints_one_line_for_a_forged_folder(stock, tmp_path):
    """The real console script: one stderr line, exit 2, no traceback."""
    import subprocess
    import sys

    forged = forge(stock, tmp_path / "f", tensors_fn=lambda t: t["weight"].__setitem__((0, 0), np.nan))
    photo = write_photo(tmp_path / "p.jpg", class_picture(0, 902))
    r = subprocess.run([sys.executable, "-m", "upright.cli", "predict", str(forged), str(photo), "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, (r.stdout, r.stderr)
    assert "NaN" in r.stderr and "Traceback" not in r.stderr


def test_corner_views_need_format_3_and_unknown_views_are_refused(stock, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(stock, folder)
    meta = read_meta(folder)
    for views, version, words in ((["id", "crop-top-left"], 2, "need format version 3"),
                                  (["id", "crop-middle"], 3, "unknown view"),
                                  (["r45"], 2, "unknown view")):
        write_meta(folder, {**meta, "test_views": views, "format_version": version})
        with pytest.raises(UprightError, match=words):
            load_model(folder)
    write_meta(folder, {**meta, "test_views": ["id", "crop-top-left"], "format_version": 3})
    assert load_model(folder).views == ("id", "crop-top-left")
