"""Exact tuning in memory bounded by the grid, not the rows: a few refining passes.

Pass 1 (``"grid"``) counts each label's positives and negatives per bin of
the fixed grid (:mod:`tuning.stats_grid`) with each bin's exact lowest and
highest score: O(labels x levels) state. Every group's lowest score is a cut
whose counts are exact, so the best of those cuts bounds the optimum from
below; inside a group the objective is bounded above
(:func:`tuning.stats_search.expandable`, :func:`tuning.stats_objectives.
cost_expandable`). Only groups whose bound reaches the lower bound (ties kept:
the tie rule wants the highest maximum) can hold the optimum, per label and,
for ``"global"``/``"shrunk"``, for the pooled histogram (the sum of the
labels' groups over one shared partition of the scores).

Each later pass (``"window"``) refines only those groups: when they hold at
most :data:`tuning.stats_groups.STATE_BUDGET` rows together, all of them straight to their
distinct scores; otherwise a group of at most :data:`tuning.stats_groups.DIRECT_ROWS` rows (or
spanning at most 2**8 (``CHILD_BITS``) bit patterns) by distinct score and a
larger one on a finer grid of about 2**8 (``CHILD_BITS``) sub-bins (aligned
blocks of its bit patterns). So a pass's state is at most
max(budget, 256 x the refined groups), whatever the rows; the
groups shrink 256-fold per pass, so float32 scores need at most two refining
passes from a grid bin and float64 at most six. When nothing more can hold
the optimum, the search over the groups (:func:`tuning.stats_search.choose`)
is ``tune_thresholds``' exact choice; the midpoint's lower neighbour is the
previous group's exact highest score. Groups with a reported threshold (a
``"shrunk"`` blend, a fallback, 0.5) strictly inside are refined the same way
until every reported count is exact.

Bootstrap intervals and compact curves are read from the final groups: exact
inside refined groups, at the grid's resolution elsewhere (the shared
threshold's interval is exact at the default levels). ``quantised`` mode
(:func:`tune_quantised`) is pass 1 alone: cuts only at bin edges, each
threshold still reproducing its cut's counts on the data.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from labelcut.tuning import stats_report
from labelcut.tuning._checks import DEFAULT_THRESHOLD, TuningSpec
from labelcut.tuning._search import label_statuses
from labelcut.tuning.cutpoints import untunable_status
from labelcut.tuning.result import TuningResult
from labelcut.tuning.stats import ScoreStats, StatsPass
from labelcut.tuning.stats_groups import (
    STATE_BUDGET,
    Groups,
    Pool,
    child_shift,
    depth,
    refining_passes,
)
from labelcut.tuning.stats_objectives import (
    _cuts,
    cost_expandable,
    cost_vectors,
    tune_objective_from_stats,
)
from labelcut.tuning.stats_result import build_result, choose_all
from labelcut.tuning.stats_search import GroupCandidates, expandable
from labelcut.tuning.stats_tuning import counted_from_stats


def _own_expansions(groups: Groups, spec: TuningSpec, costs) -> np.ndarray:
    """(K,) bool: label groups that may hold the label's own optimum."""
    mask = np.zeros(len(groups.label), dtype=bool)
    for j, label in enumerate(groups.candidates()):
        part = slice(int(groups.offsets[j]), int(groups.offsets[j + 1]))
        if costs is None:
            mask[part] = expandable(label, spec)
        elif untunable_status(_cuts(label), max(spec.min_positives, 1)) is None:
            mask[part] = cost_expandable(label, float(costs[0][j]), float(costs[1][j]))
    return mask


def _straddling(groups: Groups, labels: list[GroupCandidates], final: np.ndarray) -> np.ndarray:
    """(K,) bool: groups with a reported threshold (final or 0.5) strictly inside."""
    mask = np.zeros(len(groups.label), dtype=bool)
    for j, label in enumerate(labels):
        for threshold in (float(final[j]), DEFAULT_THRESHOLD):
            if label.straddles(threshold):
                mask[int(groups.offsets[j]) + label.index_at(threshold) - 1] = True
    return mask


