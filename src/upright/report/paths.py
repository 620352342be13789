"""Paths as a report page shows them: below DATA, never this machine's absolute paths.

A report is a file people pass around: "IMG_0055.jpg" alone names a photo in every class, and
"/home/alice/photos/..." tells the reader nothing useful about the data and something about the
machine. So a photo is shown by its path below DATA ("train/roses/IMG_0055.jpg"), DATA itself
as the user typed it when that was relative, else by its folder name, and the absolute DATA
prefix is taken out of any message that quotes a path.
"""

from __future__ import annotations

import os


def shown_root(root: str | os.PathLike | None) -> str:
    """DATA (or MODEL) for a page: as typed when relative, else its folder name."""
    if root is None:
        return ""
    text = os.fspath(root)
    if not os.path.isabs(text):
        return text
    return os.path.basename(os.path.normpath(text)) or text


def below(path: str | os.PathLike, root: str | os.PathLike | None) -> str:
    """A file's path below root ("train/roses/IMG_0055.jpg"); a file outside root keeps a
    relative path as given and loses the folders of an absolute one (its name alone)."""
    text = os.fspath(path)
    if root is not None:
        top = os.path.normpath(os.fspath(root))
        if os.path.isabs(top) == os.path.isabs(text):
            rel = os.path.relpath(os.path.normpath(text), top)
            if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
                return rel
    return os.path.basename(text) if os.path.isabs(text) else text


def unrooted(text: str, root: str | os.PathLike | None) -> str:
    """A message with the absolute root written as shown_root ("/home/a/data/x.jpg" -> "data/x.jpg")."""
    if root is None:
        return text
    top = os.path.normpath(os.fspath(root))
    if not os.path.isabs(top) or top == os.sep:
        return text
    return text.replace(top + os.sep, shown_root(top) + os.sep).replace(top, shown_root(top))
