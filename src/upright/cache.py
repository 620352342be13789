"""Embedding cache: one SQLite database in the cache dir, keyed by what decides an embedding.

Key: (file sha256, model key, variant, orientation policy), where the model key names the
backbone, its weights' hash and the preprocessing version. A hit never touches the image.

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
"""


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
        shas = sorted(set(shas))
        variants = list(variants)
        out: dict[tuple[str, str], np.ndarray] = {}
        vq = ",".join("?" * len(variants))
        for i in range(0, len(shas), 500):
            chunk = shas[i:i + 500]
            rows = self.db.execute(
                f"SELECT sha256, variant, dim, vec FROM embeddings WHERE model=? AND orient=? "
                f"AND variant IN ({vq}) AND sha256 IN ({','.join('?' * len(chunk))})",
                [model, int(orient), *variants, *chunk],
            ).fetchall()
            for sha, var, dim, blob in rows:
                vec = np.frombuffer(blob, np.float32)
                if vec.size == dim:
                    out[(sha, var)] = vec
        return out

    def put_many(self, rows: Iterable[tuple[str, str, np.ndarray]], model: str, orient: bool) -> None:
        """Insert (sha256, variant, vector) rows in one transaction (one commit per batch)."""
        data = [(sha, model, var, int(orient), int(v.size), np.asarray(v, np.float32).tobytes())
                for sha, var, v in rows]
        if not data:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?,?,?,?,?,?)", data)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM embeddings WHERE model=?", (model,)).fetchone()[0]
