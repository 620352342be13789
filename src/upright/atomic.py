"""Atomic writes: temp file in the same folder + fsync + rename. A crash leaves old or new.

A SIGKILL between the temp file and the rename leaves the temp file behind. Its name says
whose it is: `.NAME.upright-HOST-PID-XXXXXXXX.tmp` (HOST: 8 hex digits of this machine's
name, PID: the writing process), so the next run can remove what is provably a dead run's
own leftover (`clean_leftovers`) and never touches anything else.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
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
