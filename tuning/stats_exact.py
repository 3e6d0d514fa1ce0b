"""Exact tuning in memory bounded by the grid, not the rows: two (or three) passes.

Pass 1 (``"grid"``) counts each label's positives and negatives per bin of
the fixed grid (:mod:`tuning.stats_grid`) with each bin's exact lowest and
highest score: O(labels x levels) state. Every bin's lowest score is a cut
whose counts are exact, so the best of those cuts is a lower bound of the
optimum; inside a bin the objective is bounded above
(:func:`tuning.stats_search.expandable`). Only bins whose bound reaches the
lower bound (ties kept: the tie rule wants the highest maximum) can hold the
optimum, per label and, for ``"global"``/``"shrunk"``, for the pooled
histogram (the sum of the labels' histograms on the same grid).

Pass 2 (``"window"``) counts distinct scores only inside those bins. Each
label's groups are then its bins, with the kept ones replaced by their
distinct scores; the search over them (:func:`tuning.stats_search.choose`)
is ``tune_thresholds``' exact choice, and the midpoint's lower neighbour is
the previous group's highest score, exact either way. Pass 3 runs only when a
final threshold (a ``"shrunk"`` blend, a fallback) or 0.5 falls inside a bin
that was not expanded: it expands those bins so every reported count is exact.

State of pass 2 and 3: the distinct scores inside the kept bins; for
continuous scores that is a few bins' worth of rows per label (measured in
the README), not n. Bootstrap intervals and compact curves are read from
the same groups: exact inside expanded bins, at the grid's resolution
elsewhere (the shared threshold's interval is exact at the default levels).

``quantised`` mode (:func:`tune_quantised`) is pass 1 alone: cuts only at bin
edges, each threshold still reproduces its cut's counts on the data.
"""

from __future__ import annotations

import numpy as np

from labelcut.tuning import stats_grid, stats_report
from labelcut.tuning._checks import DEFAULT_THRESHOLD, TuningSpec
from labelcut.tuning.cutpoints import untunable_status
from labelcut.tuning.result import TuningResult
from labelcut.tuning.stats import ScoreStats, StatsPass
from labelcut.tuning.stats_objectives import (
    _cuts,
    cost_expandable,
    cost_vectors,
    tune_objective_from_stats,
)
from labelcut.tuning.stats_result import CountedLabels, build_result, choose_all
from labelcut.tuning.stats_search import GroupCandidates, expandable
from labelcut.tuning.stats_tuning import counted_from_stats, pool_groups


def _label_ids(offsets: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


def _member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """bool: which ``keys`` are in ``sorted_keys`` (sorted int64)."""
    at = np.searchsorted(sorted_keys, keys)
    found = at < len(sorted_keys)
    inside = np.zeros(len(keys), dtype=bool)
    inside[found] = sorted_keys[at[found]] == keys[found]
    return inside


class _Groups:
    """Every label's groups as flat arrays (increasing score per label), with each
    group's label and grid bin; ``exact`` marks groups of one distinct score."""

    def __init__(self, label, bins, low, high, pos, neg, n_labels: int, dtype: str) -> None:
        order = np.lexsort((low, label))
        self.label, self.bins = label[order], bins[order]
        self.low, self.high, self.pos, self.neg = low[order], high[order], pos[order], neg[order]
        self.offsets = np.searchsorted(self.label, np.arange(n_labels + 1)).astype(np.int64)
        self.n_labels, self.dtype = n_labels, dtype

    def candidates(self) -> list[GroupCandidates]:
        values = stats_grid.bits_to_float
        low, high = values(self.low, self.dtype), values(self.high, self.dtype)
        return [
            GroupCandidates(low[a:b], high[a:b], self.pos[a:b], self.neg[a:b])
            for a, b in zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist(), strict=True)
        ]

    def pooled(self, exact_bins: np.ndarray, levels: int) -> tuple[GroupCandidates, np.ndarray]:
        """All labels pooled: by distinct score inside ``exact_bins`` (sorted), by bin elsewhere."""
        float_dtype = stats_grid.float_dtype_of(self.dtype)
        key = np.where(
            _member(exact_bins, self.bins),
            self.low,
            stats_grid.bin_low_bits(self.bins, float_dtype, levels),
        )
        return pool_groups(self.low, self.high, self.pos, self.neg, key, self.dtype)


