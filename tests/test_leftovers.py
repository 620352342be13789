"""Leftovers of killed runs and the way back from `fix --in-place` (issue 10, defect 9).

SIGKILLs are real: a child process runs the real CLI with os.replace wrapped so that it
kills itself between writing a temp file and renaming it (the window a crash leaves
behind), then the next run must remove what is provably its own and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fixtures import asym_picture, class_picture, make_dataset, write_photo
from upright.atomic import STALE_AFTER_SECONDS, _host_tag, clean_leftovers, is_leftover
from upright.cli import main
from upright.fix import BACKUP_DIR, MANIFEST, run_fix, undo_fix
from upright.imaging import open_image

needs_jpegtran = pytest.mark.skipif(shutil.which("jpegtran") is None, reason="jpegtran not installed")


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root (hidden ones too): sha256 for files, "dir" for folders."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def temps(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.tmp")}


def kill_at_replace(argv: list[str], nth: int = 3, suffix: str = "", prelude: str = "") -> int:
    """Run `upright ARGV` in a child that SIGKILLs itself at the nth os.replace onto a name
    ending in `suffix`: the temp file is written, the rename never happens."""
    code = prelude + textwrap.dedent(f"""
        import os, signal, sys
        real, calls = os.replace, []
        def replace(src, dst, *a, **k):
            if str(dst).endswith({suffix!r}):
                calls.append(dst)
                if len(calls) == {nth}:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst, *a, **k)
        os.replace = replace
        from upright.cli import main
        main(sys.argv[1:])
    """)
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=600)
    return r.returncode


def decoys(folder: Path) -> list[Path]:
    """Files that look like temp files but are not provably a dead upright run's own."""
    folder.mkdir(parents=True, exist_ok=True)
    made = [
        folder / ".0.jpg.k2j4h5g6.tmp",  # the released version's pattern: no owner in it
        folder / f".x.jpg.upright-{'0' * 8 if _host_tag() != '0' * 8 else '1' * 8}-1-abcdefgh.tmp",  # another machine
        folder / f".y.jpg.upright-{_host_tag()}-{os.getpid()}-abcdefgh.tmp",  # a live writer (this test)
        folder / "draft.upright-notes.tmp",  # a user's file
        folder / ".notes.tmp",
    ]
    for p in made:
        p.write_bytes(b"user data")
    return made


# --------------------------------------------------------------------------- killed runs


@needs_jpegtran
@pytest.mark.parametrize("mode", ["in-place", "out"])
def test_sigkill_during_fix_then_a_rerun_leaves_no_temp_files(tmp_path, mode):
    d = tmp_path / "d"
    for i in range(8):
        write_photo(d / "a" / f"{i}.jpg", class_picture(0, i, 128, 160), 6)
    mine = decoys(d / "a")
    out = tmp_path / "out"
    where = d if mode == "in-place" else out
    argv = ["fix", str(d), "--json"] + (["--in-place"] if mode == "in-place" else ["--out", str(out)])
    before_temps = temps(where) if where.exists() else set()
    assert kill_at_replace(argv) == -signal.SIGKILL
    left = (temps(where) if where.exists() else set()) - before_temps
    assert left, "the killed run left no temp file (the kill missed the window)"

    r = run_fix(d, in_place=mode == "in-place", out=None if mode == "in-place" else out, progress=False)
    assert sorted(Path(p).name for p in r["leftovers_removed"]) == sorted(Path(p).name for p in left)
    assert temps(where) & left == set()  # nothing of the killed run is left
    assert all(p.read_bytes() == b"user data" for p in mine)  # nothing that was not its own is gone
    fixed = sorted((d if mode == "in-place" else out).glob("a/*.jpg"))
    assert len(fixed) == 8 and all(open_image(p).orientation.pending == 1 for p in fixed)


@pytest.mark.slow
def test_sigkill_during_the_onnx_export_then_train_leaves_no_temp_in_the_cache(tmp_path):
    from upright import backbones
    from upright.train import train_dataset

    data = make_dataset(tmp_path / "d", n_per_class=3, classes=("a", "b"))
    cache = tmp_path / "cache"
    # the child's export writes a stand-in graph (the real one takes a minute on 2 cores);
    # what is tested is the atomic write around it and the cleanup after the kill
    fake_export = textwrap.dedent("""
        import onnx, torch
        from onnx import TensorProto, helper
        def fake(m, a, f, **k):  # a tiny valid graph: the export step may read it back
            io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("input", "embedding")]
            g = helper.make_graph([helper.make_node("Identity", ["input"], ["embedding"])], "g", io[:1], io[1:])
            onnx.save(helper.make_model(g), f)
        torch.onnx.export = fake
    """)
    code = kill_at_replace(["train", str(data), "-o", str(tmp_path / "m"), "--cache", str(cache), "--json"],
                           nth=1, suffix=".onnx", prelude=fake_export)
    assert code == -signal.SIGKILL
    left = temps(cache)
    assert left and all(t.startswith("onnx/") for t in left), left
    # the next run: (the session cache's export copied in, so this test exports only once)
    key = backbones.weights_sha256(backbones.DEFAULT)
    onnx = backbones.onnx_file(backbones.DEFAULT, Path(os.environ["UPRIGHT_CACHE_DIR"]), key)
    if onnx.is_file():
        shutil.copy(onnx, backbones.onnx_file(backbones.DEFAULT, cache, key))
    train_dataset(data, tmp_path / "m", cache_dir=cache, progress=False, augment="none")
    assert temps(cache) == set()
    assert temps(tmp_path / "m") == set()


