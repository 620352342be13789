"""Nothing the page deletes is lost: it moves to PROJECT/.upright-trash/, and comes back.

Each deletion is one trash item: PROJECT/.upright-trash/<item>/ holds the files under their
paths relative to PROJECT (a class folder, or some photos), and <item>.json says what it was
(kind, class, count, when). Restoring moves every file back to its path; a file whose place
is taken by the same bytes stays in the trash (nothing is overwritten, nothing deleted).
Moves are renames on one file system: a crash leaves each file in one place or the other.
A turned photo's way back follows it into the trash and out again (fix.relocate_originals):
`fix --undo` then restores its original in the trash, never in its old class.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..atomic import atomic_write_text
from ..files import file_sha256, remove_empty_folders
from ..fix import relocate_originals
from .names import timestamp_name
from .project import TRASH_DIR, Project


def _new_item(project: Project) -> tuple[str, Path]:
    trash = project.root / TRASH_DIR
    item = timestamp_name(lambda name: (trash / name).exists() or (trash / f"{name}.json").exists(), first=1)
    (trash / item).mkdir(parents=True)
    return item, trash / item


def _move_into(project: Project, folder: Path, paths: list[Path]) -> None:
    moves = {}
    for p in paths:
        dest = folder / p.relative_to(project.root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, dest)
        moves[project.rel(p)] = project.rel(dest)
    relocate_originals(project.root, moves)



def _record(project: Project, item: str, about: dict) -> dict:
    about = {"item": item, "when": time.strftime("%Y-%m-%d %H:%M:%S"), **about}
    atomic_write_text(project.root / TRASH_DIR / f"{item}.json", json.dumps(about))
    return about


def trash_class(project: Project, label: str) -> dict:
    """Move a whole class (every split's folder) to the trash."""
    with project.lock:
        dirs = project.class_dirs(label)
        if not dirs:
            raise KeyError(label)
        item, folder = _new_item(project)
        n = sum(1 for p in project.photos.values() if p.label == label)
        _move_into(project, folder, [d for _, d in dirs])
        about = _record(project, item, {"kind": "class", "class": label, "photos": n})
        project.refresh()
        project.touch()
        return about


def trash_photos(project: Project, ids: list[str]) -> dict:
    """Move photos (ids known to the index) to the trash, as one item."""
    with project.lock:
        photos = [project.photo(i) for i in ids]
        if not ids or any(p is None for p in photos):
            raise KeyError(next((i for i, p in zip(ids, photos) if p is None), "no photos"))
        item, folder = _new_item(project)
        _move_into(project, folder, [project.root / p.id for p in photos])
        labels = sorted({p.label for p in photos})
        about = _record(project, item, {"kind": "photos", "class": labels[0] if len(labels) == 1 else None,
                                        "classes": labels, "photos": len(photos), "ids": ids})
        project.refresh()
        return about


def items(project: Project) -> list[dict]:
    """What the trash holds, newest first."""
    trash = project.root / TRASH_DIR
    if not trash.is_dir():
        return []
    out = []
    for folder in sorted((p for p in trash.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        files = [p for p in folder.rglob("*") if p.is_file()]
        if not files:
            continue
        try:
            about = json.loads((trash / f"{folder.name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            about = {"item": folder.name, "kind": "files"}
        out.append({**about, "item": folder.name, "files": len(files)})
    return out


def restore(project: Project, item: str) -> dict:
    """Put a trash item's files back where they were. Returns {"restored": n, "kept": [reasons]}."""
    trash = project.root / TRASH_DIR
    with project.lock:
        folder = trash / item
        if "/" in item or item.startswith(".") or not folder.is_dir():
            raise KeyError(item)
        kept, moves = [], {}
        for p in sorted(q for q in folder.rglob("*") if q.is_file()):
            dest = project.root / p.relative_to(folder)
            if dest.exists():
                same = dest.is_file() and file_sha256(dest) == file_sha256(p)
                kept.append(f"{dest.relative_to(project.root).as_posix()}: "
                            + ("the same photo is already there" if same else "another file is in its place"))
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
            moves[project.rel(p)] = project.rel(dest)
        relocate_originals(project.root, moves)
        remove_empty_folders(folder)
        if not folder.exists():
            (trash / f"{item}.json").unlink(missing_ok=True)
        project.refresh()
        project.touch()
        return {"restored": len(moves), "kept": kept}
