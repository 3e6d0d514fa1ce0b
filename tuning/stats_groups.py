"""Groups of scores refined pass by pass, and the shared partition the pooled groups use.

A label's statistics after some passes are groups in increasing score order,
each with its counts, its exact lowest and highest score and the range of bit
patterns it may hold, ``[edge_low, edge_end)``: a grid bin, an aligned sub-bin
of one (``bits >> shift`` equal), or ``[v, v + 1)`` once all its rows share
the score ``v``. :class:`Groups` replaces refined groups by what a window pass
counted inside them (checking the counts add up); :class:`Pool` is the one
partition of the scores, shared by all labels, that the pooled groups of
``"global"``/``"shrunk"`` are read over; :func:`child_shift` says how finely a
group is refined next (:mod:`tuning.stats_exact`).
"""

from __future__ import annotations

import numpy as np

from labelcut.tuning import stats_grid
from labelcut.tuning.stats import ScoreStats
from labelcut.tuning.stats_search import GroupCandidates
from labelcut.tuning.stats_tuning import pool_groups

#: A group of at most this many rows is refined straight to its distinct scores.
DIRECT_ROWS = 256
#: A larger group is cut into about 2**CHILD_BITS aligned sub-bins...
CHILD_BITS = 8
#: ...unless all the groups a pass refines hold at most this many rows together: then
#: they go straight to their distinct scores (one pass fewer, state still bounded).
STATE_BUDGET = 1 << 20


