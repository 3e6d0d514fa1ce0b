"""The fixed score grid of the ``"grid"`` statistics, and the score dtypes they count in.

Bins follow the float bit pattern, as :mod:`tuning._shared`'s buckets do: a
bin is a score's exponent and its top ``log2(levels) - 6`` mantissa bits, over
the 64 octaves ``[2**-64, 1)``; bin 0 holds every score below ``2**-64`` (and
0), bin ``levels + 1`` the score 1.0 exactly. So the grid's resolution is
relative (1/1024 of the score at the default ``2**16`` levels) and rare labels
whose scores sit near 0 are resolved as finely as common ones. Bin numbers
increase with the score, so a cut at any bin edge is a cut of the scores.

At the default ``levels`` the bins refine :class:`tuning._shared.Bucketing`'s
buckets exactly (same 10 mantissa bits), so the pooled histogram the
bootstrap of the shared threshold resamples is the same as in memory.
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_LEVELS = 1 << 16
_OCTAVES = 64
_MIN_LEVELS, _MAX_LEVELS = 1 << 7, 1 << 22
_MANTISSA = {np.float32: 23, np.float64: 52}
_WORK = {
    torch.float16: (np.float32, np.int32),
    torch.bfloat16: (np.float32, np.int32),
    torch.float32: (np.float32, np.int32),
    torch.float64: (np.float64, np.int64),
}
#: torch dtype of each recorded score dtype name (thresholds are rounded to it).
TORCH_DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def work_dtypes(score_dtype: torch.dtype) -> tuple[type[np.floating], type[np.signedinteger]]:
    """The float dtype scores are compared in, and the integer dtype of their bit patterns."""
    return _WORK[score_dtype]


def float_dtype_of(score_dtype: str) -> type[np.floating]:
    """The work float dtype of a recorded score dtype name."""
    return _WORK[TORCH_DTYPES[score_dtype]][0]


def check_levels(levels: object) -> int:
    """``levels`` must be a power of two from 2**7 to 2**22; ``ValueError`` otherwise."""
    if (
        isinstance(levels, bool)
        or not isinstance(levels, (int, np.integer))
        or not _MIN_LEVELS <= int(levels) <= _MAX_LEVELS
        or int(levels) & (int(levels) - 1)
    ):
        raise ValueError(
            f"levels must be a power of two from {_MIN_LEVELS} to {_MAX_LEVELS}, got {levels!r}."
        )
    return int(levels)


def n_bins(levels: int) -> int:
    """Number of bins of a grid: ``levels`` plus the bins of 0 and of 1.0."""
    return int(levels) + 2


def _layout(float_dtype: type[np.floating], levels: int) -> tuple[int, int]:
    int_dtype = np.int32 if float_dtype == np.float32 else np.int64
    base = int(np.array(2.0**-_OCTAVES, dtype=float_dtype).view(int_dtype))
    mantissa_bits = int(levels).bit_length() - 1 - (_OCTAVES.bit_length() - 1)
    return base, _MANTISSA[float_dtype] - mantissa_bits


def bin_of(
    bits: np.ndarray, float_dtype: type[np.floating], levels: int, dtype: type = np.int64
) -> np.ndarray:
    """Bin of each non-negative score bit pattern (work dtype), non-decreasing in it.

    ``dtype``: the integer dtype to compute in (int32 is exact for float32 bits).
    """
    base, shift = _layout(float_dtype, levels)
    shifted = np.asarray(bits, dtype=dtype) - np.dtype(dtype).type(base)
    np.maximum(shifted, -1, out=shifted)
    shifted >>= shift  # -1 >> shift is -1
    shifted += 1
    return shifted


def bin_low_bits(bins: np.ndarray, float_dtype: type[np.floating], levels: int) -> np.ndarray:
    """int64 lowest bit pattern of each bin (0 for bin 0)."""
    base, shift = _layout(float_dtype, levels)
    low = base + ((np.asarray(bins, dtype=np.int64) - 1) << shift)
    return np.where(np.asarray(bins) <= 0, 0, low)


def bits_to_float(bits: np.ndarray, score_dtype: str) -> np.ndarray:
    """int64 bit patterns of the work dtype of ``score_dtype`` as float64 values."""
    float_dtype = float_dtype_of(score_dtype)
    int_dtype = np.int32 if float_dtype == np.float32 else np.int64
    return np.asarray(bits).astype(int_dtype).view(float_dtype).astype(np.float64)


def float_to_bits(values: np.ndarray, score_dtype: str) -> np.ndarray:
    """float64 values exactly representable in the work dtype, as int64 bit patterns."""
    float_dtype = float_dtype_of(score_dtype)
    int_dtype = np.int32 if float_dtype == np.float32 else np.int64
    return (
        (np.asarray(values, dtype=np.float64).astype(float_dtype) + 0.0)
        .view(int_dtype)
        .astype(np.int64)
    )
