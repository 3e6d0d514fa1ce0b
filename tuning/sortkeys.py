"""Pack a label's scores and targets into one integer sort key.

For a non-negative IEEE float, the bit pattern read as a signed integer orders
exactly as the value does. Scores lie in [0, 1], so ``bits << 1 | target``
fits in int32 (float32 scores) or int64 (float64 scores), and sorting these
keys orders samples by score while carrying each target along in the lowest
bit: no argsort, no index arrays, no gather. Equal scores share the same
``key >> 1``, which is how distinct values are found after sorting.

float16 and bfloat16 scores are widened to float32 first, which is exact, so
no two distinct scores are ever merged.
"""

from __future__ import annotations

import numpy as np
import torch

_WORK_DTYPES: dict[torch.dtype, tuple[type[np.floating], type[np.signedinteger]]] = {
    torch.float16: (np.float32, np.int32),
    torch.bfloat16: (np.float32, np.int32),
    torch.float32: (np.float32, np.int32),
    torch.float64: (np.float64, np.int64),
}
_TILE_ROWS = 1 << 14


def work_dtypes(score_dtype: torch.dtype) -> tuple[type[np.floating], type[np.signedinteger]]:
    """The float dtype scores are compared in and the integer dtype of their keys."""
    return _WORK_DTYPES[score_dtype]


def label_block(
    scores: torch.Tensor, targets: torch.Tensor, start: int, stop: int
) -> tuple[np.ndarray, np.ndarray]:
    """Copy labels ``start:stop`` out of ``(n, L)`` inputs as C-ordered ``(C, n)`` arrays.

    Returns scores in the work float dtype and targets as uint8 0/1. The copy
    goes through tiles of rows: transposing a tile that fits in cache is several
    times faster than numpy's transposing copy of the whole strided block.
    """
    float_dtype, _ = work_dtypes(scores.dtype)
    block = scores[:, start:stop].cpu()
    if block.dtype == torch.bfloat16:
        block = block.to(torch.float32)
    source_scores = block.numpy()
    source_targets = targets[:, start:stop].cpu().numpy()
    n_samples, n_labels = source_scores.shape
    values = np.empty((n_labels, n_samples), dtype=float_dtype)
    labels = np.empty((n_labels, n_samples), dtype=np.uint8)
    for row in range(0, n_samples, _TILE_ROWS):
        tile = slice(row, row + _TILE_ROWS)
        values[:, tile] = source_scores[tile].T
        labels[:, tile] = source_targets[tile].T
    return values, labels


def pack_keys(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Turn float ``values`` in [0, 1] and 0/1 ``labels`` into sort keys, in place.

    ``values`` is overwritten and its memory reused for the returned keys.
    """
    values += 0.0  # -0.0 + 0.0 is +0.0: keeps -0.0 and 0.0 one distinct value
    keys = values.view(np.int32 if values.dtype == np.float32 else np.int64)
    keys <<= 1
    keys |= labels
    return keys


def pack_keys_torch(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Torch version of :func:`pack_keys` for ``(C, n)`` float32/float64 ``values``."""
    values = values + 0.0
    keys = values.view(torch.int32 if values.dtype == torch.float32 else torch.int64)
    return (keys << 1) | labels.to(keys.dtype)


def query_bits(thresholds: np.ndarray, float_dtype: type[np.floating]) -> np.ndarray:
    """Integer bit patterns ``q`` such that ``score >= threshold`` iff ``score_bits >= q``.

    ``q`` is the bit pattern of the smallest work-dtype value that is >= the
    float64 threshold; thresholds must lie in [0, 1].
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    rounded = thresholds.astype(float_dtype)
    below = rounded.astype(np.float64) < thresholds
    rounded[below] = np.nextafter(rounded[below], float_dtype(np.inf))
    return rounded.view(np.int32 if float_dtype == np.float32 else np.int64)


def bits_to_float(bits: np.ndarray, float_dtype: type[np.floating]) -> np.ndarray:
    """Inverse of the score half of a key: bit patterns back to float64 values."""
    return np.ascontiguousarray(bits).view(float_dtype).astype(np.float64)