def test_only_provable_leftovers_are_removed(tmp_path):
    mine = decoys(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    ours = tmp_path / f".p.jpg.upright-{_host_tag()}-{int(dead.stdout)}-abcdefgh.tmp"
    ours.write_bytes(b"half a file")
    link = tmp_path / f".q.jpg.upright-{_host_tag()}-{int(dead.stdout)}-abcdefgh.tmp"
    link.symlink_to(mine[0])  # a link with our name is still not ours to delete
    old_other_host = mine[1]
    assert is_leftover(ours) and not is_leftover(link) and not is_leftover(old_other_host)
    assert clean_leftovers(tmp_path, dry_run=True) == [ours] and ours.exists()
    assert clean_leftovers(tmp_path) == [ours] and not ours.exists()
    assert all(p.exists() for p in mine) and link.is_symlink()
    # untouched for a day: stale whoever wrote it (pid reuse, another machine)
    t = os.stat(old_other_host).st_mtime - STALE_AFTER_SECONDS - 60
    os.utime(old_other_host, (t, t))
    assert clean_leftovers(tmp_path) == [old_other_host]


# --------------------------------------------------------------------------- the way back


def _cli(*argv) -> int:
    try:
        main([str(a) for a in argv])
    except SystemExit as exc:
        return exc.code or 0
    return 0


@needs_jpegtran
def test_undo_restores_every_original_byte_for_byte_and_leaves_nothing_extra(tmp_path, monkeypatch):
    d = tmp_path / "d"
    for i, o in enumerate((6, 3, 8, None)):
        write_photo(d / "a" / f"{i}.jpg", class_picture(0, i, 160, 128), o)
    write_photo(d / "b" / "deep" / "p.png", asym_picture(), 6, fmt="PNG")
    write_photo(d / "b" / "odd.jpg", asym_picture(101, 67), 6)  # not block-aligned: re-encoded
    (d / "b" / "notes.txt").write_text("not an image\n")
    (d / ".hidden").write_text("a user's hidden file\n")
    before = snapshot(d)
    stat_before = {p: os.stat(d / p) for p in before if before[p] != "dir"}

    run_fix(d, in_place=True, progress=False)
    # a second in-place run turns one file again (as --rotate-sideways would): two manifest lines for it
    import upright.fix as fix_module

    monkeypatch.setattr(fix_module, "sideways_turns",
                        lambda *a, **k: {os.path.realpath(d / "a" / "0.jpg"): 90})
    run_fix(d, in_place=True, rotate_sideways=True, progress=False)
    lines = (d / BACKUP_DIR / MANIFEST).read_text().splitlines()
    assert sum(json.loads(x)["path"] == "a/0.jpg" for x in lines) == 2
    assert snapshot(d) != before

    assert _cli("fix", d, "--undo", "--dry-run") == 0
    assert (d / BACKUP_DIR).is_dir()
    assert _cli("fix", d, "--undo") == 0
    assert snapshot(d) == before  # every original, byte for byte, and nothing extra (no manifest)
    for p, st in stat_before.items():  # the originals themselves: same mode and times
        now = os.stat(d / p)
        assert (now.st_mode, now.st_mtime_ns) == (st.st_mode, st.st_mtime_ns), p
    assert _cli("fix", d, "--undo") == 2  # nothing left to undo: one-line error


@needs_jpegtran
def test_undo_after_a_killed_in_place_run(tmp_path):
    d = tmp_path / "d"
    for i in range(8):
        write_photo(d / "a" / f"{i}.jpg", class_picture(0, i, 128, 160), 6)
    before = snapshot(d)
    assert kill_at_replace(["fix", str(d), "--in-place", "--json"], nth=4) == -signal.SIGKILL
    r = undo_fix(d)
    assert r["conflicts"] == [] and r["backup_removed"]
    assert snapshot(d) == before  # the temp file of the killed write is gone too


@needs_jpegtran
def test_undo_leaves_a_file_changed_since_the_fix_alone(tmp_path, capsys):
    d = tmp_path / "d"
    for i in range(3):
        write_photo(d / "a" / f"{i}.jpg", class_picture(0, i, 160, 128), 6)
    before = snapshot(d)
    run_fix(d, in_place=True, progress=False)
    edited = d / "a" / "1.jpg"
    edited.write_bytes(edited.read_bytes() + b"edited later")
    assert _cli("fix", d, "--undo") == 1
    now = snapshot(d)
    assert now["a/0.jpg"] == before["a/0.jpg"] and now["a/2.jpg"] == before["a/2.jpg"]
    assert edited.read_bytes().endswith(b"edited later")  # left alone, and said
    assert "a/1.jpg" in capsys.readouterr().out
    kept = [json.loads(x) for x in (d / BACKUP_DIR / MANIFEST).read_text().splitlines()]
    assert [k["path"] for k in kept] == ["a/1.jpg"]  # its original is still there to take by hand
    assert hashlib.sha256((d / kept[0]["backup"]).read_bytes()).hexdigest() == before["a/1.jpg"]


def test_undo_ignores_manifest_lines_pointing_outside_data(tmp_path):
    d = tmp_path / "d"
    (d / BACKUP_DIR).mkdir(parents=True)
    outside = tmp_path / "victim.jpg"
    outside.write_bytes(b"precious")
    (d / BACKUP_DIR / "evil.jpg").write_bytes(b"attack")
    lines = [{"path": "../victim.jpg", "backup": f"{BACKUP_DIR}/evil.jpg", "sha256_before": "x"},
             {"path": "a.jpg", "backup": "../victim.jpg", "sha256_before": "x"},
             {"path": "/etc/hostname", "backup": f"{BACKUP_DIR}/evil.jpg"}]
    (d / BACKUP_DIR / MANIFEST).write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"torn')
    r = undo_fix(d)
    assert outside.read_bytes() == b"precious"
    assert len(r["notes"]) == 4 and r["restored"] == []
