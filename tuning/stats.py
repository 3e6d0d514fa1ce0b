"""Mergeable sufficient statistics of ``(rows, L)`` scores and 0/1 targets (issue 17).

Every threshold ``tune_thresholds`` can choose depends on the rows only through,
per label, the number of positives and negatives at each distinct score (the
points of sklearn's ``precision_recall_curve``). :class:`ScoreStats` holds such
counts for a chunk of rows; two chunks' statistics merge by adding counts, so a
dataset split any way (partitions on a cluster, chunks of a file) reduces to
the statistics of all its rows, exactly, in any order and grouping.

A statistic is a list of *groups* per label, in increasing score order: each
group has a key, its lowest and highest score and its positives and
negatives. What a group is depends on the :class:`StatsPass` that collected it:

- ``"distinct"``: one group per distinct score (key = the score's bit pattern);
  the full exact statistics, O(distinct scores) per label.
- ``"grid"``: one group per non-empty bin of a fixed semi-logarithmic grid of
  ``levels`` bins (:mod:`tuning.stats_grid`), with each bin's exact lowest and
  highest score; O(labels x levels) whatever the rows.
- ``"window"``: only inside chosen regions of a label, groups of a finer grid
  or distinct scores (the later passes of the exact mode, :mod:`tuning.stats_exact`).

Scores keep ``tune_thresholds``' dtype semantics: float16 and bfloat16 are
compared as float32 (widening is exact), float64 as float64; the original
dtype is recorded because thresholds are rounded to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from labelcut.tuning import stats_grid
from labelcut.tuning._checks import as_tensor, check_scores, check_targets
from labelcut.tuning._products import count_product
from labelcut.tuning.stats_chunk import reduce_columns

#: The kinds of pass a :class:`StatsPass` can ask for.
PASS_KINDS = ("distinct", "grid", "window")
_DTYPE_NAMES = {
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float32: "float32",
    torch.float64: "float64",
}


@dataclass(frozen=True)
class StatsPass:
    """What one pass over the rows collects (picklable, small, comparable).

    ``kind``: one of :data:`PASS_KINDS`; ``levels``: the grid's bins (a power
    of two, see :mod:`tuning.stats_grid`); ``index``: the pass's 1-based number
    in its plan. ``windows`` (``"window"`` passes only): the regions to count
    finer, as the bytes of a (W, 4) int64 array of (label, lowest bit pattern,
    end bit pattern, child shift) rows sorted by label then lowest bits: the
    rows of a label with ``lowest <= bits < end`` are grouped by
    ``bits >> shift`` (shift 0: by distinct score).
    """

    kind: str = "distinct"
    levels: int = stats_grid.DEFAULT_LEVELS
    index: int = 1
    windows: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if self.kind not in PASS_KINDS:
            raise ValueError(f"StatsPass kind must be one of {PASS_KINDS}, got {self.kind!r}.")
        stats_grid.check_levels(self.levels)

    @property
    def window_keys(self) -> np.ndarray:
        """(W, 4) int64 regions of a window pass (see the class docstring)."""
        return np.frombuffer(self.windows, dtype=np.int64).reshape(-1, 4)


def _check_chunk(scores: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated ``(r, L)`` tensors; ``r = 0`` (an empty chunk) is allowed here."""
    values = as_tensor(scores, "scores")
    if values.ndim == 2 and values.shape[0] == 0 and values.shape[1] > 0:
        if values.dtype not in _DTYPE_NAMES:
            raise ValueError(
                "scores must have a floating-point dtype (float16, bfloat16, float32 or float64), "
                f"but its dtype is {str(values.dtype).removeprefix('torch.')}."
            )
        truth = as_tensor(targets, "targets")
        if tuple(truth.shape) != tuple(values.shape):
            raise ValueError(
                f"targets must have the same shape as scores {tuple(values.shape)}, "
                f"but its shape is {tuple(truth.shape)}."
            )
        return values, truth
    values = check_scores(values)
    return values, check_targets(targets, tuple(values.shape))


