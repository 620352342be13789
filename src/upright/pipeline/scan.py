"""Scan a folder-per-class tree into records (path, label, split, content hash).

Layouts:
    DATA/<label>/**/<image>                    -> stable hash split into train/val
    DATA/train/<label>/..., DATA/val|test/<label>/...   -> the given split
    DATA/train/ alone, or train/ + test/ without val/   -> train/ hash-split into train/val

`test/` is for `eval` only: training scans with read=("train", "val") and never opens it.

The split of a file depends only on its bytes (same file, same split, on any machine, in
any order), so exact duplicates never straddle train and val.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UprightError
from ..files import file_sha256, image_files, is_image_name
from ..parallel import ordered_map
from ..words import count

#: Share of the images held out for validation when DATA has no val/ or test/ folder.
DEFAULT_VAL_FRACTION = 0.2
SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class Record:
    path: Path
    label: str
    split: str  # "train", "val" or "test"
    sha256: str
    size: int


@dataclass
class Dataset:
    root: Path
    records: list[Record]
    labels: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    explicit_split: bool = False
    not_read: dict[str, str] = field(default_factory=dict)  # split -> folder left unread (scan's `read`)
    read_folders: list[str] = field(default_factory=list)  # the folder-per-class trees scanned

    def split(self, name: str) -> list[Record]:
        return [r for r in self.records if r.split == name]

    @property
    def train(self) -> list[Record]:
        return self.split("train")

    @property
    def val(self) -> list[Record]:
        """Model-selection records: val/ (explicit) or the hash split's val part."""
        return self.split("val")

    def counts(self, split: str | None = None) -> dict[str, int]:
        c = Counter(r.label for r in self.records if split is None or r.split == split)
        return {label: c.get(label, 0) for label in self.labels}


def hash_split(sha256: str, val_fraction: float) -> str:
    """'val' for a stable `val_fraction` of content hashes, else 'train'."""
    return "val" if int(sha256[:12], 16) / float(1 << 48) < val_fraction else "train"


def _subfolders(root: Path) -> dict[str, Path]:
    """DATA's folders by lower-case name, hidden ones included."""
    return {p.name.lower(): p for p in root.iterdir() if p.is_dir()}


def split_folders(root: Path) -> list[tuple[str | None, Path]]:
    """Where the class folders live: [(split, DATA/<split>), ...] for an explicit split layout
    (train/ beside val/ or test/, or train/ alone; hidden folders do not count), else
    [(None, DATA)]. The split folders are listed in name order (`scan`, the studio)."""
    sub = _subfolders(root)
    visible = {k for k in sub if not k.startswith(".")}
    if "train" in sub and (any(SPLIT_DIRS.get(k) in ("val", "test") for k in sub) or visible == {"train"}):
        return [(SPLIT_DIRS[k], p) for k, p in sorted(sub.items()) if k in SPLIT_DIRS]
    return [(None, root)]


def class_folders(folder: Path, skipped: list[tuple[str, str]] | None = None) -> list[Path]:
    """The class folders in `folder`, in name order; hidden entries and loose files are not
    classes (said in `skipped`)."""
    skipped = skipped if skipped is not None else []
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            skipped.append((str(p), "hidden " + ("folder" if p.is_dir() else "file")))
        elif p.is_dir():
            out.append(p)
        else:
            skipped.append((str(p), "not inside a class folder"))
    return out


def class_files(groups: list[tuple[str | None, Path]], skipped: list[tuple[str, str]] | None = None
                ) -> tuple[set[str], list[tuple[Path, str, str | None]]]:
    """(every class name, even of an empty folder; (file, class, split) of every image in walking
    order) of the class folders in `groups` (split_folders' answer)."""
    labels: set[str] = set()
    found: list[tuple[Path, str, str | None]] = []
    for split, base in groups:
        for cls in class_folders(base, skipped):
            labels.add(cls.name)
            found += [(p, cls.name, split) for p in image_files(cls, skipped)]
    return labels, found


def _no_classes(root: Path, skipped) -> str:
    """The error for DATA without class folders; when it holds images itself, it is most likely
    one class's folder (DATA/test/daisy), so name the folder that holds the classes (or the splits)."""
    loose = sum(1 for p, why in skipped if why == "not inside a class folder" and is_image_name(p))
    if not loose:
        return f"{root}: no class folders found (expected DATA/<label>/<images>)"
    here = Path(os.path.normpath(root))  # as typed; absolute where it has no parent to name
    here = here.resolve() if here.parent == Path(".") and not here.is_absolute() else here
    meant = here.parent.parent if here.parent.name.lower() in SPLIT_DIRS else here.parent
    return (f"{root}: no class folders, but {count(loose, 'image')} directly inside: one class's folder? DATA holds "
            f"one folder per class (DATA/{here.name}/, DATA/<another class>/, ...): did you mean {meant}?")


def _hash_and_size(path: Path) -> tuple[str, int]:
    return file_sha256(path), path.stat().st_size


def scan(root: str | os.PathLike, val_fraction: float = DEFAULT_VAL_FRACTION, read=("train", "val", "test"),
         workers: int | None = None, known=None) -> Dataset:
    """Scan DATA into a Dataset. Raises UprightError when DATA is missing or has no classes.

    The files are hashed on `workers` threads (parallel.ordered_map; default: the usable cores).
    `known` (a known_files.KnownFiles): hashes recorded in the cache are reused for files
    whose path, size, mtime and inode are unchanged, and new ones recorded.

    read: the explicit split folders to open; the others are listed in `not_read`, untouched
    (train passes ("train", "val") so that test/ photos are never read, hashed or fitted).
    """
    root = Path(root)
    if not root.exists():
        raise UprightError(f"{root}: no such folder")
    if not root.is_dir():
        raise UprightError(f"{root}: not a folder (expected one sub-folder per class)")
    skipped: list[tuple[str, str]] = []
    groups = split_folders(root)
    explicit = groups[0][0] is not None
    has_val = any(split == "val" for split, _ in groups)
    not_read = {split: str(p) for split, p in groups if split is not None and split not in read}
    groups = [(split, p) for split, p in groups if split is None or split in read]
    if explicit:
        for k, p in sorted(_subfolders(root).items()):
            if k not in SPLIT_DIRS:
                skipped.append((str(p), "folder beside train/val is not a split"))
    labels, found = class_files(groups, skipped)
    paths = [p for p, _, _ in found]
    digests = (known.hash_and_size(paths, workers) if known is not None
               else ordered_map(_hash_and_size, paths, workers=workers))
    records: list[Record] = []
    for (p, label, split), (digest, size) in zip(found, digests):
        hashed = split is None or (split == "train" and not has_val)
        records.append(Record(p, label, hash_split(digest, val_fraction) if hashed else split, digest, size))
    if not labels:
        raise UprightError(_no_classes(root, skipped))
    return Dataset(root, records, sorted(labels), skipped, explicit, not_read, [str(p) for _, p in groups])
