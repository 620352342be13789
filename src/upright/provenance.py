"""What a model was fitted on: 8-byte prefixes of the photos' SHA-256, kept in the model folder.

`train` stores the fingerprints of every photo the final head was fitted on as the uint8
tensor `fitted_sha256` [N, 8] in head.safetensors (rows sorted, duplicates removed: 8 bytes
per photo). `eval` matches the photos it scores against them and reports how many the model
has seen. Content, not paths: a renamed or copied training photo still counts as seen.

False matches: 64-bit prefixes of SHA-256 behave as uniform random numbers, so scoring m
unseen photos against a model fitted on n photos wrongly reports about m * n / 2**64 of
them as seen: 5e-8 photos for a million against a million.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

TENSOR = "fitted_sha256"
PREFIX_BYTES = 8


def fingerprints(sha256_hex: Iterable[str]) -> np.ndarray:
    """Hex SHA-256 digests -> uint8 [N, 8] rows (first 8 bytes), sorted, unique."""
    keys = np.unique(np.array([int(h[: 2 * PREFIX_BYTES], 16) for h in sha256_hex], dtype=np.uint64))
    return keys.astype(">u8").view(np.uint8).reshape(-1, PREFIX_BYTES)


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
    want = np.array([int(h[: 2 * PREFIX_BYTES], 16) for h in sha256_hex], dtype=np.uint64)
    return np.isin(want, _keys(check(fitted)).astype(np.uint64))


def false_match_odds(n_fitted: int, n_scored: int) -> float:
    """Expected number of unseen photos wrongly counted as seen."""
    return n_fitted * n_scored / 2.0 ** (8 * PREFIX_BYTES)
