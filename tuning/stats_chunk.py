"""One chunk of rows reduced to groups: the work of ``ScoreStats.from_arrays``.

Label by label (one column's work arrays alive at a time): the column's
scores and targets are packed into sort keys ``bits << 1 | target`` (int32
for float32 work scores, as :mod:`tuning._sorted` does, int64 for float64)
and sorted once. Then, on the sorted keys:

- ``"distinct"``: a group starts wherever the score's bits change;
- ``"grid"``: a group starts wherever the bin (integer arithmetic on the
  bits, :func:`tuning.stats_grid.bin_of`) changes;
- ``"window"``: only the rows inside the label's regions (a binary search per
  row) are sorted, then grouped by ``bits >> shift`` of their region (shift 0:
  by distinct score).

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


def _regions(keys: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, ...]:
    """Groups of the rows inside ``regions`` (k, 3) = (lowest bits, end bits, child shift),
    sorted and disjoint: each region's rows are grouped by ``bits >> shift`` (shift 0: by
    distinct score); a group's key is its child's lowest possible bit pattern."""
    if len(keys) == 0 or len(regions) == 0:
        return (_EMPTY,) * 5
    low, end, shift = (regions[:, i].astype(keys.dtype) for i in range(3))
    at = np.searchsorted(low, keys >> 1, side="right") - 1
    inside = at >= 0
    inside[inside] = (keys[inside] >> 1) < end[at[inside]]
    kept = keys[inside]
    kept.sort()
    if len(kept) == 0:
        return (_EMPTY,) * 5
    bits = kept >> 1
    child_shift = shift[np.searchsorted(low, bits, side="right") - 1]
    child = (bits >> child_shift) << child_shift
    starts = np.concatenate(([0], np.flatnonzero(child[1:] != child[:-1]) + 1)).astype(np.int64)
    return _groups(kept, starts, child[starts])


def reduce_columns(
    values: np.ndarray, truth: np.ndarray, kind: str, levels: int, windows: np.ndarray
) -> dict[str, np.ndarray]:
    """Flat group arrays and offsets of a chunk.

    ``values`` (r, L) float32/float64 work scores, ``truth`` (r, L) bool;
    ``windows``: a window pass's (W, 4) int64 regions (label, lowest bits, end bits,
    child shift), sorted by label then lowest bits.
    """
    n_labels = values.shape[1]
    float_dtype = values.dtype.type
    int_dtype = np.int32 if float_dtype == np.float32 else np.int64
    parts: list[tuple[np.ndarray, ...]] = []
    for j in range(n_labels):
        column = np.ascontiguousarray(values[:, j], dtype=float_dtype) + float_dtype(0.0)
        keys = column.view(int_dtype)  # -0.0 + 0.0 is +0.0; the copy is ours to overwrite
        keys <<= 1
        keys |= truth[:, j]
        if kind == "window":
            a, b = np.searchsorted(windows[:, 0], [j, j + 1])
            regions = windows[a:b, 1:]
            # Every region lies inside one grid bin: a table of those bins drops most rows
            # with integer arithmetic before the binary searches.
            table = np.zeros(stats_grid.n_bins(levels), dtype=bool)
            table[stats_grid.bin_of(regions[:, 0], float_dtype, levels)] = True
            keys = keys[table[stats_grid.bin_of(keys >> 1, float_dtype, levels, keys.dtype)]]
            parts.append(_regions(keys, regions))
            continue
        keys.sort()
        parts.append(_grid(keys, float_dtype, levels) if kind == "grid" else _distinct(keys))
    sizes = np.array([len(part[0]) for part in parts], dtype=np.int64)
    found = {
        name: np.concatenate([part[i] for part in parts]) if parts else _EMPTY
        for i, name in enumerate(FIELDS)
    }
    found["offsets"] = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    return found