def _label_counts(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows with 0, 1 and 2+ positive labels (3,) and label co-occurrence (L, L) bool."""
    per_row = truth.sum(axis=1, dtype=np.int64)
    rows = np.array(
        [np.count_nonzero(per_row == 0), np.count_nonzero(per_row == 1)], dtype=np.int64
    )
    rows = np.append(rows, len(per_row) - rows.sum())
    multi = truth[per_row >= 2].astype(np.float32)
    together = (
        count_product(multi.T, multi) > 0 if len(multi) else np.zeros((truth.shape[1],) * 2, bool)
    )
    return rows, together


@dataclass(frozen=True, eq=False)
class ScoreStats:
    """Mergeable statistics of ``n_rows`` rows of ``n_labels`` labels (module docstring).

    Groups of label ``j`` are ``offsets[j]:offsets[j + 1]`` of the flat (K,)
    int64 arrays: ``keys`` (the score's bit pattern, or the grid bin),
    ``low_bits``/``high_bits`` (bit patterns of the group's lowest and highest
    score, in the work dtype: float32 for float16/bfloat16/float32 scores,
    float64 for float64), ``positives``/``negatives``. ``rows_by_labels``
    (3,): rows with 0, 1 and 2+ positive labels; ``together`` (L, L) bool:
    label pairs seen positive in one row (for :func:`tuning.diagnose`).
    """

    pass_: StatsPass
    score_dtype: str
    n_rows: int
    n_labels: int
    offsets: np.ndarray
    keys: np.ndarray
    low_bits: np.ndarray
    high_bits: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray
    rows_by_labels: np.ndarray
    together: np.ndarray

    @classmethod
    def from_arrays(
        cls, scores: Any, targets: Any, pass_: StatsPass | None = None, *, chunk_id: int = 0
    ) -> ScoreStats:
        """Statistics of one chunk: ``scores`` (r, L) float in [0, 1] (numpy or torch, any
        device), ``targets`` (r, L) 0/1. ``r`` may be 0. ``chunk_id`` is accepted for
        row-level randomness (none is used: results never depend on the split).
        Raises ``ValueError`` naming the problem (shape, dtype, NaN, range)."""
        pass_ = pass_ or StatsPass()
        del chunk_id  # no pass of this module draws per-row randomness
        values, truth_tensor = _check_chunk(scores, targets)
        n_rows, n_labels = values.shape
        float_dtype, _ = stats_grid.work_dtypes(values.dtype)
        work = values.cpu()
        if work.dtype in (torch.float16, torch.bfloat16):
            work = work.to(torch.float32)
        truth = truth_tensor.cpu().to(torch.bool).numpy()
        grouped = reduce_columns(
            work.numpy().astype(float_dtype, copy=False), truth, pass_.kind, pass_.levels,
            pass_.window_keys,
        )  # fmt: skip
        rows, together = _label_counts(truth)
        return cls(
            pass_, _DTYPE_NAMES[values.dtype], n_rows, n_labels, rows_by_labels=rows,
            together=together, **grouped,
        )  # fmt: skip

    def label(self, j: int) -> slice:
        """The slice of label ``j``'s groups in the flat arrays."""
        return slice(int(self.offsets[j]), int(self.offsets[j + 1]))

    @property
    def label_positives(self) -> np.ndarray:
        """(L,) int64 positives of each label."""
        return _segment_sums(self.positives, self.offsets)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (what a worker sends and keeps)."""
        arrays = (self.offsets, self.keys, self.low_bits, self.high_bits, self.positives)
        extra = self.negatives.nbytes + self.rows_by_labels.nbytes + self.together.nbytes
        return sum(a.nbytes for a in arrays) + extra + len(self.pass_.windows)

    def merge(self, other: ScoreStats) -> ScoreStats:
        """The statistics of both chunks' rows: counts add, exactly (associative, commutative)."""
        self._check_compatible(other)
        dtype = self.score_dtype if self.n_rows else other.score_dtype
        labels = np.concatenate([_label_ids(self.offsets), _label_ids(other.offsets)])
        keys = np.concatenate([self.keys, other.keys])
        order = np.lexsort((keys, labels))
        labels, keys = labels[order], keys[order]
        is_start = np.ones(len(keys), dtype=bool)
        if len(keys):
            is_start[1:] = (keys[1:] != keys[:-1]) | (labels[1:] != labels[:-1])
        starts = np.flatnonzero(is_start)

        def pick(name: str, reduce: np.ufunc) -> np.ndarray:
            joined = np.concatenate([getattr(self, name), getattr(other, name)])[order]
            return reduce.reduceat(joined, starts) if len(starts) else joined

        offsets = np.searchsorted(labels[starts], np.arange(self.n_labels + 1), side="left")
        return ScoreStats(
            self.pass_, dtype, self.n_rows + other.n_rows, self.n_labels,
            offsets=offsets.astype(np.int64), keys=keys[starts],
            low_bits=pick("low_bits", np.minimum), high_bits=pick("high_bits", np.maximum),
            positives=pick("positives", np.add), negatives=pick("negatives", np.add),
            rows_by_labels=self.rows_by_labels + other.rows_by_labels,
            together=self.together | other.together,
        )  # fmt: skip

    def _check_compatible(self, other: ScoreStats) -> None:
        if not isinstance(other, ScoreStats):
            raise ValueError(f"can only merge ScoreStats, got {type(other).__name__}.")
        if other.n_labels != self.n_labels:
            raise ValueError(
                f"cannot merge statistics of {self.n_labels} labels with {other.n_labels} labels."
            )
        if other.pass_ != self.pass_:
            raise ValueError(
                "cannot merge statistics of different passes or grids: "
                f"{self.pass_} and {other.pass_}."
            )
        if self.n_rows and other.n_rows and other.score_dtype != self.score_dtype:
            raise ValueError(
                f"cannot merge statistics of {self.score_dtype} scores with "
                f"{other.score_dtype} scores: thresholds are rounded to the scores' dtype."
            )

    def values(self, bits: np.ndarray) -> np.ndarray:
        """Score bit patterns (work dtype) as float64 values."""
        return stats_grid.bits_to_float(bits, self.score_dtype)


def _label_ids(offsets: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


def _segment_sums(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(L,) sums of ``values`` over each label's segment."""
    cumulative = np.concatenate(([0], np.cumsum(values, dtype=np.int64)))
    return cumulative[offsets[1:]] - cumulative[offsets[:-1]]


def merge_stats(parts: Sequence[ScoreStats]) -> ScoreStats:
    """Merge any number of statistics in a pairwise tree (the same result in any order)."""
    level = list(parts)
    if not level:
        raise ValueError("merge_stats needs at least one ScoreStats.")
    while len(level) > 1:
        paired = [a.merge(b) for a, b in zip(level[0::2], level[1::2], strict=False)]
        level = paired + ([level[-1]] if len(level) % 2 else [])
    return level[0]


_DRIVERS = frozenset({"plan_tuning", "StatsTuning", "tune_statistics", "tune_from_stats"})


def __getattr__(name: str) -> Any:
    """The drivers of SPEC-17 by this module's name too (they live in :mod:`tuning.stats_tuning`,
    which imports this module: imported on first use)."""
    if name in _DRIVERS:
        from labelcut.tuning import stats_tuning

        return getattr(stats_tuning, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
