"""The project on disk: an ordinary upright DATA folder, and an index of its photos.

    PROJECT/<class>/<sha256[:16]>.<ext>     photos (or PROJECT/train|val|test/<class>/...)
    PROJECT/.upright-trash/                 what the page deleted, restorable (trash.py)
    PROJECT/.upright-models/<YYYYMMDD-HHMMSS>/   one model folder per training run (jobs.py)
    PROJECT/.upright-studio/                thumbnails and sideways scores (a cache: safe to delete)
    PROJECT/.upright-originals/             `upright fix --in-place`'s way back (the page's turns)

Hidden folders are never classes, so every other verb reads PROJECT as it reads any DATA.
The index (path -> content hash, size, header facts) is rebuilt from the files at start and
refreshed from their sizes and times, so photos copied in by hand show up too, and a
restart shows the project exactly as the disk holds it. Hashes and header facts come from the
per-file record that audit and train share (known_files.KnownFiles), so a start re-reads no
file that is unchanged since any of them (or an earlier start) read it. Every change goes
through one lock.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..cost import DEFAULT_BUDGET
from ..errors import UnreadableImage, UprightError
from ..files import file_sha256
from ..imaging import estimate
from ..known_files import KnownFiles
from ..metadata import STUDIO_CAMERA, FileFacts, describe
from ..pipeline.scan import class_files, class_folders, split_folders
from ..parallel import ordered_map

TRASH_DIR = ".upright-trash"
MODELS_DIR = ".upright-models"
CACHE_DIR = ".upright-studio"


@dataclass
class Photo:
    """One class member as the page sees it. `id` is its path under PROJECT, "/"-separated."""

    id: str
    label: str
    split: str | None  # "train", "val", "test" in a split layout, else None
    sha256: str
    size: int
    mtime_ns: int
    tag: int | None = None  # the orientation tag found (EXIF/XMP/HEIF), None if absent
    orientation: int = 1  # the transform upright applies (1 = none)
    captured: bool = False  # taken with the page's camera (EXIF Software says so)
    camera: str | None = None  # EXIF Make and Model (the audit's "camera"; the live audit counts them)
    format: str | None = None
    problem: str | None = None  # unreadable header, or an ignored tag
    cost: int = 0  # bytes the dearest read of it holds (read_cost): what the live audit reserves

    def to_dict(self) -> dict:
        return {"id": self.id, "class": self.label, "split": self.split, "sha256": self.sha256, "size": self.size,
                "tag": self.tag, "orientation": self.orientation, "captured": self.captured,
                "format": self.format, "problem": self.problem, "added": self.mtime_ns // 1_000_000}


def read_cost(path: Path) -> int:
    """The most any read of this file through the door holds, from its header: a full decode's
    price (imaging.estimate), or the door's bound when only a sized read would be accepted."""
    try:
        return estimate(path).total
    except UnreadableImage:
        return DEFAULT_BUDGET


def _photo(root: Path, path: Path, label: str, split: str | None, st: os.stat_result, sha256: str,
           facts: FileFacts) -> Photo:
    """One file's Photo from its content hash and header facts (metadata.describe's; a bad
    image is no error: `problem` says why), priced from its header."""
    return Photo(id=path.relative_to(root).as_posix(), label=label, split=split, sha256=sha256,
                 size=st.st_size, mtime_ns=st.st_mtime_ns, tag=facts.orientation_tag,
                 orientation=facts.orientation or 1, captured=facts.software == STUDIO_CAMERA, camera=facts.camera,
                 format=facts.format, problem=facts.unreadable or facts.problem,
                 cost=0 if facts.unreadable else read_cost(path))


def _known_sha(known: KnownFiles, path: Path) -> str | None:
    try:
        return known.hash_and_size([path])[0][0]
    except OSError:
        return None


