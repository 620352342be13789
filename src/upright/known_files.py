"""What a run learns about a file, recorded once in the cache and reused by every later run.

- Its content hash (sha256): recorded with the file's path, size, mtime and inode; while
  those four are unchanged a later run takes the hash from the cache (one stat, no read).
  A file that changed in any of them is hashed again.
- Its header facts (`metadata.describe`) and whether its pixels decode (the audit's cheap
  32 px decode, `decode_check`; the embedding pass records the files it could not decode,
  pipeline.embed.embed_paths): keyed by the content hash and the version of the code that found
  them (`metadata.DESCRIBE_VERSION` and FileFacts' fields; the pixel limit, which decides what
  is refused; Pillow's version), so they follow the bytes, not the name, and a new reader
  re-reads them. A failure that is the file's, not its bytes' (gone, no permission), is not
  recorded.
- The train report's upright thumbnails (`thumbnails`), keyed by content hash and size.

So a warm re-train (its report included) hashes no file it knows and decodes no pixel; an
audit after a train re-reads no header. Counters (`hashed`, `described`, `decoded`...) say
what a run really read, for tests and benchmarks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Callable, Sequence

from . import files
from .cache import EmbeddingCache
from .errors import UnreadableImage, one_line
from .metadata import DESCRIBE_VERSION, FileFacts, describe
from .parallel import ordered_map

_FACT_FIELDS = tuple(f.name for f in dataclasses.fields(FileFacts) if f.name != "path")
_TUPLES = {"stored_size", "upright_size"}
DECODE_SIZE = 32  # the decode check's target short side: JPEG decodes at 1/8 scale in the DCT domain


def _limits() -> str:
    from .imaging import get_max_pixels

    return f"px{get_max_pixels()}"


def facts_version() -> str:
    """What decides recorded facts: describe's version, FileFacts' fields, the pixel limit."""
    fields = hashlib.sha256(",".join(_FACT_FIELDS).encode()).hexdigest()[:12]
    return f"d{DESCRIBE_VERSION}:{fields}:{_limits()}"


def decode_version(what: str = f"check{DECODE_SIZE}") -> str:
    """What decides a recorded decode outcome: which decode (the 32 px check, the embedding
    pass), the pixel limit, Pillow's version."""
    import PIL

    return f"{what}:{_limits()}:pil{PIL.__version__}"


#: reasons about the file, not its bytes (gone, unreadable): never recorded against the content
_NOT_CONTENT = ("file not found", "cannot read file")


def about_content(reason: str | None) -> bool:
    """True when a decode failure's reason is the bytes' (truncated, corrupt...), so it holds for
    any file with that content; False for the file's own troubles (gone, no permission)."""
    return reason is None or not reason.startswith(_NOT_CONTENT)


def facts_to_json(f: FileFacts) -> str:
    return json.dumps({k: getattr(f, k) for k in _FACT_FIELDS}, separators=(",", ":"))


def facts_from_json(path: str, text: str) -> FileFacts:
    d = json.loads(text)
    kw = {k: (tuple(v) if k in _TUPLES and v is not None else v) for k, v in d.items() if k in _FACT_FIELDS}
    return FileFacts(path=path, **kw)


@dataclass
class Counts:
    """What this object really read (the rest came from the cache)."""

    hashed: int = 0
    hash_reused: int = 0
    described: int = 0
    facts_reused: int = 0
    decoded: int = 0
    decode_reused: int = 0


