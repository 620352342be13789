"""The cache: one SQLite database in the cache dir, keyed by what decides each entry.

- embeddings: (file sha256, model key, variant, orientation policy), where the model key
  names the backbone, its weights' hash and the preprocessing version. A hit never touches
  the image.
- what a run learned about a file (known_files.py reads and writes these): `files` maps a
  path to its content hash while its size, mtime and inode are unchanged (a stat instead of
  reading the bytes); `facts` holds metadata.describe's header facts and `decodes` whether
  the pixels decode, both keyed by content hash and a version of the code that found them;
  `thumbs` holds the train report's upright thumbnails, keyed by content hash and size.

Crash and concurrency safety: WAL journal, a commit per batch (a killed run keeps every
finished batch, never a half-written row), and a busy timeout so two runs can share it.

Cache dir: `--cache DIR` (the explicit argument) wins, then $UPRIGHT_CACHE_DIR, then the
platform's user cache dir (XDG on Linux: $XDG_CACHE_HOME/upright or ~/.cache/upright).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import UprightError

DB_NAME = "embeddings.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    sha256  TEXT NOT NULL,
    model   TEXT NOT NULL,
    variant TEXT NOT NULL,
    orient  INTEGER NOT NULL,
    dim     INTEGER NOT NULL,
    vec     BLOB NOT NULL,
    PRIMARY KEY (sha256, model, variant, orient)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    path    TEXT PRIMARY KEY,
    size    INTEGER NOT NULL,
    mtime   INTEGER NOT NULL,
    inode   INTEGER NOT NULL,
    sha256  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS facts (
    sha256  TEXT NOT NULL,
    version TEXT NOT NULL,
    facts   TEXT NOT NULL,
    PRIMARY KEY (sha256, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS decodes (
    sha256  TEXT NOT NULL,
    version TEXT NOT NULL,
    reason  TEXT,
    PRIMARY KEY (sha256, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS thumbs (
    sha256  TEXT NOT NULL,
    side    INTEGER NOT NULL,
    url     TEXT NOT NULL,
    PRIMARY KEY (sha256, side)
) WITHOUT ROWID;
"""
CHUNK = 500  # keys per SELECT ... IN (...): under SQLite's bound-parameter limit


