"""Atomic writes: temp file (or folder) in the same folder + fsync + rename. A crash leaves old or new.

A SIGKILL between the temp file and the rename leaves the temp file behind. Its name says
whose it is: `.NAME.upright-HOST-PID-XXXXXXXX.tmp` (HOST: 8 hex digits of this machine's
name, PID: the writing process), so the next run can remove what is provably a dead run's
own leftover (`clean_leftovers`) and never touches anything else.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

#: A leftover older than this is stale even if its pid now names a live process (pid reuse,
#: e.g. after a reboot) or it was written on another machine sharing the folder.
STALE_AFTER_SECONDS = 24 * 3600
_TEMP = re.compile(r"^\..*\.upright-(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-[a-z0-9_]{8}\.tmp$", re.DOTALL)
_NAME_BYTES = 120  # of the target's name kept in the temp name (file names stop at 255 bytes)


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def temp_prefix(name: str) -> str:
    """The temp-file prefix for a target named `name` (mkstemp adds 8 characters + .tmp)."""
    short = name.encode("utf-8", "surrogateescape")[:_NAME_BYTES].decode("utf-8", "ignore")
    return f".{short}.upright-{_host_tag()}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a pid we wrote: treat as someone else's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def is_leftover(path: Path, now: float | None = None) -> bool:
    """True when `path` is a temp file of an atomic write whose writer is gone: upright's
    name pattern, a regular file (not a link), and either this machine's dead process or
    untouched for STALE_AFTER_SECONDS."""
    m = _TEMP.match(path.name)
    if m is None:
        return False
    try:
        st = path.lstat()
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    now = time.time() if now is None else now
    if now - st.st_mtime > STALE_AFTER_SECONDS:
        return True
    return m["host"] == _host_tag() and not _pid_alive(int(m["pid"]))


def clean_leftovers(folder: str | os.PathLike, recursive: bool = False, dry_run: bool = False) -> list[Path]:
    """Remove (or, dry_run, only list) the leftovers of killed atomic writes in `folder`
    (and its sub-folders, hidden ones included, links not followed). Never raises."""
    found: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return found
    try:
        walk = os.walk(folder) if recursive else [(str(folder), [], [e.name for e in os.scandir(folder)])]
        for dirpath, _, names in walk:
            for name in names:
                if ".upright-" not in name or not name.endswith(".tmp"):
                    continue
                p = Path(dirpath) / name
                if is_leftover(p):
                    try:
                        if not dry_run:
                            p.unlink()
                        found.append(p)
                    except OSError:
                        pass
    except OSError:
        pass
    return found


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success fsync it and rename it over `path`.

    For libraries that want a filename (safetensors, onnx, jpegtran). On error the temp
    file is removed and `path` is untouched. `mode` sets permissions (default: keep the
    old file's, else 0o644).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if mode is None:
            mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
        os.chmod(tmp_path, mode)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    with atomic_path(path, mode) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


# -- whole folders (a model folder): build beside, then swap ---------------------------------
_STAGE, _OLD = ".upright-new-", ".upright-old-"


def stage_folder(target: str | os.PathLike) -> Path:
    """A fresh empty folder beside `target` (same filesystem) to build its replacement in.

    Leftovers of killed runs (their pid is gone) are removed first, and a model left aside by
    an interrupted fallback swap is put back.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for p in sorted(target.parent.iterdir()):
        if p.name.startswith(f".{target.name}{_OLD}") and not target.exists() and not _alive(p.name):
            os.replace(p, target)
        elif p.name.startswith(f".{target.name}{_STAGE}") and not _alive(p.name):
            shutil.rmtree(p, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}{_STAGE}{os.getpid()}-", dir=target.parent))
    os.chmod(stage, target.stat().st_mode & 0o7777 if target.is_dir() else 0o777 & ~_umask())
    return stage


def dead_stages(folder: str | os.PathLike) -> list[Path]:
    """The stage folders (stage_folder) that killed runs left in `folder`, whatever their target:
    a run that never finished leaves one; nothing else matches (hidden, upright's name, pid gone)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.iterdir()) if p.name.startswith(".") and _STAGE in p.name and p.is_dir()
            and not p.is_symlink() and not _alive(p.name)]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _alive(name: str) -> bool:
    try:
        pid = int(name.rsplit("-", 2)[-2])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def swap_folder(stage: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the finished `stage` at `target` atomically: a crash leaves the old folder or the new.

    On Linux an existing target is exchanged with renameat2(RENAME_EXCHANGE) and the old copy
    removed; elsewhere the old folder is renamed aside first (a crash in between leaves it
    there, and the next stage_folder puts it back).
    """
    stage, target = Path(stage), Path(target)
    _fsync_tree(stage)
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        os.replace(stage, target)  # rename(2) may replace an empty folder
    elif _exchange(stage, target):
        shutil.rmtree(stage, ignore_errors=True)  # stage now holds the old folder
    else:
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}{_OLD}{os.getpid()}-", dir=target.parent))
        os.replace(target, aside)
        os.replace(stage, target)
        shutil.rmtree(aside, ignore_errors=True)
    _fsync_dir(target.parent)


def _fsync_tree(folder: Path) -> None:
    for p in folder.iterdir():
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _exchange(a: Path, b: Path) -> bool:
    """renameat2(a, b, RENAME_EXCHANGE): both names stay valid, swapped in one step (Linux 3.15+)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
