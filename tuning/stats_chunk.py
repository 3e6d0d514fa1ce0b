"""One chunk of rows reduced to groups: the work of ``ScoreStats.from_arrays``.

Label by label (one column's work arrays alive at a time): the column's
scores and targets are packed into sort keys ``bits << 1 | target`` (int32
for float32 work scores, as :mod:`tuning._sorted` does, int64 for float64)
and sorted once. Then, on the sorted keys:

- ``"distinct"``: a group starts wherever the score's bits change;
- ``"grid"``: a group starts wherever the bin (integer arithmetic on the
  bits, :func:`tuning.stats_grid.bin_of`) changes;
- ``"window"``: only the rows in the label's kept bins (a table lookup per
  row) are sorted, then grouped by distinct score.

Positives per group come from one cumulative sum of the target bits.
"""

from __future__ import annotations

import numpy as np

from labelcut.tuning import stats_grid

_EMPTY = np.zeros(0, dtype=np.int64)
FIELDS = ("keys", "low_bits", "high_bits", "positives", "negatives")


def _groups(keys: np.ndarray, starts: np.ndarray, group_keys) -> tuple[np.ndarray, ...]:
    """Group arrays of sorted ``keys`` cut at ``starts`` (int64, first 0)."""
    stops = np.append(starts[1:], len(keys))
    positives = np.add.reduceat(keys & 1, starts).astype(np.int64)
    return (
        np.asarray(group_keys, dtype=np.int64),
        (keys[starts] >> 1).astype(np.int64),
        (keys[stops - 1] >> 1).astype(np.int64),
        positives,
        (stops - starts - positives).astype(np.int64),
    )


def _distinct(keys: np.ndarray) -> tuple[np.ndarray, ...]:
    if len(keys) == 0:
        return (_EMPTY,) * 5
    bits = keys >> 1
    starts = np.flatnonzero(bits[1:] != bits[:-1]) + 1
    starts = np.concatenate(([0], starts)).astype(np.int64)
    return _groups(keys, starts, bits[starts])


def _grid(keys: np.ndarray, float_dtype, levels: int) -> tuple[np.ndarray, ...]:
    """Bins of sorted keys: a bin starts where :func:`stats_grid.bin_of` changes (computed in
    the keys' own integer dtype: cheaper than a binary search per bin edge)."""
    if len(keys) == 0:
        return (_EMPTY,) * 5
    bins = stats_grid.bin_of(keys >> 1, float_dtype, levels, dtype=keys.dtype)
    starts = np.concatenate(([0], np.flatnonzero(bins[1:] != bins[:-1]) + 1)).astype(np.int64)
    return _groups(keys, starts, bins[starts])


def reduce_columns(
    values: np.ndarray, truth: np.ndarray, kind: str, levels: int, windows: np.ndarray
) -> dict[str, np.ndarray]:
    """Flat group arrays and offsets of a chunk.

    ``values`` (r, L) float32/float64 work scores, ``truth`` (r, L) bool;
    ``windows``: a window pass's sorted ``label * n_bins + bin`` keys.
    """
    n_labels = values.shape[1]
    float_dtype = values.dtype.type
    int_dtype = np.int32 if float_dtype == np.float32 else np.int64
    stride = stats_grid.n_bins(levels)
    parts: list[tuple[np.ndarray, ...]] = []
    for j in range(n_labels):
        column = np.ascontiguousarray(values[:, j], dtype=float_dtype) + float_dtype(0.0)
        keys = column.view(int_dtype)  # -0.0 + 0.0 is +0.0; the copy is ours to overwrite
        keys <<= 1
        keys |= truth[:, j]
        if kind == "window":  # keep only the window bins' rows, then sort those
            a, b = np.searchsorted(windows, [j * stride, (j + 1) * stride])
            table = np.zeros(stride, dtype=bool)
            table[windows[a:b] - j * stride] = True
            keys = keys[table[stats_grid.bin_of(keys >> 1, float_dtype, levels, keys.dtype)]]
        keys.sort()
        parts.append(_grid(keys, float_dtype, levels) if kind == "grid" else _distinct(keys))
    sizes = np.array([len(part[0]) for part in parts], dtype=np.int64)
    found = {
        name: np.concatenate([part[i] for part in parts]) if parts else _EMPTY
        for i, name in enumerate(FIELDS)
    }
    found["offsets"] = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    return found
