"""The audit's per-photo state in columns: header facts as arrays, embeddings read in blocks.

At 50,000 photos a list of `metadata.FileFacts` objects and a dict of attributes per photo
cost about 1.3 KB a photo; as columns (numbers in numpy arrays, text as codes into one list
of distinct values per field) they cost tens of bytes. `FactsTable[i]` still gives the
FileFacts of photo i for checks written against objects.

`VectorFile`: the embeddings of the readable photos, [variants, photos, D] float32 in an
anonymous temporary file in the cache dir (gone when closed, even after a crash). Checks read
one variant whole (`view`) or blocks of photos (`blocks`) by plain reads, so the page cache
holds the rest, not this process: the full audit's memory does not grow with 4 x N x D.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..metadata import FileFacts

_FIELDS = [f for f in dataclasses.fields(FileFacts) if f.name != "path"]


def _kind(annotation: str) -> str:
    a = str(annotation).replace(" ", "")
    if a.startswith("tuple[int,int]"):
        return "pair"
    if a == "bool":
        return "bool"
    if a in ("int", "int|None"):
        return "int"
    if a == "str|None":
        return "text"
    return "object"


_KINDS = {f.name: _kind(f.type) for f in _FIELDS}
_NONE = -(2 ** 62)  # None in an int column


class FactsTable:
    """FileFacts of N files as columns (see the module docstring)."""

    def __init__(self, facts: Iterable[FileFacts] = ()):
        self.paths: list[str] = []
        self._values: dict[str, list] = {n: [] for n, k in _KINDS.items() if k == "text"}
        self._codes: dict[str, dict] = {n: {} for n in self._values}
        self._parts: dict[str, list[np.ndarray]] = {n: [] for n in _KINDS}
        self._cols: dict[str, np.ndarray | list] | None = None
        self.extend(facts)

    def extend(self, facts: Iterable[FileFacts]) -> None:
        """Append facts (a chunk at a time keeps the objects' lifetime short)."""
        facts = list(facts)
        if not facts:
            return
        self._cols = None
        self.paths += [sys.intern(f.path) if len(f.path) < 512 else f.path for f in facts]
        for name, kind in _KINDS.items():
            vals = [getattr(f, name) for f in facts]
            self._parts[name].append(self._encode(name, kind, vals))

    def _encode(self, name: str, kind: str, vals: list) -> np.ndarray:
        if kind == "pair":
            return np.array([v if v is not None else (-1, -1) for v in vals], np.int32).reshape(-1, 2)
        if kind == "bool":
            return np.array(vals, bool)
        if kind == "int":
            return np.array([_NONE if v is None else int(v) for v in vals], np.int64)
        if kind == "text":
            codes, values = self._codes[name], self._values[name]
            out = np.empty(len(vals), np.int32)
            for i, v in enumerate(vals):
                c = codes.get(v)
                if c is None:
                    c = codes[v] = len(values)
                    values.append(v)
                out[i] = c
            return out
        return np.array(vals + [None], dtype=object)[:-1]  # a field of a kind this table does not know

    def _columns(self) -> dict:
        if self._cols is None:
            self._cols = {n: (np.concatenate(p) if p else np.zeros(0)) for n, p in self._parts.items()}
            self._parts = {n: [c] for n, c in self._cols.items()}
        return self._cols

    def __len__(self) -> int:
        return len(self.paths)

    def column(self, name: str) -> np.ndarray:
        """One field for every file: numbers (None as NaN for sizes: [N, 2] float), bools, or
        for text an object array of the shared value strings."""
        col = self._columns()[name]
        kind = _KINDS[name]
        if kind == "text":
            return np.array(self._values[name] + [None], dtype=object)[:-1][col]
        if kind == "pair":
            out = col.astype(np.float64)
            out[col[:, 0] < 0] = np.nan
            return out
        return col

    def __getitem__(self, i: int) -> FileFacts:
        cols = self._columns()
        kw = {}
        for name, kind in _KINDS.items():
            v = cols[name][i]
            if kind == "pair":
                kw[name] = None if v[0] < 0 else (int(v[0]), int(v[1]))
            elif kind == "bool":
                kw[name] = bool(v)
            elif kind == "int":
                kw[name] = None if v == _NONE else int(v)
            elif kind == "text":
                kw[name] = self._values[name][v]
            else:
                kw[name] = v
        return FileFacts(path=self.paths[i], **kw)

    def __iter__(self) -> Iterator[FileFacts]:
        return (self[i] for i in range(len(self)))


class VectorFile:
    """float32 [V, N, D] in an anonymous temporary file (see the module docstring).

    Each variant's rows start `stride` rows apart (room for `stride` photos, default n), apart
    from the count `n` that reads see: rows can be written as they are known good and the count
    set at the end (`set_count`), so files that fail need no second copy of the rest.
    """

    def __init__(self, n: int, variants: Sequence[str], dim: int, folder: str | os.PathLike | None = None,
                 stride: int | None = None):
        self.n, self.variants, self.dim, self.folder = n, tuple(variants), dim, folder
        self.stride = n if stride is None else stride
        if self.n > self.stride:
            raise ValueError(f"{n} rows do not fit a stride of {self.stride}")
        self.file = tempfile.TemporaryFile(dir=folder, prefix=".upright-vectors-")
        self.file.truncate(len(self.variants) * self.stride * dim * 4)  # sparse: unwritten rows take no disk

    def set_count(self, n: int) -> None:
        """Reads see photos 0 .. n-1 (at most the stride)."""
        if not 0 <= n <= self.stride:
            raise ValueError(f"{n} rows do not fit a stride of {self.stride}")
        self.n = n

    def close(self) -> None:
        self.file.close()

    def _offset(self, j: int, row: int) -> int:
        return ((j * self.stride) + row) * self.dim * 4

    def write(self, start: int, vectors: np.ndarray) -> None:
        """vectors [b, V, D] for photos start .. start+b-1."""
        vectors = np.asarray(vectors, np.float32)
        for j in range(len(self.variants)):
            os.pwrite(self.file.fileno(), np.ascontiguousarray(vectors[:, j]).tobytes(), self._offset(j, start))

    def _read(self, j: int, start: int, count: int) -> np.ndarray:
        size = count * self.dim * 4
        buf = bytearray(size)
        got = os.preadv(self.file.fileno(), [buf], self._offset(j, start))
        if got != size:
            raise OSError(f"short read of the embedding file ({got} of {size} bytes)")
        return np.frombuffer(buf, np.float32).reshape(count, self.dim)

    def view(self, name: str) -> np.ndarray:
        """One variant of every photo: [N, D] (read whole)."""
        return self._read(self.variants.index(name), 0, self.n)

    def blocks(self, names: Sequence[str], size: int = 4096) -> Iterator[tuple[int, np.ndarray]]:
        """(start, [b, len(names), D]) for consecutive blocks of photos."""
        idx = [self.variants.index(v) for v in names]
        for s in range(0, self.n, size):
            b = min(size, self.n - s)
            yield s, np.stack([self._read(j, s, b) for j in idx], axis=1)