def label_ids(offsets: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


def child_shift(rows: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """Shift of the sub-bins a group of ``rows`` spanning ``extent`` bit patterns is cut into."""
    bits = np.ceil(np.log2(np.maximum(extent, 1).astype(np.float64))).astype(np.int64)
    fine = np.maximum(bits - CHILD_BITS, 0)
    return np.where((rows <= DIRECT_ROWS) | (extent <= (1 << CHILD_BITS)), 0, fine)


def refining_passes(score_dtype: str, levels: int) -> int:
    """At most this many refining passes reach distinct scores from any grid bin."""
    float_dtype = stats_grid.float_dtype_of(score_dtype)
    base, shift = stats_grid._layout(float_dtype, levels)
    widest = max(shift, int(base).bit_length())  # bin 0 spans [0, base)
    return -(-widest // CHILD_BITS)


def depth(groups: Groups) -> int:
    """Refining passes that reach distinct scores from the widest group of several scores
    (each pass cuts a group's span by 2**CHILD_BITS or goes straight to its scores)."""
    multi = groups.low < groups.high
    if not multi.any():
        return 0
    widest = int((groups.edge_end - groups.edge_low)[multi].max())
    return -(-(widest - 1).bit_length() // CHILD_BITS)


class Groups:
    """Every label's groups (increasing score per label) with each group's possible
    bit-pattern range ``[edge_low, edge_end)``: a dyadic block (a grid bin or a sub-bin),
    or ``[v, v + 1)`` once all its rows share the score ``v``."""

    def __init__(self, label, edge_low, edge_end, low, high, pos, neg, n_labels, dtype) -> None:
        order = np.lexsort((low, label))
        self.label, self.low, self.high = label[order], low[order], high[order]
        self.pos, self.neg = pos[order], neg[order]
        single = self.low == self.high
        self.edge_low = np.where(single, self.low, edge_low[order])
        self.edge_end = np.where(single, self.low + 1, edge_end[order])
        self.offsets = np.searchsorted(self.label, np.arange(n_labels + 1)).astype(np.int64)
        self.n_labels, self.dtype = n_labels, dtype

    @classmethod
    def of_grid(cls, grid: ScoreStats) -> Groups:
        float_dtype = stats_grid.float_dtype_of(grid.score_dtype)
        levels = grid.pass_.levels
        return cls(
            label_ids(grid.offsets),
            stats_grid.bin_low_bits(grid.keys, float_dtype, levels),
            stats_grid.bin_low_bits(grid.keys + 1, float_dtype, levels),
            grid.low_bits, grid.high_bits, grid.positives, grid.negatives,
            grid.n_labels, grid.score_dtype,
        )  # fmt: skip

    @property
    def rows(self) -> np.ndarray:
        return self.pos + self.neg

    def candidates(self) -> list[GroupCandidates]:
        values = stats_grid.bits_to_float
        low, high = values(self.low, self.dtype), values(self.high, self.dtype)
        return [
            GroupCandidates(low[a:b], high[a:b], self.pos[a:b], self.neg[a:b])
            for a, b in zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist(), strict=True)
        ]

    def refined(self, chosen: np.ndarray, shifts: np.ndarray, window: ScoreStats) -> Groups:
        """The groups with ``chosen`` (indices) replaced by the window pass's sub-groups.

        Raises ``ValueError`` when a refined group's sub-groups do not add up to it
        (the passes did not read the same rows).
        """
        label, key = label_ids(window.offsets), window.keys
        # ``chosen`` is increasing, so sorted by (label, low) as the pass's regions are.
        owner = _owner(self.label[chosen], self.edge_low[chosen], label, key)
        valid = owner >= 0
        valid[valid] &= key[valid] < self.edge_end[chosen][owner[valid]]
        rows = np.bincount(
            owner[valid],
            weights=(window.positives + window.negatives)[valid],
            minlength=len(chosen),
        )
        if not valid.all() or not np.array_equal(rows.astype(np.int64), self.rows[chosen]):
            raise ValueError(
                "a window pass's counts differ from the earlier passes': every pass must read "
                "the same rows."
            )
        end = np.minimum(key + (np.int64(1) << shifts[owner]), self.edge_end[chosen][owner])
        keep = np.ones(len(self.label), dtype=bool)
        keep[chosen] = False
        join = np.concatenate
        return Groups(
            join([self.label[keep], label]), join([self.edge_low[keep], key]),
            join([self.edge_end[keep], end]), join([self.low[keep], window.low_bits]),
            join([self.high[keep], window.high_bits]), join([self.pos[keep], window.positives]),
            join([self.neg[keep], window.negatives]), self.n_labels, self.dtype,
        )  # fmt: skip


def _owner(region_label, region_low, label, key) -> np.ndarray:
    """Index of the region (sorted by label, low) holding each (label, key); -1 if none."""
    owner = np.full(len(key), -1, dtype=np.int64)
    for j in np.unique(label).tolist():
        a, b = np.searchsorted(region_label, [j, j + 1])
        mine = np.flatnonzero(label == j)
        at = np.searchsorted(region_low[a:b], key[mine], side="right") - 1
        owner[mine] = np.where(at >= 0, a + at, -1)
    return owner


class Pool:
    """The shared partition of the scores the pooled groups are read over: sorted
    ``[low, end)`` regions; every label's group lies inside one of them."""

    def __init__(self, low: np.ndarray, end: np.ndarray) -> None:
        self.low, self.end = low, end

    @classmethod
    def of_grid(cls, grid: ScoreStats) -> Pool:
        """The grid's non-empty bins (of any label)."""
        float_dtype = stats_grid.float_dtype_of(grid.score_dtype)
        bins = np.unique(grid.keys)
        low = stats_grid.bin_low_bits(bins, float_dtype, grid.pass_.levels)
        return cls(low, stats_grid.bin_low_bits(bins + 1, float_dtype, grid.pass_.levels))

    def index(self, groups: Groups) -> np.ndarray:
        return np.searchsorted(self.low, groups.edge_low, side="right") - 1

    def pooled(self, groups: Groups) -> tuple[GroupCandidates, np.ndarray]:
        key = self.low[self.index(groups)]
        return pool_groups(groups.low, groups.high, groups.pos, groups.neg, key, groups.dtype)

    def refined(self, regions: np.ndarray, shifts: np.ndarray, groups: Groups) -> Pool:
        """``regions`` (indices) cut into blocks of ``1 << shifts`` holding ``groups``' groups."""
        index = self.index(groups)
        where = np.full(len(self.low), -1, dtype=np.int64)
        where[regions] = np.arange(len(regions))
        inside = where[index] >= 0
        shift = shifts[where[index[inside]]]
        child = (groups.edge_low[inside] >> shift) << shift
        end = np.minimum(child + (np.int64(1) << shift), self.end[index[inside]])
        keep = np.ones(len(self.low), dtype=bool)
        keep[regions] = False
        low = np.concatenate([self.low[keep], child])
        end = np.concatenate([self.end[keep], end])
        low, first = np.unique(low, return_index=True)
        return Pool(low, end[first])
