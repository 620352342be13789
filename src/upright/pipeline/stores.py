"""Stores: where finished embeddings go. Both take rows as batches finish:

    store.put_many(rows)      rows: (sha256, variant, vector, info)
    store.close()             (writes what is buffered)

Each says what it already holds in the shape its one caller reads.

`info` is {"path", "label", "split"} of the photo (the Parquet rows carry it; the cache does
not need it).

- `SqliteStore`: the embedding cache (cache.py), one machine, the default for train, audit,
  eval and predict (pipeline/embed.py). A commit per batch. `read_into` writes the cached
  vectors straight into the caller's [N, V, D] array; `failures` / `put_failures` are the
  contents an embedding pass could not decode (not tried again while the bytes are the same).
- `ParquetStore`: shards of SHARD_ROWS rows under one folder, the output of `upright embed`
  and the cluster's store. Each shard is written whole (atomic.py) and names in its metadata
  the model key that made it, so a re-run reuses exactly the rows of the same backbone,
  weights and preprocessing (`present`, `get_many`); a killed run loses at most the shard it
  was filling.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from ..atomic import atomic_path, clean_leftovers
from ..cache import EmbeddingCache
from ..errors import UprightError

SHARD_ROWS = 2048  # rows per Parquet shard: ~10 MB of 1280-d float32, memory flat in data-set size
COLUMNS = ("path", "sha256", "label", "split", "backbone", "variant", "embedding")
MODEL_KEY = b"upright.model"
ORIENT_KEY = b"upright.orient"

Row = tuple  # (sha256, variant, vector float32 [D], info dict | None)


class SqliteStore:
    """The one-machine embedding cache under one model key and orientation policy."""

    def __init__(self, cache_dir, model: str, orient: bool = True):
        self.cache = EmbeddingCache(cache_dir)
        self.model, self.orient = model, orient

    def failures(self, shas) -> dict[str, str]:
        """{sha256: reason} of the contents an earlier embedding pass could not decode (known_files.py)."""
        from ..known_files import decode_version

        return {sha: why for sha, why in self.cache.decodes(shas, decode_version(f"embed:{self.model}")).items()
                if why is not None}

    def put_failures(self, rows: list[tuple[str, str]]) -> None:
        """(sha256, reason) of contents that did not decode; the file's own troubles are left out."""
        from ..known_files import about_content, decode_version

        self.cache.put_decodes([(sha, why) for sha, why in rows if about_content(why)],
                               decode_version(f"embed:{self.model}"))

    def read_into(self, shas, variants, out: np.ndarray) -> np.ndarray:
        """Cached vectors written straight into out [N, V, D]; -> found mask [N, V] (cache.read_into)."""
        return self.cache.read_into(list(shas), self.model, tuple(variants), self.orient, out)

    def put_many(self, rows: Iterable[Row]) -> None:
        self.cache.put_many([(sha, v, vec) for sha, v, vec, _ in rows], self.model, self.orient)

    def close(self) -> None:
        self.cache.close()


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a core dependency
        raise UprightError("Parquet output needs pyarrow: pip install pyarrow") from None
    return pa, pq


def schema():
    pa, _ = _pa()
    return pa.schema([(c, pa.string()) for c in COLUMNS[:-1]] + [("embedding", pa.list_(pa.float32()))])


