"""`upright fix` and symbolic links, a full disk, SIGTERM (issue 23): fix never writes through
a link that leaves DATA (or OUT), never turns a link into a file, says what it did; `--undo`
exits 1 when it restores less than its manifest lists; ENOSPC is one line and exit 2 with
nothing half-written; SIGTERM keeps finished work like Ctrl+C (embed keeps its shards)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures import SLOW_RUNNER, asym_picture, class_picture, make_dataset, write_photo
from upright.fix import BACKUP_DIR, MANIFEST, run_fix, undo_fix

SRC = str(Path(__file__).resolve().parents[1] / "src")


def sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def tree(tmp_path: Path) -> tuple[Path, Path]:
    """DATA with a sideways photo of its own, a symlinked folder and a symlinked file that
    lead OUTSIDE, each to a sideways photo."""
    data, outside = tmp_path / "data", tmp_path / "elsewhere"
    write_photo(data / "a" / "own.png", asym_picture(), 6, fmt="PNG")
    write_photo(outside / "album" / "far.png", asym_picture(), 6, fmt="PNG")
    write_photo(outside / "single.png", asym_picture(), 8, fmt="PNG")
    (data / "linked").symlink_to(outside / "album", target_is_directory=True)
    (data / "a" / "link.png").symlink_to(outside / "single.png")
    return data, outside


def test_in_place_never_writes_outside_data_nor_replaces_a_link(tmp_path):
    data, outside = tree(tmp_path)
    before = {p: sha(p) for p in outside.rglob("*.png")}
    r = run_fix(data, in_place=True, progress=False)
    files = {Path(f["path"]).name: f for f in r["files"]}
    assert files["own.png"]["outcome"] == "fixed"
    assert files["far.png"]["outcome"] == "skipped" and "outside DATA" in files["far.png"]["note"]
    assert files["link.png"]["outcome"] == "skipped" and "symbolic link" in files["link.png"]["note"]
    assert {p: sha(p) for p in outside.rglob("*.png")} == before  # nothing outside DATA changed
    assert (data / "a" / "link.png").is_symlink()  # still a link, not a file
    entries = [json.loads(x) for x in (data / BACKUP_DIR / MANIFEST).read_text().splitlines()]
    assert [e["path"] for e in entries] == ["a/own.png"]
    assert r.to_dict()["files"][0]["path"] == r["files"][0].path  # the typed result's JSON


def test_out_never_writes_through_a_link_in_out(tmp_path, cli):
    data = tmp_path / "data"
    write_photo(data / "sub" / "p.png", asym_picture(), 6, fmt="PNG")
    write_photo(data / "q.png", asym_picture(), 6, fmt="PNG")
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.mkdir()
    out.mkdir()
    (out / "sub").symlink_to(victim, target_is_directory=True)
    (out / "q.png").symlink_to(tmp_path / "precious.png")
    (tmp_path / "precious.png").write_bytes(b"precious")
    assert cli("fix", data, "--out", out)[0] == 1  # failed files: exit 1, said per file
    assert list(victim.iterdir()) == [] and (tmp_path / "precious.png").read_bytes() == b"precious"
    assert (out / "q.png").is_symlink()


def test_undo_exits_1_when_it_restores_less_than_its_manifest_lists(tmp_path, cli):
    d = tmp_path / "d"
    (d / BACKUP_DIR).mkdir(parents=True)
    (tmp_path / "victim.jpg").write_bytes(b"precious")
    line = {"path": "../victim.jpg", "backup": f"{BACKUP_DIR}/evil.jpg", "sha256_before": "x"}
    (d / BACKUP_DIR / MANIFEST).write_text(json.dumps(line) + "\n")
    r = undo_fix(d, dry_run=True)
    assert r["listed"] == 1 and not r["complete"]
    code, out, _ = cli("fix", d, "--undo")
    assert code == 1 and "1 of the 1 listed not restored" in out


def test_undo_of_a_clean_run_exits_0(tmp_path, cli):
    d = tmp_path / "d"
    write_photo(d / "p.png", asym_picture(), 6, fmt="PNG")
    run_fix(d, in_place=True, progress=False)
    assert cli("fix", d, "--undo")[0] == 0


# ---- a full disk: a real tmpfs of 1 MB in a private mount namespace -------------------------------

def _can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
                           capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs root and mount namespaces (CI runs as root)")

FULL_DISK = """
set -e
mount -t tmpfs -o size={size} tmpfs "$SMALL"
rc=0
"$PY" -m upright.cli {args} 2>"$SMALL.err" || rc=$?
echo "rc=$rc"
find "$SMALL" -name '*.tmp' -o -name '.*upright*' | sed 's/^/left: /'
cat "$SMALL.err"
"""


def full_disk(tmp_path: Path, size: str, args: str) -> tuple[int, list[str], str]:
    small = tmp_path / "small"
    small.mkdir(exist_ok=True)
    env = {**os.environ, "SMALL": str(small), "PY": sys.executable,
           "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(["unshare", "-m", "sh", "-c", FULL_DISK.format(size=size, args=args)], env=env,
                         capture_output=True, text=True, timeout=300)
    lines = out.stdout.splitlines()
    rc = int(next(x for x in lines if x.startswith("rc="))[3:])
    left = [x for x in lines if x.startswith("left: ")]
    return rc, left, out.stdout


@needs_mount
def test_fix_out_on_a_full_disk_is_one_line_and_exit_2(tmp_path):
    data = tmp_path / "data"
    for i in range(6):
        write_photo(data / f"{i}.png", class_picture(0, i, 640, 480), 6, fmt="PNG")
    rc, left, text = full_disk(tmp_path, "256k", f'fix {data} --out "$SMALL/out"')
    err = [x for x in text.splitlines() if x.startswith("upright:")]
    assert rc == 2, text
    assert len(err) == 1 and "No space left on device" in err[0] and "Traceback" not in text
    assert left == [], left  # no temp file of a half-written copy


@needs_mount
@pytest.mark.slow
@pytest.mark.parametrize("what,size,args", [
    ("embed shards", "16k", 'embed {data} -o "$SMALL/out"'),
    ("model writes", "12k", 'train {data} -o "$SMALL/model"'),
    ("the cache", "256k", 'train {data} -o {tmp}/model'),
])
def test_every_writer_on_a_full_disk_is_one_line_and_exit_2(tmp_path, what, size, args, monkeypatch):
    data = make_dataset(tmp_path / "data", n_per_class=4, classes=("cat", "dog"))
    if what == "the cache":  # the cache itself on the small disk (ONNX export, SQLite)
        monkeypatch.setenv("UPRIGHT_CACHE_DIR", str(tmp_path / "small" / "cache"))
    rc, left, text = full_disk(tmp_path, size, args.format(data=data, tmp=tmp_path))
    said = [x for x in text.splitlines() if x.startswith("upright:")]
    assert rc == 2, text
    assert len(said) == 1 and "Traceback" not in text, text
    assert any(w in said[0] for w in ("No space left on device", "disk full", "is full")), said
    assert left == [], left


@needs_mount
def test_fix_in_place_on_a_full_disk_leaves_every_file_whole(tmp_path):
    prelude, data_rel = tmp_path / "prelude.sh", "data"
    script = f"""
