"""What a model was fitted on: 8-byte prefixes of the photos' SHA-256, kept in the model folder.

`train` stores the fingerprints of every photo the final head was fitted on as the uint8
tensor `fitted_sha256` [N, 8] in head.safetensors (rows sorted, duplicates removed: 8 bytes
per photo). `eval` matches the photos it scores against them and reports how many the model
has seen. Content, not paths: a renamed or copied training photo still counts as seen.

False matches: 64-bit prefixes of SHA-256 behave as uniform random numbers, so scoring m
unseen photos against a model fitted on n photos wrongly reports about m * n / 2**64 of
them as seen: 5e-8 photos for a million against a million.

Near copies (a resized or re-encoded training photo has other bytes, so another SHA-256): `train`
also keeps, in MODEL/fitted_embeddings.safetensors, the embedding of every fitted photo as the
audit's near_duplicates check makes it (RECORD_BACKBONE, the centre crop, read upright),
L2-normalised, float16, rows in the order of the fingerprints (2 x D bytes a photo: 2.5 KB for
Lite0, 1.3 MB for 500 photos, 128 MB for 50,000). `eval` embeds its photos the same way and
counts those within the audit's cosine threshold of a fitted photo (`nearest`). float16 moves
a cosine by at most a few thousandths; a row of zeros (a photo the record could not embed)
matches nothing. The file is read by eval alone: predict and serve never load it.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .backbones import DEFAULT

TENSOR = "fitted_sha256"
PREFIX_BYTES = 8
#: the near-copy record: file, tensor, and how its rows were embedded (the audit's embedding)
EMBEDDINGS_FILE = "fitted_embeddings.safetensors"
EMBEDDINGS_TENSOR = "embedding"
RECORD_BACKBONE = DEFAULT  # the audit's (audit.run_audit); model.json names the one used
RECORD_VIEW = "id"


def fingerprints(sha256_hex: Iterable[str]) -> np.ndarray:
    """Hex SHA-256 digests -> uint8 [N, 8] rows (first 8 bytes), sorted, unique."""
    return _rows(np.unique(_prefixes(sha256_hex)))


def _prefixes(sha256_hex: Iterable[str]) -> np.ndarray:
    """Each digest's first 8 bytes as a uint64 (the fingerprint's value)."""
    return np.array([int(h[: 2 * PREFIX_BYTES], 16) for h in sha256_hex], dtype=np.uint64)


def _rows(keys: np.ndarray) -> np.ndarray:
    """uint64 keys -> the stored uint8 [N, 8] rows (big-endian); _keys reads them back."""
    return keys.astype(">u8").view(np.uint8).reshape(-1, PREFIX_BYTES)


def record(sha256_hex: Sequence[str], vectors: np.ndarray, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """(fingerprints as `fingerprints` makes them, float16 unit embeddings [N, D] in the same row
    order): the first photo of each content gives its row; a NaN row (not embedded) becomes zeros.
    rows: the rows of `vectors` the hashes belong to (default: all, in order), read a block at a
    time: no float32 copy of every row is made."""
    uniq, first = np.unique(_prefixes(sha256_hex), return_index=True)
    take = first if rows is None else np.asarray(rows)[first]
    out = np.zeros((len(first), np.shape(vectors)[-1]), np.float16)
    for s in range(0, len(first), 4096):
        v = np.asarray(vectors[take[s:s + 4096]], np.float32)
        v = np.where(np.isfinite(v).all(axis=1, keepdims=True), v, 0.0)
        out[s:s + 4096] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return _rows(uniq), out


def nearest(rows: np.ndarray, queries: np.ndarray, block: int = 1024) -> np.ndarray:
    """Per query embedding, its highest cosine with any row of the record (-inf for a NaN query
    or an empty record); blocks of both bound the memory to block x block floats."""
    q = np.asarray(queries, np.float32)
    good = np.isfinite(q).all(axis=1)
    q = np.where(good[:, None], q, 0.0)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    best = np.full(len(q), -np.inf, np.float32)
    for s in range(0, len(rows), block):
        r = np.asarray(rows[s:s + block], np.float32)
        for t in range(0, len(q), block):
            best[t:t + block] = np.maximum(best[t:t + block], (q[t:t + block] @ r.T).max(axis=1, initial=-np.inf))
    best[~good] = -np.inf
    return best


def _keys(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows, np.uint8).view(">u8").reshape(-1)


def check(rows) -> np.ndarray:
    """The stored tensor, validated: uint8 [N, 8]. Raises ValueError otherwise."""
    rows = np.asarray(rows)
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != PREFIX_BYTES:
        raise ValueError(f"{TENSOR} must be uint8 [N, {PREFIX_BYTES}], got {rows.dtype} {list(rows.shape)}")
    return rows


def seen(fitted: np.ndarray | None, sha256_hex: Iterable[str]) -> np.ndarray | None:
    """Bool per digest: was a photo with this content fitted? None when the model keeps no record."""
    if fitted is None:
        return None
    return np.isin(_prefixes(sha256_hex), _keys(check(fitted)).astype(np.uint64))


def false_match_odds(n_fitted: int, n_scored: int) -> float:
    """Expected number of unseen photos wrongly counted as seen."""
    return n_fitted * n_scored / 2.0 ** (8 * PREFIX_BYTES)