def _grid_groups(grid: ScoreStats) -> _Groups:
    label = _label_ids(grid.offsets)
    return _Groups(
        label, grid.keys, grid.low_bits, grid.high_bits, grid.positives, grid.negatives,
        grid.n_labels, grid.score_dtype,
    )  # fmt: skip


def _mixed_groups(grid: ScoreStats, exact: np.ndarray, windows: list[ScoreStats]) -> _Groups:
    """The grid's groups with the (label, bin) composites in ``exact`` replaced by the
    distinct-score groups of the window passes. Raises ``ValueError`` when a window's
    counts differ from the grid's (the passes did not see the same rows)."""
    stride = stats_grid.n_bins(grid.pass_.levels)
    float_dtype = stats_grid.float_dtype_of(grid.score_dtype)
    grid_label = _label_ids(grid.offsets)
    grid_key = grid_label * stride + grid.keys
    keep = ~_member(exact, grid_key)
    parts = [
        (grid_label[keep], grid.keys[keep], grid.low_bits[keep], grid.high_bits[keep],
         grid.positives[keep], grid.negatives[keep])
    ]  # fmt: skip
    for window in windows:
        label = _label_ids(window.offsets)
        bins = stats_grid.bin_of(window.low_bits, float_dtype, grid.pass_.levels)
        parts.append(
            (label, bins, window.low_bits, window.high_bits, window.positives, window.negatives)
        )
    columns = [np.concatenate(column) for column in zip(*parts, strict=True)]
    _check_windows(grid, grid_key, ~keep, columns[0] * stride + columns[1], keep, columns)
    return _Groups(*columns, grid.n_labels, grid.score_dtype)


def _check_windows(grid, grid_key, expanded, key, from_grid, columns) -> None:
    """The window groups of each expanded bin must add up to the grid's counts there."""
    n_grid = int(from_grid.sum())
    window_key = key[n_grid:]
    window_rows = columns[4][n_grid:] + columns[5][n_grid:]
    expanded_keys = grid_key[expanded]
    expanded_rows = grid.positives[expanded] + grid.negatives[expanded]
    at = np.searchsorted(expanded_keys, window_key)
    valid = at < len(expanded_keys)
    valid[valid] = expanded_keys[at[valid]] == window_key[valid]
    sums = np.bincount(at[valid], weights=window_rows[valid], minlength=len(expanded_keys))
    if not valid.all() or not np.array_equal(sums.astype(np.int64), expanded_rows):
        raise ValueError(
            "the window pass's counts differ from the grid pass's: both passes must read "
            "the same rows."
        )


def _windows(grid: ScoreStats, spec: TuningSpec, names) -> tuple[np.ndarray, np.ndarray]:
    """(label, bin) composites to expand (sorted int64) and the pooled bins (sorted)."""
    stride = stats_grid.n_bins(grid.pass_.levels)
    groups = _grid_groups(grid)
    chosen = []
    costs = cost_vectors(spec, grid.n_labels, names) if spec.objective == "cost" else None
    for j, label in enumerate(groups.candidates()):
        part = slice(int(groups.offsets[j]), int(groups.offsets[j + 1]))
        if costs is None:
            keep = expandable(label, spec)
        elif untunable_status(_cuts(label), max(spec.min_positives, 1)) is None:
            keep = cost_expandable(label, float(costs[0][j]), float(costs[1][j]))
        else:
            keep = np.zeros(label.m, dtype=bool)
        chosen.append(j * stride + groups.bins[part][keep])
    pooled_bins = np.zeros(0, dtype=np.int64)
    if spec.strategy != "per_label" and costs is None:
        pooled, _ = groups.pooled(np.zeros(0, np.int64), grid.pass_.levels)
        bins = np.unique(groups.bins)
        pooled_bins = bins[expandable(pooled, spec)]
        multi = groups.low < groups.high
        in_pool = _member(pooled_bins, groups.bins) & multi
        chosen.append(groups.label[in_pool] * stride + groups.bins[in_pool])
    return np.unique(np.concatenate(chosen)).astype(np.int64), pooled_bins


