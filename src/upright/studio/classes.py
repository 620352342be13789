"""Classes are folders: create, rename, and move photos between them (names.py checks names).

A photo turned through `fix` keeps its way back wherever it goes: every rename and move tells
fix's manifest (fix.relocate_originals), so undoing the turn restores the original where
the photo is now, never in its old class."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from ..errors import UprightError
from ..fix import relocate_originals
from .names import class_name, same_name
from .project import Project


class Conflict(UprightError):
    """The name is taken (409)."""


def _taken(project: Project, name: str, but: str | None = None) -> str | None:
    return next((c for c in project.classes() if same_name(c, name) and c != but), None)


def create(project: Project, raw: object) -> str:
    """Make an empty class folder; returns the normalised name (BadName, Conflict)."""
    name = class_name(raw)
    with project.lock:
        other = _taken(project, name)
        if other is not None:
            raise Conflict(f"there is already a class '{other}'")
        _, base = project.upload_folder()
        (base / name).mkdir(parents=True)
        project.touch()
    return name


def rename(project: Project, old: str, raw: object) -> str:
    """Rename a class in every split; its photos keep their names."""
    new = class_name(raw)
    with project.lock:
        dirs = project.class_dirs(old)
        if not dirs:
            raise KeyError(old)
        other = _taken(project, new, but=old)
        if other is not None:
            raise Conflict(f"there is already a class '{other}'")
        for _, d in dirs:
            if same_name(old, new):  # a change of case: through a temporary name (case-insensitive disks)
                tmp = d.with_name(f".{d.name}.upright-rename-{uuid.uuid4().hex[:8]}")
                os.replace(d, tmp)
                os.replace(tmp, d.with_name(new))
            else:
                os.replace(d, d.with_name(new))
        relocate_originals(project.root, {project.rel(d): project.rel(d.with_name(new)) for _, d in dirs})
        project.refresh()
        project.touch()
    return new


def move(project: Project, ids: list[str], label: str) -> dict:
    """Move photos to another class (in the same split). Returns {"moved": [new ids], "kept": [...]}."""
    with project.lock:
        if label not in project.classes():
            raise KeyError(label)
        moved, kept, done = [], [], []
        bases = dict(project.folders())
        for pid in ids:
            ph = project.photo(pid)
            if ph is None:
                raise KeyError(pid)
            src = project.root / ph.id
            dest = bases.get(ph.split, project.root) / label / src.name
            if ph.label == label:
                kept.append(f"{pid}: already in '{label}'")
                continue
            done.append(pid)
            if dest.exists():
                dest = _free_name(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            moved.append(project.rel(dest))
        relocate_originals(project.root, dict(zip(done, moved)))
        project.refresh()
    return {"moved": moved, "kept": kept}



def _free_name(dest: Path) -> Path:
    n = 2
    while (alt := dest.with_name(f"{dest.stem}-{n}{dest.suffix}")).exists():
        n += 1
    return alt