def default_cache_dir() -> Path:
    """$UPRIGHT_CACHE_DIR if set, else the platform user cache dir for upright."""
    env = os.environ.get("UPRIGHT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("upright", appauthor=False))


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache dir to use (created): the explicit one (--cache) or default_cache_dir()."""
    path = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UprightError(f"cannot create the cache folder {path}: {exc.strerror or exc}") from exc
    return path


def model_key(backbone: str, weights_hash: str, preprocess_version: int) -> str:
    return f"{backbone}:{weights_hash[:16]}:p{preprocess_version}"


class EmbeddingCache:
    def __init__(self, cache_dir: str | os.PathLike | None = None, timeout: float = 120.0):
        self.dir = resolve_cache_dir(cache_dir)
        self.path = self.dir / DB_NAME
        try:
            self.db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None,
                                      check_same_thread=False)
            self.db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise UprightError(f"embedding cache {self.path} is unusable ({exc}); delete it to start afresh") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def get_many(self, shas: Iterable[str], model: str, variants: Iterable[str], orient: bool
                 ) -> dict[tuple[str, str], np.ndarray]:
        """{(sha256, variant): vector} for every cached pair."""
        out: dict[tuple[str, str], np.ndarray] = {}
        for sha, var, vec in self._vectors(shas, model, variants, orient):
            out[(sha, var)] = vec
        return out

    def read_into(self, shas: list[str | None], model: str, variants: tuple[str, ...], orient: bool,
                  out: np.ndarray) -> np.ndarray:
        """Write every cached vector straight into out[i, j] (i: each file holding that content,
        j: the variant); returns the bool [N, V] mask of what was found. Rows stream from the
        database one chunk at a time, so nothing is held twice."""
        where: dict[str, list[int]] = {}
        for i, sha in enumerate(shas):
            if sha is not None:
                where.setdefault(sha, []).append(i)
        col = {v: j for j, v in enumerate(variants)}
        found = np.zeros((len(shas), len(variants)), bool)
        for sha, var, vec in self._vectors(where, model, variants, orient):
            rows = where[sha]
            out[rows, col[var]] = vec
            found[rows, col[var]] = True
        return found

    def _vectors(self, shas: Iterable[str], model: str, variants: Iterable[str], orient: bool):
        """(sha256, variant, vector) of every cached pair, chunk by chunk."""
        variants = list(variants)
        sql = (f"SELECT sha256, variant, dim, vec FROM embeddings WHERE model=? AND orient=? "
               f"AND variant IN ({','.join('?' * len(variants))}) AND sha256 IN ({{}})")
        for sha, var, dim, blob in self._select(sql, shas, (model, int(orient), *variants)):
            vec = np.frombuffer(blob, np.float32)
            if vec.size == dim:
                yield sha, var, vec

    def has_embedding(self, shas: Iterable[str]) -> set[str]:
        """The contents with at least one cached embedding (any model): decoded once already."""
        return {row[0] for row in self._select("SELECT DISTINCT sha256 FROM embeddings WHERE sha256 IN ({})",
                                               shas)}

    def put_many(self, rows: Iterable[tuple[str, str, np.ndarray]], model: str, orient: bool) -> None:
        """Insert (sha256, variant, vector) rows in one transaction (one commit per batch)."""
        data = [(sha, model, var, int(orient), int(v.size), np.asarray(v, np.float32).tobytes())
                for sha, var, v in rows]
        self._write("INSERT OR REPLACE INTO embeddings VALUES (?,?,?,?,?,?)", data)

    # -- what runs learned about files (known_files.py) ------------------------------------
    def file_hashes(self, paths: Iterable[str]) -> dict[str, tuple[int, int, int, str]]:
        """{path: (size, mtime_ns, inode, sha256)} recorded for these paths."""
        return {p: (size, mtime, inode, sha) for p, size, mtime, inode, sha in
                self._select("SELECT path, size, mtime, inode, sha256 FROM files WHERE path IN ({})", paths)}

    def put_file_hashes(self, rows: list[tuple[str, int, int, int, str]]) -> None:
        """(path, size, mtime_ns, inode, sha256) rows."""
        self._write("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?)", rows)

    def facts(self, shas: Iterable[str], version: str) -> dict[str, str]:
        """{sha256: facts JSON} recorded under this version."""
        return dict(self._select("SELECT sha256, facts FROM facts WHERE version=? AND sha256 IN ({})", shas,
                                 (version,)))

    def put_facts(self, rows: list[tuple[str, str]], version: str) -> None:
        """(sha256, facts JSON) rows."""
        self._write("INSERT OR REPLACE INTO facts VALUES (?,?,?)", [(sha, version, js) for sha, js in rows])

    def decodes(self, shas: Iterable[str], version: str) -> dict[str, str | None]:
        """{sha256: None (decodes) or the one-line reason it does not}, for the recorded ones."""
        return dict(self._select("SELECT sha256, reason FROM decodes WHERE version=? AND sha256 IN ({})", shas,
                                 (version,)))

    def put_decodes(self, rows: list[tuple[str, str | None]], version: str) -> None:
        self._write("INSERT OR REPLACE INTO decodes VALUES (?,?,?)", [(sha, version, why) for sha, why in rows])

    def thumbs(self, shas: Iterable[str], side: int) -> dict[str, str]:
        """{sha256: data URL} of the upright thumbnails recorded at this size."""
        return dict(self._select("SELECT sha256, url FROM thumbs WHERE side=? AND sha256 IN ({})", shas, (side,)))

    def put_thumbs(self, rows: list[tuple[str, str]], side: int) -> None:
        self._write("INSERT OR REPLACE INTO thumbs VALUES (?,?,?)", [(sha, side, url) for sha, url in rows])

    def _select(self, sql: str, keys: Iterable[str], params: tuple = ()):
        """Rows of `sql` (its IN ({}) filled with one chunk of keys at a time)."""
        keys = sorted(set(keys))
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i:i + CHUNK]
            yield from self.db.execute(sql.format(",".join("?" * len(chunk))), [*params, *chunk])

    def _write(self, sql: str, data: list[tuple]) -> None:
        """executemany in one transaction (a killed run keeps what was committed before)."""
        if not data:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(sql, data)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM embeddings WHERE model=?", (model,)).fetchone()[0]