def _counted(
    grid: ScoreStats, groups: _Groups, pooled_bins: np.ndarray, spec: TuningSpec
) -> CountedLabels:
    counted = counted_from_stats(grid, replace_pooling(spec), groups.candidates())
    if spec.strategy == "per_label":
        return counted
    pooled, pooled_bits = groups.pooled(pooled_bins, grid.pass_.levels)
    return CountedLabels(
        counted.labels, pooled, pooled_bits, counted.float_dtype, counted.score_dtype,
        counted.n_rows, counted.diagnosis, counted.estimate,
    )  # fmt: skip


def replace_pooling(spec: TuningSpec) -> TuningSpec:
    """``spec`` under "per_label" (the caller pools the groups itself)."""
    from dataclasses import replace

    return replace(spec, strategy="per_label")


def _straddled(groups: _Groups, labels: list[GroupCandidates], final: np.ndarray, stride: int):
    """(label, bin) composites of groups with scores on both sides of a reported threshold."""
    found = []
    for j, label in enumerate(labels):
        for threshold in (float(final[j]), DEFAULT_THRESHOLD):
            if label.straddles(threshold):
                g = int(groups.offsets[j]) + label.index_at(threshold) - 1
                found.append(j * stride + int(groups.bins[g]))
    return np.unique(np.array(found, dtype=np.int64))


class TwoPass:
    """The plan of exact mode for f1/fbeta/recall_at_precision/precision_at_recall/cost."""

    passes_planned = 3

    def __init__(self, plan) -> None:
        self.plan = plan
        self.grid: ScoreStats | None = None
        self.windows: list[ScoreStats] = []
        self.exact = np.zeros(0, dtype=np.int64)
        self.pooled_bins = np.zeros(0, dtype=np.int64)
        self._pending: StatsPass | None = StatsPass("grid", plan.levels, 1)
        self._done: TuningResult | None = None

    def next_pass(self) -> StatsPass | None:
        return self._pending

    def feed(self, merged: ScoreStats) -> None:
        if self.grid is None:
            self.grid = merged
            self.spec, self.return_curves, self.names = stats_report.check_tune_kwargs(
                merged.n_labels, **self.plan.tune_kwargs
            )
            self.exact, self.pooled_bins = _windows(merged, self.spec, self.names)
        else:
            self.windows.append(merged)
        self._advance()

    def _advance(self) -> None:
        """The next window pass needed, or the result."""
        assert self.grid is not None
        levels = self.grid.pass_.levels
        stride = stats_grid.n_bins(levels)
        wanted = self.exact if not self.windows and len(self.exact) else None
        if wanted is None:
            groups = _mixed_groups(self.grid, self.exact, self.windows)
            if self.spec.objective == "cost":
                labels = groups.candidates()
                done = tune_objective_from_stats(
                    self.grid, self.spec, self.return_curves, self.names, labels
                )
                final = done.thresholds
            else:
                counted = _counted(self.grid, groups, self.pooled_bins, self.spec)
                choices = choose_all(counted, self.spec)
                labels, final = counted.labels, choices.final
                done = None
            straddled = _straddled(groups, labels, final, stride)
            if len(straddled) == 0:
                self._pending = None
                self._done = done or build_result(counted, self.spec, choices, self.return_curves)
                return
            wanted = straddled
            self.exact = np.union1d(self.exact, straddled)
        index = 2 + len(self.windows)
        self._pending = StatsPass("window", levels, index, windows=wanted.tobytes())

    def result(self) -> TuningResult:
        assert self._done is not None
        return self._done


def tune_quantised(grid: ScoreStats, spec: TuningSpec, return_curves: bool) -> TuningResult:
    """Tune from ``"grid"`` statistics alone: cuts at bin edges only (module docstring)."""
    groups = _grid_groups(grid)
    counted = _counted(grid, groups, np.zeros(0, dtype=np.int64), spec)
    return build_result(counted, spec, choose_all(counted, spec), return_curves)