mkdir -p "$SMALL/{data_rel}"
"$PY" - <<'EOF'
import os, sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from fixtures import write_photo, class_picture
for i in range(40):
    write_photo(os.path.join(os.environ["SMALL"], "{data_rel}", f"{{i}}.png"), class_picture(0, i, 160, 120), 6, fmt="PNG")
EOF
"""
    prelude.write_text(script)
    small = tmp_path / "small"
    small.mkdir()
    env = {**os.environ, "SMALL": str(small), "PY": sys.executable,
           "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    body = f"""
set -e
mount -t tmpfs -o size=2m tmpfs "$SMALL"
sh {prelude}
dd if=/dev/zero of="$SMALL/filler" bs=1k count=$(( $(df -k --output=avail "$SMALL" | tail -1) - 16 )) 2>/dev/null
rc=0
"$PY" -m upright.cli fix "$SMALL/{data_rel}" --in-place 2>"$SMALL.err" || rc=$?
echo "rc=$rc"
find "$SMALL" -name '*.tmp' | sed 's/^/left: /'
"$PY" - <<'EOF'
import json, os
from upright import describe
root = os.path.join(os.environ["SMALL"], "{data_rel}")
bad = [n for n in sorted(os.listdir(root)) if n.endswith(".png") and describe(os.path.join(root, n)).unreadable]
print("unreadable:", bad)
m = os.path.join(root, ".upright-originals", "manifest.jsonl")
lines = open(m).read().splitlines() if os.path.exists(m) else []
print("manifest_ok:", all(json.loads(x) for x in lines))
EOF
cat "$SMALL.err"
"""
    out = subprocess.run(["unshare", "-m", "sh", "-c", body], env=env, capture_output=True, text=True, timeout=300)
    text = out.stdout
    assert "rc=2" in text, text + out.stderr
    assert "unreadable: []" in text and "manifest_ok: True" in text, text
    assert not [x for x in text.splitlines() if x.startswith("left: ")], text
    assert sum(x.startswith("upright: error:") for x in text.splitlines()) == 1, text


def test_a_disk_full_error_anywhere_is_one_line(monkeypatch, tmp_path, cli):
    """Where no tmpfs can be mounted: the same path, with the write itself failing."""
    import errno

    import upright.fix as fix_module

    data = tmp_path / "data"
    write_photo(data / "p.png", asym_picture(), 6, fmt="PNG")

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "p.png"))

    monkeypatch.setattr(fix_module.shutil, "copystat", no_space)
    code, _, err = cli("fix", data, "--out", tmp_path / "out")
    assert code == 2
    said = [x for x in err.splitlines() if "upright:" in x]
    assert len(said) == 1 and said[0].endswith("(disk full; nothing half-written was left)"), err
    assert "No space left on device" in said[0] and "Traceback" not in err
    assert not list((tmp_path / "out").rglob("*.tmp")) and not (tmp_path / "out" / "p.png").exists()


def test_a_failed_manifest_append_leaves_no_half_line(tmp_path, monkeypatch):
    import errno

    import upright.fix as fix_module

    d = tmp_path / "d"
    write_photo(d / "a.png", asym_picture(), 6, fmt="PNG")
    write_photo(d / "b.png", asym_picture(), 6, fmt="PNG")
    before = {p.name: sha(p) for p in d.glob("*.png")}
    real_write, calls = os.write, []

    def half_then_full(fd, data):
        calls.append(1)
        if len(calls) == 2:  # the second file's manifest line: a part lands, then the disk is full
            real_write(fd, bytes(data)[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(fix_module.os, "write", half_then_full)
    with pytest.raises(OSError):
        run_fix(d, in_place=True, progress=False)
    lines = (d / BACKUP_DIR / MANIFEST).read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["path"] == "a.png"
    assert sha(d / "b.png") == before["b.png"]  # the file whose write failed is untouched
    assert not (d / BACKUP_DIR / "b.png").exists()  # and no stray original of it
    monkeypatch.undo()
    assert undo_fix(d)["complete"] and {p.name: sha(p) for p in d.glob("*.png")} == before


# ---- SIGTERM: like Ctrl+C ----------------------------------------------------------------------

TERMINATED = SLOW_RUNNER + """
from upright.pipeline import stores
shard.BATCH = stores.SHARD_ROWS = 2
from upright.cli import main
main(["embed", sys.argv[1], "-o", sys.argv[2]])
"""


@pytest.mark.slow
def test_sigterm_during_embed_keeps_its_finished_shards(tmp_path):
    from upright.pipeline.stores import read_rows
    from upright.pipeline.embed import embed_paths

    data = make_dataset(tmp_path / "data", n_per_class=4, classes=("cat", "dog"))
    embed_paths([data / "cat" / "cat_000.jpg"], progress=False, workers=0)  # export the ONNX graph first
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", TERMINATED, str(data), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not list(out.glob("part-*.parquet")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    kept = read_rows(out).num_rows
    assert 2 <= kept < 8  # finished shards, and the last partial one, kept; the run did not finish
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))