class Project:
    """PROJECT's classes and photos, indexed; `lock` guards every change (store, move, trash)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.photos: dict[str, Photo] = {}
        self.by_hash: dict[str, str] = {}  # content hash (and the hash a name was given by) -> photo id
        self.version = 0  # bumped on every change the pages must see
        self._trash_bytes: int | None = None
        self.refresh()

    # -- layout ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.root.name

    def folders(self) -> list[tuple[str | None, Path]]:
        """Where classes live: [(None, PROJECT)], or [(split, PROJECT/<split>)] for a train/
        layout (pipeline.scan's rule, so every verb reads PROJECT the same way)."""
        return split_folders(self.root)

    def upload_folder(self) -> tuple[str | None, Path]:
        """Where new photos and classes go: PROJECT, or PROJECT/train in a split layout."""
        return next(((s, p) for s, p in self.folders() if s in (None, "train")), (None, self.root))

    def classes(self) -> list[str]:
        names = {p.name for _, base in self.folders() for p in class_folders(base)}
        return sorted(names, key=lambda n: (n.casefold(), n))

    def class_dirs(self, label: str) -> list[tuple[str | None, Path]]:
        """The folders of an existing class (none for any other name: '..' is not a class)."""
        if label not in self.classes():
            return []
        return [(s, base / label) for s, base in self.folders() if (base / label).is_dir()]

    def rel(self, path: Path) -> str:
        """A path under PROJECT as the studio names it: relative, "/"-separated (a photo's id)."""
        return path.relative_to(self.root).as_posix()

    def cache_dir(self, *parts: str) -> Path:
        return self.root.joinpath(CACHE_DIR, *parts)

    # -- the index -----------------------------------------------------------------------
    def _walk(self) -> list[tuple[Path, str, str | None]]:
        return class_files(self.folders())[1]

    def refresh(self) -> bool:
        """Bring the index up to date with the disk (new, changed, gone files). True if it changed."""
        with self.lock:
            seen, todo = {}, []
            for path, label, split in self._walk():
                try:
                    st = path.stat()
                except OSError:
                    continue
                pid = self.rel(path)
                old = self.photos.get(pid)
                if old is not None and (old.size, old.mtime_ns, old.label) == (st.st_size, st.st_mtime_ns, label):
                    seen[pid] = old
                else:
                    todo.append((path, label, split, st))
            for ph in self._new_photos(todo):
                if ph is not None:
                    seen[ph.id] = ph
            changed = bool(todo) or seen.keys() != self.photos.keys()
            if changed:
                self._trash_bytes = None  # photos went to (or came from) the trash, maybe
                self.photos = seen
                self._rehash()
                self.version += 1
            return changed

    def _new_photos(self, todo: list[tuple[Path, str, str | None, os.stat_result]]) -> list[Photo | None]:
        """The Photos of files to index (None: gone or unreadable since the walk). Hashes and
        header facts come from the per-file record audit and train share (KnownFiles): a file
        they (or an earlier start) read is not read again."""
        if not todo:
            return []
        paths = [t[0] for t in todo]
        try:
            known = KnownFiles()
        except UprightError:  # an unusable cache (the audit says so): the files themselves, as before it
            return ordered_map(lambda found: self._safe_photo(found), todo)
        with known:
            try:
                shas: list[str | None] = [sha for sha, _ in known.hash_and_size(paths)]
            except OSError:  # one went (or cannot be read) since the walk: the others one by one
                shas = [_known_sha(known, p) for p in paths]
            ok = [i for i, sha in enumerate(shas) if sha is not None]
            facts = known.facts([paths[i] for i in ok], [shas[i] for i in ok])
        return ordered_map(lambda job: self._safe_photo(*job), [(todo[i], shas[i], f) for i, f in zip(ok, facts)])

    def _safe_photo(self, found: tuple, sha256: str | None = None, facts: FileFacts | None = None) -> Photo | None:
        try:
            path = found[0]
            return _photo(self.root, *found, sha256 or file_sha256(path), facts or describe(path))
        except OSError:  # gone or unreadable between the walk and the read
            return None

    def _rehash(self) -> None:
        self.by_hash = {}
        for ph in self.photos.values():
            self._index(ph)

    def _index(self, ph: Photo) -> None:
        """Its keys in by_hash, unless an earlier photo holds them (the first one keeps them)."""
        stem = Path(ph.id).stem
        if len(stem) >= 16 and all(c in "0123456789abcdef" for c in stem):
            self.by_hash.setdefault(f"name:{stem[:16]}", ph.id)  # a turned photo keeps its first name
        self.by_hash.setdefault(ph.sha256, ph.id)

    def add(self, path: Path, label: str, split: str | None, sha256: str | None = None) -> Photo:
        """Index a file just written by the studio (caller holds the lock; `sha256`: the content
        hash of the bytes it wrote, so the file is not read again to hash it). A new photo comes
        last in the index, so only its own keys are added; one written over an indexed file
        (its old keys may go) rebuilds the index."""
        ph = _photo(self.root, path, label, split, path.stat(), sha256 or file_sha256(path), describe(path))
        replaced = ph.id in self.photos
        self.photos[ph.id] = ph
        if replaced:
            self._rehash()
        else:
            self._index(ph)
        self.version += 1
        return ph

    def duplicate_of(self, sha256: str) -> str | None:
        """The photo already holding these bytes (or first stored under this hash), if any."""
        return self.by_hash.get(sha256) or self.by_hash.get(f"name:{sha256[:16]}")

    def photo(self, pid: str) -> Photo | None:
        return self.photos.get(pid)

    def members(self, label: str) -> list[Photo]:
        """A class's photos, newest first."""
        return sorted((p for p in self.photos.values() if p.label == label), key=lambda p: (-p.mtime_ns, p.id))

    def counts(self) -> dict[str, int]:
        out = {c: 0 for c in self.classes()}
        for p in self.photos.values():
            out[p.label] = out.get(p.label, 0) + 1
        return out

    def bytes_used(self) -> int:
        """Photos plus the trash: what the quota counts (nothing is ever deleted)."""
        if self._trash_bytes is None:
            trash = self.root / TRASH_DIR
            self._trash_bytes = sum(p.stat().st_size for p in trash.rglob("*") if p.is_file()) \
                if trash.is_dir() else 0
        return sum(p.size for p in self.photos.values()) + self._trash_bytes

    def touch(self) -> None:
        """Something the pages show changed (classes, trash) without a photo being indexed."""
        with self.lock:
            self._trash_bytes = None
            self.version += 1
