"""Files on disk: which names are images, what lies under a folder, a file's content hash.

One walking rule for every verb (scan, fix, predict), so they agree on what a folder holds:

- hidden files and folders (a leading dot) are left out and reported;
- symlinked folders are followed, except one that leads back inside the folder being walked
  (a loop, or a folder that is read where it really is) or to a folder already walked
  through another link: no folder is read twice and no walk can loop;
- links that lead nowhere are reported, not crashed on;
- the order is sorted, so results do not depend on the file system.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .webp .tif .tiff .heic .heif .hif .avif .bmp .gif .mpo".split()
)

Skipped = list[tuple[str, str]]  # (path, one-line reason)


def is_image_name(path: str | os.PathLike) -> bool:
    """True when the file name ends with an image extension (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks (hex digest)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class _Walk:
    """What one walk has seen: the folders read so far and the symlinked ones followed."""

    def __init__(self, folder, exclude):
        self.top = os.path.realpath(folder)
        self.barred = [os.path.realpath(e) for e in exclude]
        self.seen: set[str] = set()  # real paths of the folders walked so far
        self.linked: list[str] = []  # real paths of the symlinked folders followed

    def why_not(self, here: str, path: str, name: str) -> str | None:
        """Why the sub-folder `name` of `here` (real path) is not entered, or None (and it is noted)."""
        real = os.path.realpath(path)
        link = os.path.islink(path)
        if name.startswith("."):
            return "hidden folder"
        if link and _inside(here, real):
            return "symlink loop: links to a folder above it"
        if link and _inside(real, self.top):
            return "symlink to a folder inside the tree (read where it is)"
        if real in self.seen or (link and any(_inside(real, t) for t in self.linked)):
            return "folder already scanned through another link"
        if any(_inside(real, b) for b in self.barred):
            return "excluded folder"
        self.seen.add(real)
        if link:
            self.linked.append(real)
        return None


def _files_here(dirpath: str, filenames, skipped: Skipped) -> list[Path]:
    """The visible regular files of one folder, in name order; the rest into `skipped`."""
    found = []
    for name in sorted(filenames):
        p = Path(dirpath) / name
        if name.startswith("."):
            skipped.append((str(p), "hidden file"))
        elif not p.is_file():
            skipped.append((str(p), "not a regular file (broken link?)"))
        else:
            found.append(p)
    return found


def walk_files(folder: str | os.PathLike, skipped: Skipped | None = None, *,
               exclude: tuple[str | os.PathLike, ...] = ()) -> list[Path]:
    """Every visible regular file under `folder` (see the module docstring for the rules).

    What is left out is appended to `skipped` as (path, reason). `exclude`: folders never
    entered (e.g. an output folder that a link inside the data points to).
    """
    skipped = skipped if skipped is not None else []
    walk = _Walk(folder, exclude)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        here = os.path.realpath(dirpath)
        walk.seen.add(here)
        keep = []
        for name in sorted(dirnames):
            path = os.path.join(dirpath, name)
            why = walk.why_not(here, path, name)
            if why is None:
                keep.append(name)
            else:
                skipped.append((path, why))
        dirnames[:] = keep
        found += _files_here(dirpath, filenames, skipped)
    return found


def image_files(folder: str | os.PathLike, skipped: Skipped | None = None) -> list[Path]:
    """The image files under `folder` (by extension); other files are reported in `skipped`."""
    skipped = skipped if skipped is not None else []
    out = []
    for p in walk_files(folder, skipped):
        if is_image_name(p):
            out.append(p)
        else:
            skipped.append((str(p), f"not an image file extension ({p.suffix or 'none'})"))
    return out


def remove_empty_folders(folder: str | os.PathLike) -> bool:
    """Remove the empty folders under `folder`, deepest first, then `folder` itself when it is
    empty: never a file. True when `folder` is gone."""
    folder = Path(folder)
    for d in sorted((p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()), key=lambda p: -len(p.parts)):
        try:
            d.rmdir()
        except OSError:
            pass
    try:
        folder.rmdir()
        return True
    except OSError:
        return False