class ExactPasses:
    """The plan of exact mode for f1/fbeta/recall_at_precision/precision_at_recall/cost:
    a grid pass, then refining window passes until the answer is exact."""

    def __init__(self, plan) -> None:
        self.plan = plan
        self.grid: ScoreStats | None = None
        self.groups: Groups | None = None
        self.pool: Pool | None = None
        self._pending: StatsPass | None = StatsPass("grid", plan.levels, 1)
        self._expanding: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._done: TuningResult | None = None
        self.passes_planned = 1 + 2 * refining_passes("float64", plan.levels)
        self._index = 1

    def next_pass(self) -> StatsPass | None:
        return self._pending

    def feed(self, merged: ScoreStats) -> None:
        if self.grid is None:
            self.grid = merged
            self.spec, self.return_curves, self.names = stats_report.check_tune_kwargs(
                merged.n_labels, **self.plan.tune_kwargs
            )
            self.costs = (
                cost_vectors(self.spec, merged.n_labels, self.names)
                if self.spec.objective == "cost"
                else None
            )
            self.groups = Groups.of_grid(merged)
            self.pool = Pool.of_grid(merged) if self._pooling else None
            self.passes_planned = 1 + 2 * depth(self.groups)
        else:
            assert self._expanding is not None and self.groups is not None
            chosen, shifts, pool_regions, pool_shifts = self._expanding
            self.groups = self.groups.refined(chosen, shifts, merged)
            if self.pool is not None and len(pool_regions):
                self.pool = self.pool.refined(pool_regions, pool_shifts, self.groups)
        self._advance()

    @property
    def _pooling(self) -> bool:
        return self.spec.strategy != "per_label" and self.spec.objective != "cost"

    def _advance(self) -> None:
        assert self.groups is not None and self.grid is not None
        groups, spec = self.groups, self.spec
        shift = np.full(len(groups.label), np.iinfo(np.int64).max)
        own = _own_expansions(groups, spec, self.costs)
        shift[own] = child_shift(groups.rows[own], (groups.edge_end - groups.edge_low)[own])
        pool_regions = pool_shifts = np.zeros(0, dtype=np.int64)
        members = np.zeros(len(groups.label), dtype=bool)
        if self.pool is not None:
            pool_regions, pool_shifts, members = self._pooled_expansions(shift)
        if not (shift < np.iinfo(np.int64).max).any():
            done, labels, final = self._tune()
            straddled = _straddling(groups, labels, final)
            if not straddled.any():
                self._pending, self._done = None, done
                return
            shift[straddled] = child_shift(
                groups.rows[straddled], (groups.edge_end - groups.edge_low)[straddled]
            )
        if self._index == 1:  # labels the status ladder rejects will sit at the fallback
            shift[self._fallback_groups()] = np.minimum(shift[self._fallback_groups()], 0)
        chosen = np.flatnonzero(shift < np.iinfo(np.int64).max)
        budget = STATE_BUDGET if self.plan.budget_rows is None else self.plan.budget_rows
        # Straight to distinct scores: then every group of several scores in a refined
        # pooled region goes too, so the pooled regions can become distinct scores.
        direct = np.flatnonzero((shift < np.iinfo(np.int64).max) | members)
        if int(groups.rows[direct].sum()) <= budget:
            chosen = direct
            shift[chosen] = 0
            pool_shifts = np.zeros_like(pool_shifts)
        self._expanding = (chosen, shift[chosen], pool_regions, pool_shifts)
        regions = np.stack(
            [groups.label[chosen], groups.edge_low[chosen], groups.edge_end[chosen], shift[chosen]],
            axis=1,
        ).astype(np.int64)
        self._index += 1
        self._pending = StatsPass(
            "window", self.plan.levels, self._index, windows=np.ascontiguousarray(regions).tobytes()
        )

    def _fallback_groups(self) -> np.ndarray:
        """Groups holding the fallback strictly inside, of labels the status ladder rejects
        (under "per_label" and for costs they report the fallback)."""
        assert self.groups is not None
        mask = np.zeros(len(self.groups.label), dtype=bool)
        if self._pooling:
            return mask
        for j, label in enumerate(self.groups.candidates()):
            [status] = label_statuses(
                label.n_samples, np.array([label.positives]), np.array([True]), self.spec
            )
            if status != "ok" and label.straddles(self.spec.fallback):
                mask[int(self.groups.offsets[j]) + label.index_at(self.spec.fallback) - 1] = True
        return mask

    def _pooled_expansions(self, shift: np.ndarray) -> tuple[np.ndarray, ...]:
        """Pooled regions that may hold the shared optimum, their sub-bin shifts, and the
        label groups of several scores inside them; every label's group in them is
        refined at least as finely as the region (updates ``shift``)."""
        assert self.pool is not None and self.groups is not None
        groups = self.groups
        pooled, _ = self.pool.pooled(groups)
        index = self.pool.index(groups)
        used = np.unique(index)  # pooled groups are the non-empty regions, in order
        kept = used[expandable(pooled, self.spec)]
        if len(kept) == 0:
            none = np.zeros(0, dtype=np.int64)
            return none, none, np.zeros(len(groups.label), dtype=bool)
        rows = np.bincount(index, weights=groups.rows, minlength=len(self.pool.low))[kept]
        region_shift = child_shift(rows.astype(np.int64), (self.pool.end - self.pool.low)[kept])
        where = np.full(len(self.pool.low), -1, dtype=np.int64)
        where[kept] = np.arange(len(kept))
        inside = where[index] >= 0
        wide = (groups.edge_end - groups.edge_low) > (np.int64(1) << np.maximum(
            region_shift[np.maximum(where[index], 0)], 0))  # fmt: skip
        members = inside & (groups.low < groups.high)
        refine = members & wide
        wanted = region_shift[where[index[refine]]]
        shift[refine] = np.minimum(shift[refine], wanted)
        return kept, region_shift, members

    def _tune(self) -> tuple[TuningResult | None, list[GroupCandidates], np.ndarray]:
        """(result, label groups, final thresholds) from the current groups."""
        assert self.grid is not None and self.groups is not None
        labels = self.groups.candidates()
        if self.spec.objective == "cost":
            done = tune_objective_from_stats(
                self.grid, self.spec, self.return_curves, self.names, labels
            )
            return done, labels, done.thresholds
        counted = counted_from_stats(self.grid, replace(self.spec, strategy="per_label"), labels)
        if self.pool is not None:
            pooled, pooled_bits = self.pool.pooled(self.groups)
            counted = replace(counted, pooled=pooled, pooled_bits=pooled_bits)
        choices = choose_all(counted, self.spec)
        final = choices.final
        if _straddling(self.groups, counted.labels, final).any():
            return None, counted.labels, final
        return build_result(counted, self.spec, choices, self.return_curves), labels, final

    def result(self) -> TuningResult:
        assert self._done is not None
        return self._done


def tune_quantised(grid: ScoreStats, spec: TuningSpec, return_curves: bool) -> TuningResult:
    """Tune from ``"grid"`` statistics alone: cuts at bin edges only (module docstring)."""
    groups = Groups.of_grid(grid)
    counted = counted_from_stats(grid, replace(spec, strategy="per_label"), groups.candidates())
    if spec.strategy != "per_label":
        pooled, pooled_bits = Pool.of_grid(grid).pooled(groups)
        counted = replace(counted, pooled=pooled, pooled_bits=pooled_bits)
    return build_result(counted, spec, choose_all(counted, spec), return_curves)