class ParquetStore:
    """Parquet shards under `out` (part-*.parquet), resumable by content hash."""

    def __init__(self, out, model: str, backbone: str, orient: bool = True, shard_rows: int | None = None):
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise UprightError(f"{self.out}: exists and is not a folder; choose another -o")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UprightError(f"cannot create {self.out}: {exc.strerror or exc}") from exc
        clean_leftovers(self.out)  # a killed run's half-written shard
        self.model, self.backbone, self.orient = model, backbone, orient
        self.shard_rows = shard_rows or SHARD_ROWS
        self.buffer: list[Row] = []
        self.written = 0

    def shards(self) -> list[Path]:
        """This model's shards (others in the folder, e.g. another backbone's, are left alone)."""
        _, pq = _pa()
        mine = []
        for f in sorted(self.out.glob("part-*.parquet")):
            try:
                meta = pq.read_schema(f).metadata or {}
            except Exception as exc:  # noqa: BLE001
                raise UprightError(f"{f}: not a readable Parquet shard ({exc}); remove it to go on") from None
            if meta.get(MODEL_KEY) == self.model.encode() and meta.get(ORIENT_KEY) == str(int(self.orient)).encode():
                mine.append(f)
        return mine

    def present(self) -> set[tuple[str, str, str]]:
        """{(path, sha256, variant)} of every row already written (vectors are not read)."""
        _, pq = _pa()
        seen: set[tuple[str, str, str]] = set()
        for f in self.shards():
            t = pq.read_table(f, columns=["path", "sha256", "variant"])
            seen.update(zip(*(t.column(c).to_pylist() for c in ("path", "sha256", "variant"))))
        return seen

    def get_many(self, shas: Iterable[str], variants) -> dict[tuple[str, str], np.ndarray]:
        """Vectors of these contents already in the shards (read with a filter, shard by shard)."""
        shas, variants = sorted(set(shas)), list(variants)
        if not shas:
            return {}
        _, pq = _pa()
        out: dict[tuple[str, str], np.ndarray] = {}
        for f in self.shards():
            t = pq.read_table(f, columns=["sha256", "variant", "embedding"],
                              filters=[("sha256", "in", shas), ("variant", "in", variants)])
            for sha, v, e in zip(*(t.column(c).to_pylist() for c in ("sha256", "variant", "embedding"))):
                out[(sha, v)] = np.asarray(e, np.float32)
        return out

    def put_many(self, rows: Iterable[Row]) -> None:
        self.buffer.extend(rows)
        while len(self.buffer) >= self.shard_rows:
            self._write(self.buffer[:self.shard_rows])
            del self.buffer[:self.shard_rows]

    def _write(self, rows: list[Row]) -> None:
        pa, pq = _pa()
        sch = schema().with_metadata({MODEL_KEY: self.model.encode(), ORIENT_KEY: str(int(self.orient)).encode()})
        dim = len(rows[0][2])
        flat = np.concatenate([np.asarray(vec, np.float32) for _, _, vec, _ in rows])
        cols = {
            "path": [info["path"] for *_, info in rows],
            "sha256": [sha for sha, *_ in rows],
            "label": [info.get("label") for *_, info in rows],
            "split": [info.get("split") for *_, info in rows],
            "backbone": [self.backbone] * len(rows),
            "variant": [v for _, v, _, _ in rows],
        }
        arrays = [pa.array(cols[c], pa.string()) for c in COLUMNS[:-1]]
        offsets = pa.array(np.arange(0, len(rows) * dim + 1, dim, dtype=np.int32))
        arrays.append(pa.ListArray.from_arrays(offsets, pa.array(flat, pa.float32())))
        table = pa.Table.from_arrays(arrays, schema=sch)
        name = f"part-{time.time_ns():x}-{os.getpid()}.parquet"
        try:
            with atomic_path(self.out / name) as tmp:
                pq.write_table(table, tmp)
        except OSError as exc:
            raise UprightError(f"cannot write {self.out / name}: {exc.strerror or exc}") from exc
        self.written += len(rows)

    def flush(self) -> None:
        if self.buffer:
            self._write(self.buffer)
            self.buffer.clear()

    def close(self) -> None:
        self.flush()


def read_rows(out, columns=None):
    """Every row under `out` as a pyarrow Table (all shards; for tests and readers)."""
    pa, pq = _pa()
    files = sorted(Path(out).glob("part-*.parquet"))
    if not files:
        return schema().empty_table()
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])