def _stat(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino


def _decode_reason(path: str) -> str | None:
    """None when the picture decodes at 32 px (DCT-scaled for JPEG), else a one-line reason."""
    from .imaging import open_image

    try:
        open_image(path, size=DECODE_SIZE)
        return None
    except UnreadableImage as exc:
        return exc.reason
    except Exception as exc:  # noqa: BLE001 (one file never stops the run)
        return f"cannot decode: {one_line(exc, 160)}"


class KnownFiles:
    """The cache's record of files (see the module docstring). One per run; close() it."""

    def __init__(self, cache_dir=None):
        self.cache = EmbeddingCache(cache_dir)
        self.counts = Counts()
        self.facts_version = facts_version()

    def close(self) -> None:
        self.cache.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def hash_and_size(self, paths: Sequence, workers: int | None = None) -> list[tuple[str, int]]:
        """(sha256, size) of every file, in order; a known, unchanged file is not read.

        Raises OSError for a file that cannot be read, as hashing it would."""
        keys = [os.path.abspath(os.fspath(p)) for p in paths]
        stats = ordered_map(_stat, keys, workers=workers)
        known = self.cache.file_hashes(keys)
        out: list[tuple[str, int] | None] = [None] * len(keys)
        todo = []
        for i, (key, st) in enumerate(zip(keys, stats)):
            rec = known.get(key)
            if rec is not None and rec[:3] == st:
                out[i] = (rec[3], st[0])
            else:
                todo.append(i)
        digests = ordered_map(lambda i: files.file_sha256(keys[i]), todo, workers=workers)
        self.cache.put_file_hashes([(keys[i], *stats[i], sha) for i, sha in zip(todo, digests)])
        for i, sha in zip(todo, digests):
            out[i] = (sha, stats[i][0])
        self.counts.hashed += len(todo)
        self.counts.hash_reused += len(keys) - len(todo)
        return out  # type: ignore[return-value]

    def facts(self, paths: Sequence[str], shas: Sequence[str], advance: Callable[[int], object] | None = None,
              workers: int | None = None) -> list[FileFacts]:
        """metadata.describe of every file, in order; recorded facts are reused (never raises)."""
        recorded = self.cache.facts(shas, self.facts_version)
        out: list[FileFacts | None] = [None] * len(paths)
        todo = []
        for i, (p, sha) in enumerate(zip(paths, shas)):
            text = recorded.get(sha)
            if text is None:
                todo.append(i)
                continue
            try:
                out[i] = facts_from_json(os.fspath(p), text)
            except (ValueError, TypeError):  # a row another version wrote differently: read it again
                todo.append(i)
        if advance:
            advance(len(paths) - len(todo))
        found = ordered_map(lambda i: describe(paths[i]), todo, workers=workers, advance=advance)
        for i, f in zip(todo, found):
            out[i] = f
        self.cache.put_facts([(shas[i], facts_to_json(f)) for i, f in zip(todo, found)], self.facts_version)
        self.counts.described += len(todo)
        self.counts.facts_reused += len(paths) - len(todo)
        return out  # type: ignore[return-value]

    def decode_check(self, paths: Sequence[str], shas: Sequence[str], advance: Callable[[int], object] | None = None,
                     workers: int | None = None) -> dict[int, str]:
        """{index: reason} for the files whose pixels do not decode (32 px, on a pool of threads:
        Pillow releases the GIL while decoding). A content decoded before (recorded here, or
        with an embedding in the cache) is not decoded again."""
        version = decode_version()
        recorded = self.cache.decodes(shas, version)
        embedded = self.cache.has_embedding(s for s in shas if s not in recorded)
        bad: dict[int, str] = {}
        todo = []
        for i, sha in enumerate(shas):
            if sha in recorded:
                if recorded[sha] is not None:
                    bad[i] = recorded[sha]
            elif sha not in embedded:
                todo.append(i)
        if advance:
            advance(len(paths) - len(todo))
        reasons = ordered_map(lambda i: _decode_reason(os.fspath(paths[i])), todo, workers=workers, advance=advance)
        for i, why in zip(todo, reasons):
            if why is not None:
                bad[i] = why
        self.cache.put_decodes([(shas[i], why) for i, why in zip(todo, reasons) if about_content(why)], version)
        self.counts.decoded += len(todo)
        self.counts.decode_reused += len(paths) - len(todo)
        return bad

    def thumbnails(self, paths: Sequence[str], shas: Sequence[str], side: int,
                   make: Callable[[str], str | None]) -> list[str | None]:
        """make(path) -> data URL (or None), once per content and size; recorded ones reused."""
        recorded = self.cache.thumbs(shas, side)
        out = [recorded.get(sha) for sha in shas]
        new = []
        for i, p in enumerate(paths):
            if out[i] is None:
                out[i] = make(os.fspath(p))
                self.counts.decoded += 1
                if out[i] is not None:
                    new.append((shas[i], out[i]))
        self.cache.put_thumbs(new, side)
        return out
